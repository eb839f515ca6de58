#!/usr/bin/env python3
"""Boots the default guest (make guest) and drives its console like a person.

  tests/vmm/boot.py --hvp build/hvp [--backend soft]     hvp run (the test)
  tests/vmm/boot.py --qemu                               the same checks under QEMU TCG
                                                          (validates the guest and this test)
  tests/vmm/boot.py --hvp build/hvp --nested-kvm         hvp run --backend kvm inside a QEMU
                                                          TCG guest with nested SVM (-cpu EPYC),
                                                          whose serial console is hvp's terminal

Checks, in order: the guest says it is ready and gives a shell; `uname -r` is
the packaged kernel's release; /proc/cpuinfo agrees with the CPUID the
platform advertises (read raw inside the guest by /bin/hvp-cpuid); dmesg has
no oops, BUG, WARNING, call trace, unchecked MSR access or ACPI error;
`sha256sum /bin/busybox` equals the cached busybox's; `date` advances across
`sleep 2` and is close to the host's clock (RTC); /proc/interrupts shows the
timer and the serial port counting; `poweroff` ends the VM with status 0 and
leaves the terminal as it found it. A panic, a hang (bounded timeouts) or any
failed check fails the test with the reason and the console's last lines.

Exit status: 0 pass, 1 fail, 77 skip (no hvp, no cached guest, backend not
available here), 2 bad usage.
"""
import argparse
import hashlib
import os
import re
import shlex
import shutil
import sys
import tempfile
import time

try:
    import pexpect
except ImportError:
    print("boot.py: SKIP: python3-pexpect is not installed (scripts/deps.sh test)")
    sys.exit(77)

READY = "hvp-guest: ready"
PROMPT = "HVPTEST> "  # set with PS1=HVP'TEST> ' so the echoed command never matches
# Fatal console text: seeing any of these ends the test at once.
FATAL = [r"Kernel panic - not syncing[^\r\n]*", r"hvp: [^\r\n]*"]
# Lines dmesg must not have.
BAD_DMESG = [r"Oops", r"\bBUG[: ]", r"WARNING: CPU: \d+ PID:", r"Call Trace", r"unchecked MSR access",
             r"ACPI Error", r"ACPI BIOS Error", r"general protection fault"]
DEFAULT_CMDLINE = "console=ttyS0,115200 earlyprintk=ttyS0,115200 reboot=k panic=1"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def guest_dir(arg):
    if arg:
        return arg
    if os.environ.get("HVP_GUEST_DIR"):
        return os.environ["HVP_GUEST_DIR"]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "hvp", "guest")


def read_manifest(d):
    path = os.path.join(d, "manifest")
    if not os.path.exists(path):
        raise Skip("no default guest in %s (run 'make guest')" % d)
    m = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                m[k] = v
    for k in ("kernel_release", "busybox_sha256", "vmlinuz", "initramfs"):
        if k not in m:
            raise Skip("%s lacks %s (rerun 'make guest')" % (path, k))
    for k in ("vmlinuz", "initramfs", "busybox"):
        p = os.path.join(d, m[k])
        if sha256(p) != m[k + "_sha256"]:
            raise Skip("%s does not match the manifest (rerun 'make guest')" % p)
    return m


def hvp_default_cmdline(hvp):
    """The command line `hvp run` uses by default (from its --help), so QEMU gets the same."""
    import subprocess
    try:
        out = subprocess.run([hvp, "run", "--help"], capture_output=True, text=True).stdout
    except OSError:
        return None
    m = re.search(r'--append STRING.*?\(default: "([^"]*)"\)', out, re.S)
    return m.group(1) if m else None


