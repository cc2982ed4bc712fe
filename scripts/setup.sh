#!/usr/bin/env bash
# Installs what flint needs on a Debian bookworm host, only when missing, and fetches
# Debian's cloud kernel into the cache. Safe to rerun.
set -euo pipefail

need_pkgs=()
want() { command -v "$1" >/dev/null 2>&1 || need_pkgs+=("$2"); }
want qemu-system-x86_64 qemu-system-x86
want busybox busybox-static
want mkfs.ext4 e2fsprogs
want mkfs.erofs erofs-utils
want debugfs e2fsprogs
want objcopy binutils
want dpkg-deb dpkg
# For `flint kernel minimal`, which compiles Linux.
want make make
want gcc gcc
want bc bc
want xz xz-utils
want lz4 lz4
want bison bison
want flex flex
want patch patch
# depmod, for kernels whose module tree has no modules.dep (Debian's packages); it lives in
# /sbin, which an ordinary user's PATH may lack.
[ -x /sbin/depmod ] || [ -x /usr/sbin/depmod ] || need_pkgs+=(kmod)
[ -e /usr/include/gelf.h ] || need_pkgs+=(libelf-dev)
[ -e /usr/share/qemu/qboot.rom ] || need_pkgs+=(qemu-system-x86)
[ -e /usr/share/seabios/bios-256k.bin ] || need_pkgs+=(seabios)
# Disk images: sfdisk, and systemd's EFI stub for Unified Kernel Images made with objcopy.
want sfdisk fdisk
# The tests of --root-oci build their OCI layout with umoci and a docker-archive with skopeo.
want umoci umoci
want skopeo skopeo
[ -e /usr/lib/systemd/boot/efi/linuxx64.efi.stub ] || need_pkgs+=(systemd-boot-efi)

if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "setup: installing ${need_pkgs[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi

"$(dirname "$0")/fetch-debian-kernel.sh"
