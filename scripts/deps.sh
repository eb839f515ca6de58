#!/usr/bin/env bash
# Installs what hvp needs from Debian's packages, only what is missing.
#   scripts/deps.sh build   - to build hvp
#   scripts/deps.sh test    - to build and run the test suites
#   scripts/deps.sh run     - to run the main job
set -euo pipefail
what=${1:-build}

build_pkgs=(gcc make meson ninja-build pkg-config)
test_pkgs=(libcriterion-dev libzydis-dev qemu-utils qemu-user clang python3 busybox-static nasm libc6-dev qemu-system-x86 file acpica-tools python3-pexpect)
# python3: scripts/guest.sh writes the default guest's initramfs with it.
run_pkgs=(busybox-static binutils python3)

case "$what" in
build) pkgs=("${build_pkgs[@]}") ;;
test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
run) pkgs=("${build_pkgs[@]}" "${run_pkgs[@]}") ;;
*) echo "deps.sh: unknown set '$what' (build, test or run)" >&2; exit 2 ;;
esac

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "deps.sh: missing packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
