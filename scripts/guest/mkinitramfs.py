#!/usr/bin/env python3
"""Writes hvp's default guest initramfs: a gzip'd newc cpio, built without root.

  mkinitramfs.py --busybox BUSYBOX --init INIT --profile PROFILE --out OUT [--bin FILE]...

Contents: /bin/busybox and a symlink for each applet (from `busybox --list-full`),
/init, /etc/profile, our own tools (--bin: into /bin), the usual empty directories and /dev/console (a character
device entry: newc carries the device numbers, so no mknod and no root is needed).
Every entry has uid 0, gid 0 and mtime 0, so the same inputs give the same bytes.
"""
import argparse
import gzip
import os
import stat
import subprocess
import sys

NEWC_MAGIC = b"070701"


class Cpio:
    def __init__(self):
        self.out = bytearray()
        self.ino = 1
        self.names = set()

    @staticmethod
    def _pad4(n):
        return (4 - n % 4) % 4

    def add(self, name, mode, data=b"", nlink=1, rdev=(0, 0)):
        if name in self.names:
            raise ValueError("duplicate cpio entry: " + name)
        self.names.add(name)
        bname = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdev[0], rdev[1], len(bname), 0)
        self.ino += 1
        hdr = NEWC_MAGIC + b"".join(b"%08X" % f for f in fields)
        assert len(hdr) == 110
        self.out += hdr + bname
        self.out += b"\0" * self._pad4(len(hdr) + len(bname))
        self.out += data
        self.out += b"\0" * self._pad4(len(data))

    def dir(self, name, perm=0o755):
        self.add(name, stat.S_IFDIR | perm, nlink=2)

    def file(self, name, data, perm=0o644):
        self.add(name, stat.S_IFREG | perm, data)

    def symlink(self, name, target):
        self.add(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor, perm=0o600):
        self.add(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self):
        # The trailer's ino stays 0 as the format expects; the archive is then
        # padded to a 512-byte block like cpio(1) does.
        self.ino = 0
        self.add("TRAILER!!!", 0)
        self.out += b"\0" * ((512 - len(self.out) % 512) % 512)
        return bytes(self.out)


def applets(busybox):
    """Applet paths such as 'bin/ls', 'usr/sbin/chroot' (busybox --list-full)."""
    try:
        r = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        sys.exit("mkinitramfs: cannot list the applets of %s: %s" % (busybox, e))
    paths = [p.strip().lstrip("/") for p in r.stdout.splitlines() if p.strip()]
    if "bin/sh" not in paths or "sbin/poweroff" not in paths:
        sys.exit("mkinitramfs: %s lacks sh or poweroff" % busybox)
    return paths


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--busybox", required=True)
    ap.add_argument("--init", required=True)
    ap.add_argument("--profile", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bin", action="append", default=[], help="a program to put in /bin")
    a = ap.parse_args()

    with open(a.busybox, "rb") as f:
        bb = f.read()
    with open(a.init, "rb") as f:
        init = f.read()
    with open(a.profile, "rb") as f:
        profile = f.read()

    c = Cpio()
    dirs = ["bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root",
            "mnt", "run", "var"]
    for d in dirs:
        c.dir(d, 0o1777 if d == "tmp" else 0o755)
    c.chardev("dev/console", 5, 1)  # the kernel opens it for init's stdio before devtmpfs
    c.file("bin/busybox", bb, 0o755)
    c.file("init", init, 0o755)
    c.file("etc/profile", profile, 0o644)
    for path in a.bin:
        with open(path, "rb") as f:
            c.file("bin/" + os.path.basename(path), f.read(), 0o755)
    for p in applets(a.busybox):
        if p == "bin/busybox":
            continue
        parent = os.path.dirname(p)
        if parent and parent not in dirs:
            sys.exit("mkinitramfs: applet %s is in an unexpected folder" % p)
        c.symlink(p, "/bin/busybox")

    data = c.finish()
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as f:
        # mtime 0 and no file name in the gzip header: reproducible output.
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, compresslevel=9, mtime=0) as gz:
            gz.write(data)
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()
