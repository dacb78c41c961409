#!/usr/bin/env bash
# make gpu-check: prove berth's GPU support on a real NVIDIA host, in one
# command and a few minutes. Run as root on a machine with the NVIDIA
# driver. What each step proves is printed before it runs.
#
#   1. berth's discovery (NVML through go-nvml) lists the same GPUs, by
#      UUID, as nvidia-smi -L.
#   2. A `berth dev` on spare ports with a throw-away data dir registers
#      the node with its GPUs (the agent's fingerprint reached the server).
#   3. `berth run --rm --gpus 1 busybox` sees exactly one /dev/nvidiaN,
#      nvidiactl, and NVIDIA_VISIBLE_DEVICES naming one GPU that the host
#      has: the scheduler assigned one device and the engine injected only it.
#   4. With the host's glibc copied into a second image, the driver's own
#      nvidia-smi (bind-mounted read-only with libnvidia-ml) runs inside and
#      lists exactly one GPU, the assigned one: the driver libraries work
#      in the container and the other GPUs are invisible to it.
set -euo pipefail
cd "$(dirname "$0")/.."

BERTH=${BERTH:-$PWD/bin/berth}
BASE_PORT=${GPU_CHECK_PORT:-19470}
fail() { echo "gpu-check: FAIL: $*" >&2; exit 1; }
step() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" -eq 0 ] || fail "berth runs containers and needs root; try: sudo make gpu-check"
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1 || [ -z "$(nvidia-smi -L 2>/dev/null)" ]; then
	echo "gpu-check: no NVIDIA GPU found: this check needs a GPU host (nvidia-smi -L lists nothing)" >&2
	exit 1
fi
[ -x "$BERTH" ] || { echo "gpu-check: building berth"; make build >/dev/null; }