NESTED_INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod "$m" || echo "nested: insmod $m failed"; done
[ -e /dev/kvm ] || echo "nested: no /dev/kvm"
stty sane
# hvp gets this guest's serial console as its terminal; its status and
# whether it left the terminal as it found it are reported like boot.py's
# own wrapper does on the host.
before=$(stty -g)
hvp run --backend kvm --memory 256M --kernel /g/vmlinuz --initrd /g/initramfs.cpio.gz
s=$?
after=$(stty -g)
if [ "$before" = "$after" ]; then t=same; else t=changed; fi
echo; echo "@@EXIT $s $t@@"
poweroff -f
"""


def nested_argv(hvp, d, m, cache, workdir):
    """QEMU TCG (-cpu EPYC: SVM+NPT) booting the packaged kernel with kvm-amd,
    whose /init runs hvp run --backend kvm on the default guest."""
    import glob
    import subprocess
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                    "..", "..", "scripts", "guest"))
    sys.dont_write_bytecode = True  # no __pycache__ in the source tree
    from mkinitramfs import Cpio
    qemu = shutil.which("qemu-system-x86_64")
    if not qemu:
        raise Skip("qemu-system-x86_64 is not installed")
    trees = sorted(t for t in glob.glob(os.path.join(cache, "linux-image-*-amd64_*"))
                   if os.path.isdir(os.path.join(t, "boot")))
    if not trees:
        raise Skip("no extracted kernel package with modules in %s (meson test "
                   "platform-nested-kvm makes it)" % cache)
    tree = trees[-1]
    kernel = glob.glob(os.path.join(tree, "boot", "vmlinuz-*"))[0]
    moddir = glob.glob(os.path.join(tree, "lib", "modules", "*", "kernel"))[0]
    mods = {}
    for root, _, files in os.walk(moddir):
        for f in files:
            if f.endswith(".ko"):
                mods[f[:-3].replace("-", "_")] = os.path.join(root, f)
    order = []

    def add(name):
        name = name.replace("-", "_")
        if name in order or not name:
            return
        if name not in mods:
            raise Skip("module %s is not in %s" % (name, tree))
        with open(mods[name], "rb") as f:
            mm = re.search(rb"depends=([^\0]*)", f.read())
        for dep in (mm.group(1).decode().split(",") if mm else []):
            add(dep)
        order.append(name)
    add("kvm_amd")

    c = Cpio()
    for dd in ("bin", "lib", "dev", "proc", "sys", "tmp", "g"):
        c.dir(dd)
    c.chardev("dev/console", 5, 1)
    with open("/bin/busybox", "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    with open(hvp, "rb") as f:
        c.file("bin/hvp", f.read(), 0o755)
    # hvp's shared libraries, at the same paths.
    out = subprocess.run(["ldd", hvp], capture_output=True, text=True).stdout
    made = set(["lib"])
    for lib in re.findall(r"(/\S+)", out):
        parts = lib.lstrip("/").split("/")
        for i in range(1, len(parts)):
            p = "/".join(parts[:i])
            if p not in made:
                c.dir(p)
                made.add(p)
        with open(os.path.realpath(lib), "rb") as f:
            c.file(lib.lstrip("/"), f.read(), 0o755)
    for n in order:
        with open(mods[n], "rb") as f:
            c.file("lib/%s.ko" % n, f.read())
    c.file("modules", "".join("/lib/%s.ko\n" % n for n in order).encode())
    for k in ("vmlinuz", "initramfs"):
        with open(os.path.join(d, m[k]), "rb") as f:
            c.file("g/" + ("vmlinuz" if k == "vmlinuz" else "initramfs.cpio.gz"), f.read())
    c.file("init", NESTED_INIT.encode(), 0o755)
    initrd = os.path.join(workdir, "nested-initrd.cpio")
    with open(initrd, "wb") as f:
        f.write(c.finish())
    return [qemu, "-accel", "tcg", "-cpu", "EPYC", "-smp", "1", "-m", "1G", "-nographic",
            "-no-reboot", "-nodefaults", "-serial", "stdio", "-monitor", "none",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init"]


class Console:
    """The VM under a pty, inside `sh -c` so that the terminal can be checked after it exits."""

    def __init__(self, argv, log_path, cmd_timeout):
        self.cmd_timeout = cmd_timeout
        quoted = " ".join(shlex.quote(a) for a in argv)
        # stty -g before and after: hvp must hand the terminal back as it got it.
        script = ('before=$(stty -g); %s; s=$?; after=$(stty -g); '
                  'if [ "$before" = "$after" ]; then t=same; else t=changed; fi; '
                  'echo; echo "@@EXIT $s $t@@"; stty -a' % quoted)
        self.log = open(log_path, "w", encoding="utf-8", errors="replace")
        self.p = pexpect.spawn("/bin/sh", ["-c", script], encoding="utf-8",
                               codec_errors="replace", dimensions=(50, 250), timeout=cmd_timeout)
        self.p.logfile_read = self.log
        self.exit_status = None
        self.terminal = None

    def expect(self, patterns, timeout, what):
        """Waits for one of patterns; fails on a fatal message, EOF or timeout."""
        pats = list(patterns) + FATAL + [r"@@EXIT (\d+) (\w+)@@", pexpect.EOF, pexpect.TIMEOUT]
        i = self.p.expect(pats, timeout=timeout)
        n = len(patterns)
        if i < n:
            return i
        if i < n + len(FATAL):
            raise Fail("%s: the console says: %s" % (what, self.p.after.strip()))
        if i == n + len(FATAL):
            raise Fail("%s: the VM ended (status %s) before that" % (what, self.p.match.group(1)))
        if pats[i] is pexpect.EOF:
            raise Fail("%s: the console closed" % what)
        raise Fail("%s: nothing after %d s (hang?)" % (what, timeout))

    def run(self, cmd, timeout=None):
        """Runs cmd in the guest shell; returns its output (\\r removed, escapes stripped)."""
        # The markers are split in the typed line, so only their output matches.
        self.p.sendline("echo @@''B; %s; echo @@''E$?" % cmd)
        self.expect([r"@@B\r*\n(.*?)@@E(\d+)"], timeout or self.cmd_timeout, "`%s`" % cmd)
        out = ANSI.sub("", self.p.match.group(1)).replace("\r", "")
        status = int(self.p.match.group(2))
        self.expect([re.escape(PROMPT)], self.cmd_timeout, "prompt after `%s`" % cmd)
        return out, status

    def finish(self, timeout):
        """After poweroff: the VM's exit status and whether the terminal was restored."""
        i = self.p.expect([r"@@EXIT (\d+) (\w+)@@", r"Kernel panic - not syncing[^\r\n]*",
                           pexpect.EOF, pexpect.TIMEOUT], timeout=timeout)
        if i == 1:
            raise Fail("poweroff: the console says: %s" % self.p.after.strip())
        if i == 2:
            raise Fail("poweroff: the console closed without the VM's exit status")
        if i == 3:
            raise Fail("poweroff: the VM still runs after %d s" % timeout)
        self.exit_status = int(self.p.match.group(1))
        self.terminal = self.p.match.group(2)
        self.p.expect(pexpect.EOF, timeout=30)
        return self.exit_status, self.terminal

    def tail(self, n=40):
        self.log.flush()
        with open(self.log.name, encoding="utf-8", errors="replace") as f:
            lines = ANSI.sub("", f.read()).replace("\r", "").splitlines()
        return "\n".join(lines[-n:])

    def close(self):
        if self.p.isalive():
            self.p.terminate(force=True)
        self.log.close()


