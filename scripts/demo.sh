#!/usr/bin/env bash
# make demo: set up, start `berth dev` if none runs, make a busybox image from
# the local busybox-static package and run a container.
set -euo pipefail
cd "$(dirname "$0")/.."
BERTH=${BERTH:-$PWD/bin/berth}
DATA_DIR=${DATA_DIR:-/var/lib/berth}
export BERTH_ADDR=${BERTH_ADDR:-http://127.0.0.1:9470}

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: berth runs containers and needs root; try: sudo make demo" >&2
	exit 1
fi
./scripts/install-deps.sh

node_ready() { "$BERTH" node ls 2>/dev/null | grep -qw ready; }

if ! "$BERTH" info >/dev/null 2>&1; then
	echo "demo: starting berth dev (log: /tmp/berth-dev.log, data: $DATA_DIR)"
	setsid "$BERTH" dev --data-dir "$DATA_DIR" >/tmp/berth-dev.log 2>&1 < /dev/null &
fi
for _ in $(seq 1 150); do
	node_ready && break
	sleep 0.1
done
node_ready || { echo "demo: no ready node after 15 s; see /tmp/berth-dev.log and 'berth node ls'" >&2; exit 1; }

if ! "$BERTH" image inspect busybox >/dev/null 2>&1; then
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	mkdir -p "$tmp/rootfs/bin"
	cp /bin/busybox "$tmp/rootfs/bin/busybox"
	for app in $(/bin/busybox --list); do
		[ "$app" = busybox ] || ln -sf busybox "$tmp/rootfs/bin/$app"
	done
	tar -C "$tmp/rootfs" -cf "$tmp/busybox.tar" .
	"$BERTH" image import "$tmp/busybox.tar" busybox:latest
fi

"$BERTH" run --rm busybox echo "Hi from container"