tmp=$(mktemp -d /tmp/berth-gpu-check.XXXXXX)
dev_pid=
cleanup() {
	if [ -n "$dev_pid" ]; then
		kill "$dev_pid" 2>/dev/null || true
		wait "$dev_pid" 2>/dev/null || true
	fi
	# Containers' rootfs mounts live under the data dir; leave none behind.
	grep -o " $tmp[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

step "1. discovery: berth gpu ls next to nvidia-smi -L (same UUIDs prove NVML discovery)"
nvidia-smi -L | tee "$tmp/smi.txt"
"$BERTH" gpu ls | tee "$tmp/berth.txt"
"$BERTH" gpu topo || true
"$BERTH" gpu ls --format json >"$tmp/berth.json"
smi_uuids=$(grep -o 'GPU-[0-9a-fA-F-]*' "$tmp/smi.txt" | sort -u)
berth_uuids=$(grep -o '"uuid": "GPU-[^"]*"' "$tmp/berth.json" | grep -o 'GPU-[^"]*' | sort -u)
[ "$smi_uuids" = "$berth_uuids" ] || fail "berth sees GPUs [$berth_uuids], nvidia-smi sees [$smi_uuids]"
echo "ok: $(echo "$smi_uuids" | wc -l) GPU(s), same UUIDs"

step "2. berth dev on ports $BASE_PORT-$((BASE_PORT + 3)), data in $tmp/data: the node registers its GPUs"
export BERTH_ADDR=http://127.0.0.1:$BASE_PORT
setsid "$BERTH" dev --data-dir "$tmp/data" --http-port "$BASE_PORT" --raft-port $((BASE_PORT + 1)) \
	--gossip-port $((BASE_PORT + 2)) --agent-port $((BASE_PORT + 3)) >"$tmp/dev.log" 2>&1 </dev/null &
dev_pid=$!
for _ in $(seq 1 150); do
	"$BERTH" node ls 2>/dev/null | grep -qw ready && break
	kill -0 "$dev_pid" 2>/dev/null || { cat "$tmp/dev.log" >&2; fail "berth dev exited"; }
	sleep 0.2
done
"$BERTH" node ls | grep -qw ready || { tail -50 "$tmp/dev.log" >&2; fail "no ready node after 30 s"; }
node_json=$("$BERTH" node inspect "$("$BERTH" node ls --format json | grep -o '"id": "[^"]*"' | head -1 | cut -d'"' -f4)" --format json 2>/dev/null || true)
node_gpus=$(echo "$node_json" | grep -o '"uuid": "GPU-[^"]*"' | grep -o 'GPU-[^"]*' | sort -u || true)
[ "$node_gpus" = "$smi_uuids" ] || { grep -i gpu "$tmp/dev.log" >&2 || true; fail "the node registered GPUs [$node_gpus], want [$smi_uuids]"; }
echo "ok: the node reports the same $(echo "$node_gpus" | wc -l) GPU(s)"

step "3. berth run --rm --gpus 1 busybox: exactly one /dev/nvidiaN and the assigned UUID"
busybox=${BUSYBOX:-$(command -v busybox || echo /bin/busybox)}
[ -x "$busybox" ] || fail "needs a static busybox for the test image (apt-get install busybox-static, or BUSYBOX=/path)"
if ldd "$busybox" >/dev/null 2>&1; then
	fail "$busybox is dynamically linked; install busybox-static or set BUSYBOX to a static one"
fi
mkdir -p "$tmp/rootfs/bin" "$tmp/rootfs/tmp"
cp "$busybox" "$tmp/rootfs/bin/busybox"
for app in $("$tmp/rootfs/bin/busybox" --list); do
	[ "$app" = busybox ] || ln -sf busybox "$tmp/rootfs/bin/$app"
done
tar -C "$tmp/rootfs" -cf "$tmp/busybox.tar" .
"$BERTH" image import "$tmp/busybox.tar" gpucheck-busybox:latest >/dev/null
out=$("$BERTH" run --rm --gpus 1 gpucheck-busybox sh -c 'ls /dev/nvidia*; echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"') ||
	{ echo "$out"; tail -30 "$tmp/dev.log" >&2; fail "the container did not run"; }
echo "$out"
gpu_nodes=$(echo "$out" | grep -cE '^/dev/nvidia[0-9]+$' || true)
[ "$gpu_nodes" -eq 1 ] || fail "the container sees $gpu_nodes /dev/nvidiaN nodes, want exactly 1"
echo "$out" | grep -qx /dev/nvidiactl || fail "no /dev/nvidiactl in the container"
visible=$(echo "$out" | sed -n 's/^NVIDIA_VISIBLE_DEVICES=//p')
echo "$smi_uuids" | grep -qx "$visible" || fail "NVIDIA_VISIBLE_DEVICES=$visible is not one of the host's GPUs"
echo "ok: one GPU node, NVIDIA_VISIBLE_DEVICES=$visible"

step "4. nvidia-smi -L inside a container with --gpus 1 lists exactly one GPU"
smi=$(command -v nvidia-smi)
# nvidia-smi needs glibc, which busybox lacks: copy the host's loader and
# the non-NVIDIA libraries nvidia-smi links, keeping their paths. The
# driver's nvidia-smi and libnvidia-ml come from berth's injection.
ldd "$smi" | grep -o '/[^ ]*' | grep -v -e libnvidia -e libcuda | sort -u | while read -r lib; do
	mkdir -p "$tmp/rootfs$(dirname "$lib")"
	cp -L "$lib" "$tmp/rootfs$lib"
done
# glibc dlopens libnvidia-ml by soname; let the loader search the dirs the
# injected libraries sit in.
libdirs=$(ldconfig -p | grep -E 'libnvidia-ml\.so\.1 ' | grep -o '/[^ ]*' | xargs -n1 dirname | sort -u | paste -sd:)
tar -C "$tmp/rootfs" -cf "$tmp/glibc.tar" .
"$BERTH" image import "$tmp/glibc.tar" gpucheck-glibc:latest >/dev/null
out=$("$BERTH" run --rm --gpus 1 -e "LD_LIBRARY_PATH=$libdirs" gpucheck-glibc sh -c 'nvidia-smi -L; echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"') ||
	{ echo "$out"; fail "nvidia-smi did not run in the container"; }
echo "$out"
listed=$(echo "$out" | grep -c '^GPU [0-9]' || true)
[ "$listed" -eq 1 ] || fail "nvidia-smi inside lists $listed GPUs, want exactly 1"
seen=$(echo "$out" | grep -o 'GPU-[0-9a-fA-F-]*' | head -1)
visible=$(echo "$out" | sed -n 's/^NVIDIA_VISIBLE_DEVICES=//p')
[ "$seen" = "$visible" ] || fail "nvidia-smi sees $seen but the container was given $visible"
echo "ok: nvidia-smi in the container sees exactly $seen"

printf '\ngpu-check: PASS\n'