# ---- CPUID vs /proc/cpuinfo ----
# name: (leaf, subleaf, register index eax=0..edx=3, bit). Linux takes these
# straight from CPUID (it may hide some it cannot use, never invent them).
FLAGS = {
    "fpu": (1, 0, 3, 0), "vme": (1, 0, 3, 1), "de": (1, 0, 3, 2), "pse": (1, 0, 3, 3),
    "tsc": (1, 0, 3, 4), "msr": (1, 0, 3, 5), "pae": (1, 0, 3, 6), "mce": (1, 0, 3, 7),
    "cx8": (1, 0, 3, 8), "apic": (1, 0, 3, 9), "sep": (1, 0, 3, 11), "mtrr": (1, 0, 3, 12),
    "pge": (1, 0, 3, 13), "mca": (1, 0, 3, 14), "cmov": (1, 0, 3, 15), "pat": (1, 0, 3, 16),
    "pse36": (1, 0, 3, 17), "clflush": (1, 0, 3, 19), "mmx": (1, 0, 3, 23),
    "fxsr": (1, 0, 3, 24), "sse": (1, 0, 3, 25), "sse2": (1, 0, 3, 26),
    "pni": (1, 0, 2, 0), "pclmulqdq": (1, 0, 2, 1), "ssse3": (1, 0, 2, 9), "fma": (1, 0, 2, 12),
    "cx16": (1, 0, 2, 13), "sse4_1": (1, 0, 2, 19), "sse4_2": (1, 0, 2, 20),
    "x2apic": (1, 0, 2, 21), "movbe": (1, 0, 2, 22), "popcnt": (1, 0, 2, 23),
    "tsc_deadline_timer": (1, 0, 2, 24), "aes": (1, 0, 2, 25), "xsave": (1, 0, 2, 26),
    "avx": (1, 0, 2, 28), "f16c": (1, 0, 2, 29), "rdrand": (1, 0, 2, 30),
    "hypervisor": (1, 0, 2, 31),
    "fsgsbase": (7, 0, 1, 0), "bmi1": (7, 0, 1, 3), "avx2": (7, 0, 1, 5), "smep": (7, 0, 1, 7),
    "bmi2": (7, 0, 1, 8), "erms": (7, 0, 1, 9), "invpcid": (7, 0, 1, 10),
    "rdseed": (7, 0, 1, 18), "adx": (7, 0, 1, 19), "smap": (7, 0, 1, 20),
    "clflushopt": (7, 0, 1, 23), "sha_ni": (7, 0, 1, 29), "umip": (7, 0, 2, 2),
    "la57": (7, 0, 2, 16),
    "syscall": (0x80000001, 0, 3, 11), "nx": (0x80000001, 0, 3, 20),
    "pdpe1gb": (0x80000001, 0, 3, 26), "rdtscp": (0x80000001, 0, 3, 27),
    "lm": (0x80000001, 0, 3, 29), "lahf_lm": (0x80000001, 0, 2, 0), "abm": (0x80000001, 0, 2, 5),
}
# These Linux shows whenever CPUID has them (nothing in 6.1 clears them on
# a CPU that boots at all), so "advertised but not shown" is a failure too.
ALWAYS_SHOWN = ["fpu", "tsc", "msr", "pae", "cx8", "cmov", "clflush", "mmx", "fxsr", "sse", "sse2",
                "pni", "ssse3", "cx16", "sse4_1", "sse4_2", "popcnt", "lm", "nx", "syscall"]


