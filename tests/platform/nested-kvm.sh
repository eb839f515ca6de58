#!/usr/bin/env bash
# Runs a statically linked test program where /dev/kvm really exists: inside
# a Debian kernel booted under QEMU's software emulation with an AMD CPU model
# that offers SVM and NPT (-accel tcg -cpu EPYC). The guest loads kvm.ko and
# kvm-amd.ko from the same linux-image package as its vmlinuz, runs the
# program, prints its TAP output on the serial console and powers off.
#
#   nested-kvm.sh PROGRAM [ARG...]
#
# PROGRAM is best static; a dynamic one gets its libraries (ldd) copied in;
# the ARGs are passed to it (stdin /dev/null, stdout the serial console).
# $HVP_NESTED_CACHE (default: build/nested in the source tree) keeps the
# kernel package fetched with `apt-get download` and its extracted files
# between runs. Optional:
#   HVP_NESTED_FILES="HOST:GUEST ..."  more files for the guest's root
#   HVP_NESTED_RUN_TIMEOUT=S   SIGTERM to the program after S seconds
#   HVP_NESTED_TIMEOUT=S       QEMU's own limit (default 900)
#   HVP_NESTED_LOG=FILE        the console log (default $cache/last-console.log)
#   HVP_NESTED_STATUS=FILE     gets "rc=N uptime=Ts" when the guest reported
# Exit status: the program's (0 all cases passed), 1 also when the guest did
# not report, 77 (with the reason) when qemu-system-x86_64 or the kernel
# package is unavailable.
set -euo pipefail

prog=${1:?usage: nested-kvm.sh PROGRAM [ARG...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
cache=${HVP_NESTED_CACHE:-$here/../../build/nested}
skip() { echo "1..0 # SKIP $*"; exit 77; }

command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (Debian: qemu-system-x86)"
bb=$(command -v busybox || true)
[ -n "$bb" ] && file -L "$bb" 2>/dev/null | grep -q 'statically linked' || bb=/bin/busybox
[ -x "$bb" ] || skip "busybox not installed (Debian: busybox-static)"
[ -x "$prog" ] || { echo "nested-kvm.sh: $prog: not an executable" >&2; exit 1; }
mkdir -p "$cache"

# The kernel package: the one linux-image-amd64 depends on, fetched once.
deb=$(ls "$cache"/linux-image-[0-9]*-amd64_*_amd64.deb 2>/dev/null | grep -v -e -cloud- -e -rt- | sort -V | tail -1 || true)
if [ -z "$deb" ]; then
    pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}')
    [ -n "$pkg" ] || skip "apt-cache knows no linux-image-amd64 (run apt-get update)"
    (cd "$cache" && apt-get download "$pkg" >/dev/null 2>&1) || skip "apt-get download $pkg failed"
    deb=$(ls "$cache"/"$pkg"_*.deb | tail -1)
fi
tree=$cache/$(basename "$deb" .deb)
if [ ! -d "$tree/boot" ]; then
    rm -rf "$tree.tmp" && mkdir -p "$tree.tmp"
    dpkg-deb -x "$deb" "$tree.tmp" && mv "$tree.tmp" "$tree"
fi
kernel=$(ls "$tree"/boot/vmlinuz-* | head -1)
moddir=$(ls -d "$tree"/lib/modules/* | head -1)

# Modules by name, dependencies first (from each module's own depends= tag:
# the package ships no modules.dep, depmod makes it at install time).
order=()
add_mod() {
    local name=$1 f dep
    for m in "${order[@]+"${order[@]}"}"; do [ "$(basename "$m" .ko)" = "$name" ] && return 0; done
    f=$(find "$moddir/kernel" -name "$name.ko" -o -name "${name//-/_}.ko" | head -1)
    [ -n "$f" ] || skip "module $name not in $(basename "$deb")"
    for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do add_mod "$dep"; done
    order+=("$f")
}
add_mod kvm-amd

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{bin,lib,dev,proc,sys,tmp}
cp "$bb" "$root/bin/busybox"
cp "$prog" "$root/test"
# A dynamic program (a sanitizer build, say) brings its libraries along;
# a script runs with the guest's busybox.
if ! file -L "$prog" | grep -q 'statically linked' && [ "$(head -c2 "$prog")" != '#!' ]; then
    for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
fi
printf '%s\n' "$@" >"$root/args"
for pair in ${HVP_NESTED_FILES:-}; do
    src=${pair%%:*} dst=${pair#*:}
    [ -r "$src" ] || { echo "nested-kvm.sh: $src: not readable" >&2; exit 1; }
    mkdir -p "$root$(dirname "$dst")"
    cp "$src" "$root$dst"
done
[ -n "${HVP_NESTED_RUN_TIMEOUT:-}" ] && echo "timeout -s TERM $HVP_NESTED_RUN_TIMEOUT" >"$root/wrap"
: >"$root/modules"
for f in "${order[@]}"; do cp "$f" "$root/lib/"; echo "/lib/$(basename "$f")" >>"$root/modules"; done
cat >"$root/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod "$m" || echo "HVP-NESTED: insmod $m failed"; done
echo "HVP-NESTED: /dev/kvm $([ -e /dev/kvm ] && echo present || echo absent) after $(cut -d' ' -f1 /proc/uptime)s"
echo HVP-NESTED-BEGIN
set --; while read -r a; do [ -n "$a" ] && set -- "$@" "$a"; done </args
$(cat /wrap 2>/dev/null) /test "$@" </dev/null; rc=$?
echo "HVP-NESTED-END rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)s"
poweroff -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | "$bb" cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initrd.gz"

log=$work/console.log
start=$(date +%s)
timeout "${HVP_NESTED_TIMEOUT:-900}" qemu-system-x86_64 -accel tcg -cpu EPYC -smp 1 -m 1G \
    -nographic -no-reboot -nodefaults -serial stdio -monitor none \
    -kernel "$kernel" -initrd "$work/initrd.gz" \
    -append 'console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init' >"$log" 2>&1 || true
end=$(date +%s)
cp "$log" "${HVP_NESTED_LOG:-$cache/last-console.log}" 2>/dev/null || true

# Firmware escape codes may precede the first line of ours.
clean=$work/clean.log
tr -d '\r' <"$log" | sed 's/^.*\(HVP-NESTED\)/\1/' >"$clean"
grep '^HVP-NESTED: ' "$clean" >&2 || true
# The program's own TAP, passed through.
sed -n '/^HVP-NESTED-BEGIN$/,/^HVP-NESTED-END/p' "$clean" | sed '1d;$d'
endline=$(grep '^HVP-NESTED-END' "$clean" || true)
echo "# nested run: $((end - start))s wall, guest ${endline##*uptime=}" >&2
if [ -z "$endline" ]; then
    echo "nested-kvm.sh: the guest did not report; console follows" >&2
    tail -40 "$log" >&2
    exit 1
fi
rc=${endline#*rc=}; rc=${rc%% *}
[ -n "${HVP_NESTED_STATUS:-}" ] && echo "${endline#HVP-NESTED-END }" >"$HVP_NESTED_STATUS"
exit "$rc"
