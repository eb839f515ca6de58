/* Block-device interface for the VM worker: sector-granular asynchronous
 * requests, served by a small thread pool over one disk handle. */
#include "internal.h"

#include <stdlib.h>

struct hvp_blkdev {
    hvp_disk *d;
    unsigned qd, nthreads;
    pthread_t *th;
    pthread_mutex_t mu;
    pthread_cond_t work, idle;
    struct hvp_blk_req *head, *tail;
    unsigned inflight;
    bool stop;
};

static int run_req(hvp_blkdev *b, struct hvp_blk_req *q)
{
    uint64_t sectors = b->d->size / 512;
    if (q->op != HVP_BLK_FLUSH && (q->sector > sectors || q->nsectors > sectors - q->sector))
        return -EINVAL;
    uint64_t off = q->sector * 512, len = (uint64_t)q->nsectors * 512;
    switch (q->op) {
    case HVP_BLK_READ: return hvp_disk_read(b->d, off, q->buf, len);
    case HVP_BLK_WRITE: return hvp_disk_write(b->d, off, q->buf, len);
    case HVP_BLK_FLUSH: return hvp_disk_flush(b->d);
    case HVP_BLK_DISCARD: return hvp_disk_discard(b->d, off, len);
    }
    return -EINVAL;
}

static void *worker(void *arg)
{
    hvp_blkdev *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        while (!b->stop && !b->head)
            pthread_cond_wait(&b->work, &b->mu);
        if (!b->head) break;
        struct hvp_blk_req *q = b->head;
        b->head = q->next_;
        if (!b->head) b->tail = NULL;
        pthread_mutex_unlock(&b->mu);
        int r = run_req(b, q);
        q->cb(q, r);
        pthread_mutex_lock(&b->mu);
        if (--b->inflight == 0) pthread_cond_broadcast(&b->idle);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int hvp_blkdev_create(hvp_disk *d, unsigned queue_depth, unsigned threads, hvp_blkdev **out)
{
    hvp_blkdev *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    b->d = d;
    b->qd = queue_depth ? queue_depth : 32;
    b->nthreads = threads ? threads : 4;
    b->th = calloc(b->nthreads, sizeof *b->th);
    if (!b->th) {
        free(b);
        return -ENOMEM;
    }
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->idle, NULL);
    for (unsigned i = 0; i < b->nthreads; i++) {
        int e = pthread_create(&b->th[i], NULL, worker, b);
        if (e) {
            b->nthreads = i;
            hvp_blkdev_destroy(b);
            return -e;
        }
    }
    *out = b;
    return 0;
}

int hvp_blkdev_submit(hvp_blkdev *b, struct hvp_blk_req *req)
{
    if (!req->cb) return -EINVAL;
    pthread_mutex_lock(&b->mu);
    if (b->stop || b->inflight >= b->qd) {
        pthread_mutex_unlock(&b->mu);
        return -EAGAIN;
    }
    req->next_ = NULL;
    if (b->tail)
        b->tail->next_ = req;
    else
        b->head = req;
    b->tail = req;
    b->inflight++;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->mu);
    return 0;
}

void hvp_blkdev_drain(hvp_blkdev *b)
{
    pthread_mutex_lock(&b->mu);
    while (b->inflight)
        pthread_cond_wait(&b->idle, &b->mu);
    pthread_mutex_unlock(&b->mu);
}

uint64_t hvp_blkdev_sectors(const hvp_blkdev *b)
{
    return b->d->size / 512;
}

void hvp_blkdev_destroy(hvp_blkdev *b)
{
    if (!b) return;
    hvp_blkdev_drain(b);
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_broadcast(&b->work);
    pthread_mutex_unlock(&b->mu);
    for (unsigned i = 0; i < b->nthreads; i++)
        pthread_join(b->th[i], NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->idle);
    free(b->th);
    free(b);
}