def parse_cpuid(text):
    leaves = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 6:
            try:
                v = [int(x, 16) for x in parts]
            except ValueError:
                continue
            leaves[(v[0], v[1])] = v[2:]
    if (0, 0) not in leaves or (1, 0) not in leaves:
        raise Fail("hvp-cpuid printed no leaves 0 and 1:\n" + text)
    return leaves


def check_cpuinfo(cpuinfo, leaves):
    first = cpuinfo.split("\n\n")[0]
    fields = {}
    for line in first.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip()] = v.strip()
    l0 = leaves[(0, 0)]
    vendor = b"".join(r.to_bytes(4, "little") for r in (l0[1], l0[3], l0[2])).decode("ascii", "replace")
    # The field is read back with its line stripped: trailing blanks of the
    # 12-byte vendor string (hvp's "hvp softcpu ") cannot be compared.
    vendor = vendor.rstrip(" \0")
    if fields.get("vendor_id") != vendor:
        raise Fail("cpuinfo vendor_id %r, CPUID says %r" % (fields.get("vendor_id"), vendor))
    eax = leaves[(1, 0)][0]
    family = (eax >> 8) & 0xF
    model = (eax >> 4) & 0xF
    if family == 0xF:
        family += (eax >> 20) & 0xFF
    if family >= 6:
        model |= ((eax >> 16) & 0xF) << 4
    want = {"cpu family": str(family), "model": str(model), "stepping": str(eax & 0xF)}
    for k, v in want.items():
        if fields.get(k) != v:
            raise Fail("cpuinfo %s = %r, CPUID leaf 1 EAX %#x says %s" % (k, fields.get(k), eax, v))
    flags = set(fields.get("flags", "").split())
    if not flags:
        raise Fail("cpuinfo has no flags line:\n" + first)
    problems = []
    for name, (leaf, sub, reg, bit) in FLAGS.items():
        regs = leaves.get((leaf, sub))
        has = bool(regs and (regs[reg] >> bit) & 1)
        if name in flags and not has:
            problems.append("%s shown, but CPUID %#x.%d bit %d is clear" % (name, leaf, sub, bit))
        if has and name in ALWAYS_SHOWN and name not in flags:
            problems.append("%s advertised (CPUID %#x.%d) but not in cpuinfo" % (name, leaf, sub))
    if problems:
        raise Fail("cpuinfo flags disagree with CPUID: " + "; ".join(problems))
    return "%s family %d model %d, %d flags" % (vendor, family, model, len(flags))


