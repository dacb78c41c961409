#!/bin/sh
# Install berth on this host: the binary, the systemd units, example
# configs in /etc/berth (never overwriting ones already there) and the data
# directory. Safe to run again (an upgrade replaces the binary and units).
#
#   deploy/install.sh [--prefix /usr/local] [--bin bin/berth] [--no-reload]
#   DESTDIR=/tmp/root deploy/install.sh      # stage into a tree, no systemctl
#
# Then: edit /etc/berth/server.yaml or agent.yaml and
#   systemctl enable --now berth-server   (or berth-agent)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
prefix=/usr/local
bin="$here/../bin/berth"
reload=1
destdir="${DESTDIR:-}"

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case "$1" in
	--prefix) [ $# -ge 2 ] || { echo "install.sh: --prefix needs a directory" >&2; exit 2; }; prefix=$2; shift 2 ;;
	--prefix=*) prefix=${1#--prefix=}; shift ;;
	--bin) [ $# -ge 2 ] || { echo "install.sh: --bin needs a file" >&2; exit 2; }; bin=$2; shift 2 ;;
	--bin=*) bin=${1#--bin=}; shift ;;
	--destdir) [ $# -ge 2 ] || { echo "install.sh: --destdir needs a directory" >&2; exit 2; }; destdir=$2; shift 2 ;;
	--no-reload) reload=0; shift ;;
	-h|--help) usage; exit 0 ;;
	*) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
done

case "$prefix" in
/*) ;;
*) echo "install.sh: --prefix $prefix must be an absolute path" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
	echo "install.sh: no berth binary at $bin: run 'make build' or pass --bin FILE" >&2
	exit 1
fi

bindir="$destdir$prefix/bin"
unitdir="$destdir/etc/systemd/system"
confdir="$destdir/etc/berth"
datadir="$destdir/var/lib/berth"

install -d -m 0755 "$bindir" "$unitdir" "$confdir"
install -d -m 0700 "$datadir"
# Copy then rename, so a running berth is never half overwritten.
install -m 0755 "$bin" "$bindir/berth.new"
mv -f "$bindir/berth.new" "$bindir/berth"

for unit in berth-server.service berth-agent.service; do
	sed "s#/usr/local/bin/berth#$prefix/bin/berth#" "$here/$unit" >"$unitdir/$unit.new"
	chmod 0644 "$unitdir/$unit.new"
	mv -f "$unitdir/$unit.new" "$unitdir/$unit"
done

for conf in server.yaml agent.yaml; do
	if [ -e "$confdir/$conf" ]; then
		echo "install.sh: keeping $confdir/$conf"
	else
		install -m 0640 "$here/$conf" "$confdir/$conf"
	fi
done

if [ -z "$destdir" ] && [ "$reload" = 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
fi
echo "install.sh: berth installed in $bindir; units in $unitdir; configs in $confdir"
