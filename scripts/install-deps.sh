#!/usr/bin/env bash
# Installs the Debian packages that berth's tests and demo use. berth itself
# needs none of them at run time; runc, skopeo and docker-registry are test
# peers and benchmark baselines; debootstrap makes the python base image
# of the build tests, gcc and libc6-dev compile their static C program.
set -euo pipefail
pkgs=(busybox-static iproute2 iptables runc skopeo docker-registry ca-certificates debootstrap gcc libc6-dev)
missing=()
for p in "${pkgs[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: need root to install: ${missing[*]}" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
