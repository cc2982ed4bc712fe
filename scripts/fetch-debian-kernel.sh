#!/usr/bin/env bash
# Downloads Debian's 6.1 cloud kernel (no install on the host) and unpacks it into
#   ${FLINT_CACHE:-~/.cache/flint}/kernels/debian-cloud/{vmlinuz,modules/,version}
# Prints the directory. Does nothing when it is already there.
set -euo pipefail

cache="${FLINT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flint}"
dest="$cache/kernels/debian-cloud"
if [ -s "$dest/vmlinuz" ] && [ -d "$dest/modules" ]; then
    echo "$dest"
    exit 0
fi

pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
fi
[ -n "$pkg" ] || { echo "fetch-debian-kernel: cannot resolve linux-image-cloud-amd64; check apt sources" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch-debian-kernel: downloading $pkg" >&2
(cd "$work" && apt-get download -q "$pkg" >/dev/null)
dpkg-deb -x "$work"/*.deb "$work/root"
version=${pkg#linux-image-}
mkdir -p "$dest.tmp"
cp "$work/root/boot/vmlinuz-$version" "$dest.tmp/vmlinuz"
cp "$work/root/boot/config-$version" "$dest.tmp/config"
mv "$work/root/lib/modules/$version" "$dest.tmp/modules"
echo "$version" > "$dest.tmp/version"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
echo "$dest"