def interrupts(text):
    """{name: total count} from /proc/interrupts: 'timer', 'ttyS0', 'LOC', ..."""
    rows = {}
    lines = text.strip().splitlines()
    if not lines:
        return rows
    ncpu = len(lines[0].split())
    for line in lines[1:]:
        parts = line.split()
        if len(parts) < 2:
            continue
        counts = [int(x) for x in parts[1:1 + ncpu] if x.isdigit()]
        label = parts[0].rstrip(":")
        rest = parts[1 + len(counts):]
        total = sum(counts)
        rows[label] = total
        for word in rest[-1:]:  # the device name, e.g. 'timer', 'ttyS0'
            rows[word] = rows.get(word, 0) + total
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hvp", help="the hvp binary (default: build/hvp)")
    ap.add_argument("--backend", default="soft", help="hvp run --backend (default soft)")
    ap.add_argument("--qemu", action="store_true", help="run under qemu-system-x86_64 -accel tcg")
    ap.add_argument("--nested-kvm", action="store_true",
                    help="hvp run --backend kvm inside QEMU TCG with nested SVM")
    ap.add_argument("--nested-cache", default="build/nested",
                    help="extracted kernel package with modules (platform-nested-kvm's cache)")
    ap.add_argument("--guest-dir", help="the default guest's cache (default as make guest)")
    ap.add_argument("--memory", default="512M")
    ap.add_argument("--boot-timeout", type=int, default=900, help="seconds to the ready line")
    ap.add_argument("--cmd-timeout", type=int, default=180, help="seconds per shell command")
    ap.add_argument("--log", help="console log (default: a file in $TMPDIR, kept on failure)")
    a = ap.parse_args()

    hvp = a.hvp or "build/hvp"
    workdir = None
    try:
        d = guest_dir(a.guest_dir)
        m = read_manifest(d)
        kernel = os.path.join(d, m["vmlinuz"])
        initrd = os.path.join(d, m["initramfs"])
        if a.qemu:
            qemu = shutil.which("qemu-system-x86_64")
            if not qemu:
                raise Skip("qemu-system-x86_64 is not installed")
            cmdline = (hvp_default_cmdline(hvp) if os.path.exists(hvp) else None) or DEFAULT_CMDLINE
            mem = a.memory[:-1] if a.memory.endswith("M") else a.memory
            argv = [qemu, "-accel", "tcg", "-m", mem, "-nographic", "-no-reboot",
                    "-kernel", kernel, "-initrd", initrd, "-append", cmdline]
            what = "QEMU TCG"
        elif a.nested_kvm:
            if not os.access(hvp, os.X_OK):
                raise Skip("no hvp binary at %s (build it, or pass --hvp)" % hvp)
            workdir = tempfile.mkdtemp(prefix="hvp-boot-nested-")
            argv = nested_argv(hvp, d, m, a.nested_cache, workdir)
            what = "hvp run --backend kvm, nested in QEMU TCG -cpu EPYC"
        else:
            if not os.access(hvp, os.X_OK):
                raise Skip("no hvp binary at %s (build it, or pass --hvp)" % hvp)
            # Without --kernel, hvp run boots the default guest from the same cache.
            argv = [hvp, "run", "--backend", a.backend, "--memory", a.memory]
            what = "hvp run --backend " + a.backend
    except Skip as e:
        print("boot.py: SKIP: %s" % e)
        return 77

    log = a.log or tempfile.mkstemp(prefix="hvp-boot-", suffix=".log")[1]
    env_dir = os.environ.copy()
    env_dir["HVP_GUEST_DIR"] = d
    os.environ["HVP_GUEST_DIR"] = d
    print("boot.py: %s, kernel %s, console log %s" % (what, m["kernel_release"], log), flush=True)
    con = Console(argv, log, a.cmd_timeout)
    t0 = time.monotonic()
    ok = False
    try:
        try:
            con.expect([re.escape(READY)], a.boot_timeout, "boot to '%s'" % READY)
        except Fail as e:
            text = con.tail(5)
            if "not available" in text and not a.qemu:
                raise Skip("%s: %s" % (what, text.strip().splitlines()[-1]))
            raise
        boot_s = time.monotonic() - t0
        print("ok - ready line after %.1f s" % boot_s, flush=True)
        con.expect([r"# "], a.cmd_timeout, "the shell's first prompt")
        con.p.sendline("PS1=HVP'TEST> '")
        con.expect([re.escape(PROMPT)], a.cmd_timeout, "the test prompt")

        failed = []

        def check(fn):
            """A check that fails on its own; the rest still run (a boot is slow)."""
            try:
                print("ok - " + fn(), flush=True)
            except Fail as e:
                print("not ok - %s" % e, flush=True)
                failed.append(str(e))

        def uname():
            out, _ = con.run("uname -r")
            if out.strip() != m["kernel_release"]:
                raise Fail("uname -r says %r, the package is %r" % (out.strip(), m["kernel_release"]))
            return "uname -r = %s" % out.strip()

        def cpuinfo():
            raw, st = con.run("hvp-cpuid")
            if st != 0:
                raise Fail("hvp-cpuid failed (status %d): %s" % (st, raw))
            info, _ = con.run("cat /proc/cpuinfo")
            return "/proc/cpuinfo matches CPUID: %s" % check_cpuinfo(info, parse_cpuid(raw))

        def dmesg():
            text, st = con.run("dmesg")
            if st != 0 or "Linux version" not in text:
                raise Fail("dmesg printed no kernel log (status %d)" % st)
            bad = [l for l in text.splitlines() if any(re.search(p, l) for p in BAD_DMESG)]
            if bad:
                raise Fail("dmesg shows trouble:\n  " + "\n  ".join(bad[:20]))
            return ("dmesg: %d lines, no oops/BUG/WARNING/call trace/MSR/ACPI errors"
                    % len(text.splitlines()))

        def busybox():
            out, _ = con.run("sha256sum /bin/busybox")
            got = out.split()[0] if out.split() else ""
            host = sha256(os.path.join(d, "busybox"))
            if got != host:
                raise Fail("sha256sum /bin/busybox in the guest %r, host %r" % (got, host))
            return "sha256sum /bin/busybox matches the host's"

        def clock_and_irqs():
            irq1, _ = con.run("cat /proc/interrupts")
            out, _ = con.run("date +%s; sleep 2; date +%s")
            host_now = time.time()
            irq2, _ = con.run("cat /proc/interrupts")
            stamps = [int(x) for x in out.split() if x.isdigit()]
            if len(stamps) != 2:
                raise Fail("date printed %r" % out)
            if stamps[1] - stamps[0] < 2:
                raise Fail("date went from %d to %d across sleep 2" % tuple(stamps))
            if abs(stamps[1] - host_now) > 3600:
                raise Fail("guest date %d is %d s away from the host's (RTC?)"
                           % (stamps[1], stamps[1] - host_now))
            r1, r2 = interrupts(irq1), interrupts(irq2)
            ticks = lambda r: r.get("timer", 0) + r.get("LOC", 0)
            if ticks(r2) <= ticks(r1):
                raise Fail("no timer interrupts across sleep 2 (timer+LOC %d -> %d):\n%s"
                           % (ticks(r1), ticks(r2), irq2))
            if r2.get("ttyS0", 0) <= r1.get("ttyS0", 0):
                raise Fail("the serial port's interrupts do not count (ttyS0 %d -> %d):\n%s"
                           % (r1.get("ttyS0", 0), r2.get("ttyS0", 0), irq2))
            return ("date advanced %d s across sleep 2 (guest - host = %+d s); /proc/interrupts: "
                    "timer+LOC %d -> %d, ttyS0 %d -> %d"
                    % (stamps[1] - stamps[0], stamps[1] - int(host_now), ticks(r1), ticks(r2),
                       r1["ttyS0"], r2["ttyS0"]))

        for fn in (uname, cpuinfo, dmesg, busybox, clock_and_irqs):
            check(fn)

        con.p.sendline("poweroff")
        status, term = con.finish(a.cmd_timeout)
        if status != 0:
            raise Fail("after poweroff the VM exited with status %d, not 0" % status)
        if term != "same":
            raise Fail("the terminal settings changed across the run (left raw?)")
        print("ok - poweroff: exit status 0, terminal restored; total %.1f s"
              % (time.monotonic() - t0), flush=True)
        if failed:
            raise Fail("%d check(s) failed:\n  " % len(failed) + "\n  ".join(failed))
        ok = True
    except Skip as e:
        print("boot.py: SKIP: %s" % e)
        con.close()
        return 77
    except Fail as e:
        print("boot.py: FAIL: %s" % e)
        print("---- console (last lines; full log %s) ----\n%s" % (log, con.tail()))
    finally:
        con.close()
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    if ok:
        print("boot.py: PASS (%s)" % what)
        if not a.log:
            os.unlink(log)
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
