#!/usr/bin/env bash
# Builds `sextant:local` FROM scratch out of a sextant binary built on this
# machine (default: target/release/sextant, else target/debug/sextant),
# with its shared libraries as ldd lists them. For machines that cannot
# pull base images; elsewhere use deploy/docker/Dockerfile.
#
#   deploy/docker/build-local.sh [BINARY] [TAG]
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
binary="${1:-}"
if [ -z "$binary" ]; then
    binary="$root/target/release/sextant"
    [ -x "$binary" ] || binary="$root/target/debug/sextant"
fi
tag="${2:-sextant:local}"
[ -x "$binary" ] || { echo "no sextant binary at $binary: cargo build --bin sextant" >&2; exit 1; }

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
rootfs="$ctx/rootfs"
mkdir -p "$rootfs/usr/local/bin" "$rootfs/tmp" "$rootfs/etc" "$ctx/data/sextant"
# Debug info is most of a debug build's size; the image does not need it.
objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/sextant"
# The loader and every library the binary links, at the same paths.
for lib in $(ldd "$binary" | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nsextant:x:10001:10001:sextant:/var/lib/sextant:/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nsextant:x:10001:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"
cp "$root/deploy/docker/Dockerfile.local" "$ctx/Dockerfile"
docker build -q -t "$tag" "$ctx"
