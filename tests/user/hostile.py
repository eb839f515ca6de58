#!/usr/bin/env python3
"""hvp user against hostile input: malformed ELF files end in exit 2 and one
line of error; random code ends like a program (an exit status, or a signal
with hvp's one-line diagnostic) within a time limit, never a host crash.
Usage: hostile.py HVP"""
import os
import random
import signal
import struct
import subprocess
import sys
import tempfile

hvp = os.path.abspath(sys.argv[1])
failures = []

CODE_EXIT42 = bytes.fromhex("bf2a000000" "b83c000000" "0f05")


def elf(code=CODE_EXIT42, etype=2, machine=62, cls=2, phdrs=None, entry=None, extra=b""):
    """A minimal static executable: one R+X PT_LOAD at 0x400000 holding
    the headers and the code."""
    ehsize, phsize = 64, 56
    phdrs = phdrs if phdrs is not None else [None]
    off = ehsize + phsize * len(phdrs)
    total = off + len(code) + len(extra)
    base = 0x400000
    ph = b""
    for p in phdrs:
        if p is None:
            p = (1, 5, 0, base, base, total, total, 0x1000)
        ph += struct.pack("<IIQQQQQQ", *p)
    eh = b"\x7fELF" + bytes([cls, 1, 1, 0]) + bytes(8)
    eh += struct.pack("<HHIQQQIHHHHHH", etype, machine, 1,
                      base + off if entry is None else entry, ehsize, 0, 0, ehsize, phsize,
                      len(phdrs), 0, 0, 0)
    return eh + ph + code + extra


