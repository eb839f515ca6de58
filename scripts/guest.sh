#!/usr/bin/env bash
# Builds hvp's default guest from Debian's own packages, into a cache outside
# the source tree:
#   vmlinuz            from the newest Debian 12 kernel package (unsigned):
#                      the one linux-image-amd64 depends on, + "-unsigned"
#   busybox            /bin/busybox of busybox-static
#   initramfs.cpio.gz  busybox + applet links + /init (scripts/guest/init)
#                      + /bin/hvp-cpuid (scripts/guest/cpuid.c, for the boot test)
#   manifest           key=value: packages, versions, kernel release, sha256s
#
#   scripts/guest.sh            build or check the cache, print its folder
#   HVP_GUEST_DIR=DIR           the cache (default ${XDG_CACHE_HOME:-~/.cache}/hvp/guest)
#   HVP_GUEST_KERNEL_PKG=PKG    another kernel package (linux-image-*-unsigned)
#
# Only `apt-get download` fetches anything (Debian's mirror). Idempotent: with
# a valid cache for the same package versions it downloads nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${HVP_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hvp/guest}
manifest="$dir/manifest"

die() { echo "guest.sh: $*" >&2; exit 1; }
for tool in apt-cache apt-get dpkg-deb sha256sum python3 cc; do
    command -v "$tool" >/dev/null || die "needs $tool (a Debian system; scripts/deps.sh run)"
done
mkdir -p "$dir"

# A manifest value, or "" when the manifest or the key is missing.
mget() { [ -f "$manifest" ] && sed -n "s/^$1=//p" "$manifest" | head -n1 || true; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
candidate() { apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'; }
# True when file $1 exists and has the sha256 the manifest records under key $2.
cached() { [ -f "$dir/$1" ] && [ -n "$(mget "$2")" ] && [ "$(sha "$dir/$1")" = "$(mget "$2")" ]; }

kernel_pkg() {
    if [ -n "${HVP_GUEST_KERNEL_PKG:-}" ]; then echo "$HVP_GUEST_KERNEL_PKG"; return; fi
    # The kernel Debian 12 installs: linux-image-amd64 -> linux-image-6.1.0-NN-amd64.
    local signed
    signed=$(apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | sort -V | tail -n1)
    if [ -n "$signed" ] && [ -n "$(candidate "$signed-unsigned")" ]; then
        echo "$signed-unsigned"
        return
    fi
    apt-cache search --names-only '^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$' 2>/dev/null |
        cut -d' ' -f1 | sort -V | tail -n1
}

# Downloads package $1 (its candidate version) into $2.
download() {
    local opts=()
    # apt drops to user _apt for downloads; it cannot write our folder.
    [ "$(id -u)" -eq 0 ] && opts=(-o APT::Sandbox::User=root)
    (cd "$2" && apt-get download -q "${opts[@]}" "$1" >/dev/null) ||
        die "apt-get download $1 failed (run 'apt-get update' as root?)"
}

resolve() {
    kpkg=$(kernel_pkg)
    kver=$([ -n "$kpkg" ] && candidate "$kpkg" || true)
    bver=$(candidate busybox-static)
}
resolve
if { [ -z "$kpkg" ] || [ -z "$kver" ] || [ -z "$bver" ]; } && [ "$(id -u)" -eq 0 ] &&
    ! cached vmlinuz vmlinuz_sha256; then
    # A fresh system without package lists: fetch them once.
    apt-get update -qq || true
    resolve
fi
if [ -z "$kpkg" ] || [ -z "$kver" ] || [ -z "$bver" ]; then
    # No package lists (offline, or apt-get update never ran): a complete cache still serves.
    if cached vmlinuz vmlinuz_sha256 && cached busybox busybox_sha256 &&
        cached initramfs.cpio.gz initramfs_sha256; then
        echo "guest.sh: no Debian package lists; using the cached guest in $dir" >&2
        echo "$dir"
        exit 0
    fi
    die "cannot find the kernel or busybox-static package (apt-get update as root first)"
fi

tmp=$(mktemp -d "$dir/.work.XXXXXX")
chmod 755 "$tmp"
trap 'rm -rf "$tmp"' EXIT
changed=0

if [ "$(mget kernel_package)" = "$kpkg" ] && [ "$(mget kernel_package_version)" = "$kver" ] &&
    cached vmlinuz vmlinuz_sha256; then
    krel=$(mget kernel_release)
else
    echo "guest.sh: downloading $kpkg $kver from Debian" >&2
    download "$kpkg" "$tmp"
    deb=$(ls "$tmp"/*.deb)
    # Only the kernel image: the modules stay behind (the guest needs none).
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './boot/vmlinuz-*'
    img=$(ls "$tmp"/boot/vmlinuz-* | head -n1)
    [ -f "$img" ] || die "$kpkg has no /boot/vmlinuz-*"
    krel=${img##*/vmlinuz-}
    mv "$img" "$dir/vmlinuz"
    rm -f "$deb"
    changed=1
fi

if [ "$(mget busybox_package_version)" = "$bver" ] && cached busybox busybox_sha256; then
    :
else
    echo "guest.sh: downloading busybox-static $bver from Debian" >&2
    download busybox-static "$tmp"
    deb=$(ls "$tmp"/busybox-static_*.deb)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./bin/busybox
    mv "$tmp/bin/busybox" "$dir/busybox"
    chmod 755 "$dir/busybox"
    rm -f "$deb"
    changed=1
fi

# The initramfs depends on busybox and on the files that describe it.
inputs=$(cat "$dir/busybox" "$here/guest/init" "$here/guest/profile" "$here/guest/mkinitramfs.py" \
    "$here/guest/cpuid.c" | sha256sum | cut -d' ' -f1)
if [ "$changed" -eq 1 ] || [ "$(mget initramfs_inputs_sha256)" != "$inputs" ] ||
    ! cached initramfs.cpio.gz initramfs_sha256; then
    # Freestanding: no libc, so nothing but the compiler is needed.
    cc -O2 -static -nostdlib -ffreestanding -fno-pie -no-pie -mgeneral-regs-only \
        -fno-stack-protector -o "$tmp/hvp-cpuid" "$here/guest/cpuid.c"
    python3 "$here/guest/mkinitramfs.py" --busybox "$dir/busybox" --init "$here/guest/init" \
        --profile "$here/guest/profile" --bin "$tmp/hvp-cpuid" --out "$dir/initramfs.cpio.gz"
    changed=1
fi

if [ "$changed" -eq 1 ]; then
    cat >"$tmp/manifest" <<EOF
format=1
kernel_package=$kpkg
kernel_package_version=$kver
kernel_release=$krel
busybox_package=busybox-static
busybox_package_version=$bver
vmlinuz=vmlinuz
vmlinuz_sha256=$(sha "$dir/vmlinuz")
busybox=busybox
busybox_sha256=$(sha "$dir/busybox")
initramfs=initramfs.cpio.gz
initramfs_sha256=$(sha "$dir/initramfs.cpio.gz")
initramfs_inputs_sha256=$inputs
ready_line=hvp-guest: ready
EOF
    mv "$tmp/manifest" "$manifest"
    echo "guest.sh: guest ready in $dir (kernel $krel, busybox $bver)" >&2
fi
echo "$dir"
