/* File I/O, directories, argv, environment and the exit status. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    printf("argc %d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d] %s\n", i, argv[i]);
    const char *e = getenv("HVP_TEST_VAR");
    printf("env %s\n", e ? e : "(unset)");

    mkdir("d", 0755);
    FILE *f = fopen("d/a.txt", "w");
    if (!f)
        return 10;
    for (int i = 0; i < 1000; i++)
        fprintf(f, "%d %x %s\n", i, i * 7919, i % 3 ? "odd" : "even");
    fclose(f);
    int fd = open("d/a.txt", O_RDONLY);
    struct stat st;
    fstat(fd, &st);
    printf("size %lld\n", (long long)st.st_size);
    char buf[100];
    lseek(fd, 5000, SEEK_SET);
    ssize_t n = read(fd, buf, 40);
    printf("read %zd: %.*s|\n", n, (int)n, buf);
    n = pread(fd, buf, 10, 0);
    printf("pread %.*s|\n", (int)n, buf);
    close(fd);
    fd = open("d/b.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct iovec iov[2] = {{"hello ", 6}, {"world\n", 6}};
    printf("writev %zd\n", writev(fd, iov, 2));
    close(fd);
    rename("d/b.bin", "d/c.bin");
    printf("stat old %d new %d\n", stat("d/b.bin", &st), stat("d/c.bin", &st));
    printf("access %d errno-enoent %d\n", access("d/nonexistent", F_OK), errno == ENOENT);
    DIR *dir = opendir("d");
    int count = 0;
    struct dirent *de;
    while ((de = readdir(dir)))
        count++;
    closedir(dir);
    printf("entries %d\n", count);
    int p[2];
    pipe(p);
    write(p[1], "pipe!", 5);
    n = read(p[0], buf, sizeof buf);
    printf("pipe %.*s\n", (int)n, buf);
    unlink("d/a.txt");
    unlink("d/c.bin");
    printf("rmdir %d\n", rmdir("d"));
    fprintf(stderr, "to stderr\n");
    return argc > 1 ? atoi(argv[1]) : 0;
}