def run(path, timeout=20, args=()):
    """Runs hvp in a session of its own: whatever the guest forked goes too."""
    p = subprocess.Popen([hvp, "user", path, *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        out, err, rc = b"", b"", None
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
    if rc is None:
        p.communicate()
    return rc, out, err.decode(errors="replace")


def host_crash(rc, err):
    if "AddressSanitizer" in err or "runtime error:" in err or "LeakSanitizer" in err:
        return True
    diag = [l for l in err.splitlines() if l.startswith("hvp: user: ") and " at rip 0x" in l]
    return rc is not None and rc < 0 and not diag


def check_reject(name, data, want=None):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    rc, out, err = run(path)
    lines = err.splitlines()
    ok = rc == 2 and len(lines) == 1 and lines[0].startswith("hvp: user: " + path + ": ")
    if want and ok:
        ok = want in lines[0][len("hvp: user: " + path + ": "):]
    print(("ok  " if ok else "FAIL") + f" {name}: exit {rc}: {err.strip()}")
    if not ok:
        failures.append(name)


tmp = tempfile.mkdtemp()
os.chdir(tmp)
good = elf()
path = os.path.join(tmp, "good")
with open(path, "wb") as f:
    f.write(good)
rc, out, err = run(path)
print(f"note: the minimal valid program exits {rc} (42 once the CPU runs it): {err.strip()}")
if host_crash(rc, err):
    failures.append("good")

check_reject("empty", b"", "not an ELF")
check_reject("trunc10", good[:10], "truncated")
check_reject("trunc63", good[:63], "truncated")
check_reject("trunc-phdr", good[:64 + 20], "program headers")
check_reject("bad-magic", b"\x7fELG" + good[4:], "not an ELF")
check_reject("class32", good[:4] + b"\x01" + good[5:], "x86-64")
check_reject("big-endian", good[:5] + b"\x02" + good[6:], "x86-64")
check_reject("aarch64", elf(machine=183), "x86-64")
check_reject("i386", elf(machine=3), "x86-64")
check_reject("et-rel", elf(etype=1), "not an executable")
check_reject("et-core", elf(etype=4), "not an executable")
check_reject("phnum0", elf(phdrs=[]), "program header count")
check_reject("phentsize0", good[:54] + b"\x00\x00" + good[56:], "program header size")
check_reject("phoff-huge", good[:32] + struct.pack("<Q", 2**64 - 8) + good[40:], "program headers")
check_reject("phnum-huge", good[:56] + struct.pack("<H", 0xffff) + good[58:])
check_reject("phnum-beyond", good[:56] + struct.pack("<H", 200) + good[58:], "program headers")
B = 0x400000
check_reject("filesz>memsz", elf(phdrs=[(1, 5, 0, B, B, 0x200, 0x100, 0x1000)]), "file size")
check_reject("offset-beyond", elf(phdrs=[(1, 5, 0x100000, B, B, 0x10, 0x10, 0x1000)]), "beyond")
check_reject("filesz-beyond", elf(phdrs=[(1, 5, 0, B, B, 0x100000, 0x100000, 0x1000)]), "beyond")
check_reject("memsz-huge", elf(phdrs=[(1, 5, 0, B, B, 0x80, 2**62, 0x1000)]), "outside")
check_reject("memsz-wrap", elf(phdrs=[(1, 5, 0, B, B, 0x80, 2**64 - 0x1000, 0x1000)]), "outside")
check_reject("vaddr-kernel", elf(phdrs=[(1, 5, 0, 2**64 - 2**47, 0, 0x80, 0x80, 0x1000)]), "outside")
check_reject("vaddr-zero", elf(phdrs=[(1, 5, 0, 0, 0, 0x80, 0x80, 0x1000)]), "outside")
check_reject("overlap", elf(phdrs=[(1, 5, 0, B, B, 0xb0, 0x2000, 0x1000),
                                   (1, 6, 0, B + 0x1000, B + 0x1000, 0x10, 0x10, 0x1000)]),
             "overlaps")
check_reject("misaligned", elf(phdrs=[(1, 5, 0x10, B, B, 0x10, 0x10, 0x1000)]), "align")
check_reject("bad-align", elf(phdrs=[(1, 5, 0, B, B, 0x80, 0x80, 0x1003)]), "align")
check_reject("no-load", elf(phdrs=[(6, 4, 64, B + 64, B + 64, 56, 56, 8)]), "no loadable")
interp = b"/lib64/ld-linux-x86-64.so.2\x00"
n = 64 + 56 * 2
dyn = elf(phdrs=[(3, 4, n + len(CODE_EXIT42), 0, 0, len(interp), len(interp), 1), None],
          extra=interp)
check_reject("dynamic", dyn,
             "dynamically linked (needs /lib64/ld-linux-x86-64.so.2); only static executables run")
check_reject("interp-beyond", elf(phdrs=[(3, 4, 0x10000, 0, 0, 28, 28, 1), None]), "PT_INTERP")
os.mkdir(os.path.join(tmp, "dir"))
rc, out, err = run(os.path.join(tmp, "dir"))
print(("ok  " if rc == 2 else "FAIL") + f" directory: exit {rc}: {err.strip()}")
if rc != 2:
    failures.append("directory")
rc, out, err = run(os.path.join(tmp, "no-such-file"))
print(("ok  " if rc == 2 else "FAIL") + f" missing: exit {rc}: {err.strip()}")
if rc != 2:
    failures.append("missing")

# Header fuzz: random bytes over the headers of the good file.
rng = random.Random(1234)
outcomes = {}
for i in range(120):
    b = bytearray(good)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(0, 64 + 56)] = rng.randrange(256)
    p = os.path.join(tmp, "fuzz")
    with open(p, "wb") as f:
        f.write(b)
    rc, out, err = run(p, timeout=20)
    outcomes[rc] = outcomes.get(rc, 0) + 1
    if host_crash(rc, err) or (rc == 2 and len(err.splitlines()) != 1):
        failures.append(f"fuzz{i}")
        print(f"FAIL fuzz {i}: exit {rc}: {err.strip()[:300]} ({b[:120].hex()})")
print(f"header fuzz: exit statuses {sorted(outcomes.items(), key=str)}")

# Random code: 4 KiB of random bytes at the entry point, writable and
# executable, nothing mapped after it.
outcomes = {}
for seed in range(30):
    r = random.Random(seed)
    code = bytes(r.randrange(256) for _ in range(4096))
    data = elf(code=code, phdrs=[(1, 7, 0, B, B, 64 + 56 + 4096, 64 + 56 + 4096, 0x1000)])
    p = os.path.join(tmp, "random")
    with open(p, "wb") as f:
        f.write(data)
    rc, out, err = run(p, timeout=10)
    outcomes[rc] = outcomes.get(rc, 0) + 1
    if host_crash(rc, err):
        failures.append(f"random{seed}")
        print(f"FAIL random code seed {seed}: exit {rc}: {err.strip()[:300]}")
print(f"random code: exit statuses {sorted(outcomes.items(), key=str)} (None: ran 10 s, killed)")

if failures:
    print("FAILED:", " ".join(failures))
    sys.exit(1)
print("all hostile inputs handled")
