#!/bin/sh
# python-base.sh: make a Debian bookworm root filesystem with python3 and
# print the path of its tarball, ready for `berth image import FILE NAME`.
#
#   scripts/python-base.sh [OUT.tar]
#
# The rootfs comes from `debootstrap --variant=minbase --include=python3
# bookworm` (Debian's archive; $DEBIAN_MIRROR overrides the mirror). The
# tarball is cached as $BERTH_CACHE_DIR/python-base-bookworm.tar (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/berth), so that repeated local runs take
# a second; a clean CI machine builds it once (1-3 minutes). Needs root and
# the debootstrap package.
set -eu

cache=${BERTH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/berth}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
tarball=$cache/python-base-bookworm.tar
out=${1:-$tarball}

if [ ! -s "$tarball" ]; then
	command -v debootstrap >/dev/null || { echo "python-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 1; }
	mkdir -p "$cache"
	work=$(mktemp -d "$cache/rootfs.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	if ! debootstrap --variant=minbase --include=python3 bookworm "$work/root" "$mirror" >"$work/log" 2>&1; then
		tail -n 30 "$work/log" >&2
		echo "python-base: debootstrap failed (full log above)" >&2
		exit 1
	fi
	# What an image needs no copy of: package lists and caches, and the
	# device nodes debootstrap makes (a container gets its own /dev).
	rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"* "$work/root/debootstrap"
	find "$work/root/dev" -mindepth 1 -delete
	tar --numeric-owner --xattrs -C "$work/root" -cf "$work/rootfs.tar" .
	mv "$work/rootfs.tar" "$tarball"
fi
if [ "$out" != "$tarball" ]; then
	cp "$tarball" "$out"
fi
echo "$out"
