package container

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// The init plan is what the C init (package shim) executes: a stream of
// NUL-terminated tokens, each operation followed by a fixed number of
// arguments. The manager works out everything that needs no access to the
// container's root (flags, options, which bind targets are files) so the
// init stays a small interpreter that pays for no Go runtime:
//
//	tty | stdin                 first, when wanted (the shim looks only
//	                            there): a terminal opened in /dev/pts after
//	                            pivot, or a stdin pipe the shim feeds
//	netns PATH                  open a network namespace to join at exec
//	private                     make / rprivate
//	rootfs PATH                 the mount point of the container's root
//	overlay DATA                mount the overlay on rootfs
//	mount SRC DST TYPE FLAGS DATA KIND RO
//	                            mount at DST inside rootfs (never following a
//	                            symlink out of it), creating it as a directory
//	                            (KIND d) or a file (f); RO 1 remounts read-only
//	mknod DST TYPE MAJOR MINOR MODE UID GID
//	symlink TARGET DST
//	userns HOSTID SIZE          make a user namespace mapping 0..SIZE-1 to
//	                            HOSTID.. (joined just before the user drop)
//	idmap SRC DST               mount layer SRC at DST through that mapping
//	unprivports                 let the container's root bind ports < 1024
//	pivot                       pivot_root into rootfs, detach the old root
//	mask PATH                   /dev/null over a file, ro tmpfs over a directory
//	ro PATH                     bind PATH read-only
//	rootro                      remount / read-only
//	hostname NAME
//	lo                          bring lo up
//	rlimit NUM SOFT HARD        clamped to the hard limit
//	user SPEC                   resolved in /etc/passwd and /etc/group
//	caps MASK
//	nnp
//	seccomp HEX                 the filter (struct sock_filter array),
//	                            loaded last before exec (or before the
//	                            capabilities drop: see seccompLate)
//	cwd PATH                    created if missing
//	env KEY=VALUE
//	arg ARG
//	exec                        look up arg 0 in PATH and exec
type plan struct{ bytes.Buffer }

func (p *plan) op(tokens ...string) {
	for _, t := range tokens {
		p.WriteString(t)
		p.WriteByte(0)
	}
}

// initPlan builds the plan for a container whose directory is dir.
func initPlan(s *Spec, dir string) ([]byte, error) {
	for _, v := range append(append(append([]string{}, s.Args...), s.Env...), s.Cwd, s.User, s.Hostname, s.Network) {
		if strings.IndexByte(v, 0) >= 0 {
			return nil, fmt.Errorf("%w: NUL byte in %q", ErrInvalidSpec, v)
		}
	}
	var p plan
	if s.Tty {
		p.op("tty")
	} else if s.OpenStdin {
		p.op("stdin")
	}
	if strings.HasPrefix(s.Network, "/") {
		p.op("netns", s.Network)
	}
	p.op("private")
	p.op("rootfs", filepath.Join(filepath.Dir(dir), rootfsDir))
	lower := make([]string, len(s.Layers))
	for i, l := range s.Layers {
		lower[len(s.Layers)-1-i] = l
	}
	// shift turns a container ID into the host's.
	shift := func(id uint32) string { return strconv.FormatUint(uint64(id), 10) }
	devData, ptsGID := "mode=755,size=65536k", "5"
	if u := s.UserNS; u != nil {
		p.op("userns", strconv.FormatUint(uint64(u.HostID), 10), strconv.FormatUint(uint64(u.Size), 10))
		for i, l := range s.Layers {
			staged := filepath.Join(dir, lowerDir, strconv.Itoa(i))
			p.op("idmap", l, staged)
			lower[len(s.Layers)-1-i] = staged
		}
		shift = func(id uint32) string { return strconv.FormatUint(uint64(u.HostID)+uint64(id), 10) }
		devData += ",uid=" + shift(0) + ",gid=" + shift(0)
		ptsGID = shift(5)
	}
	if data := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + filepath.Join(dir, upperDir) + ",workdir=" + filepath.Join(dir, workDir); len(data) < maxMountData {
		p.op("overlay", data)
	} else {
		// Mount options must fit in a page, which absolute paths of some
		// forty layers do not: name them relative to the container's
		// directory, through short symlinks for the image's layers, and
		// let init mount from there.
		short, err := shortLowerDirs(dir, lower)
		if err != nil {
			return nil, err
		}
		data = "lowerdir=" + strings.Join(short, ":") + ",upperdir=" + upperDir + ",workdir=" + workDir
		if len(data) >= maxMountData {
			return nil, fmt.Errorf("%w: %d layers are more than one overlay mount can stack", ErrInvalidSpec, len(lower))
		}
		p.op("overlayat", dir, data)
	}
	mount := func(src, dst, fstype string, flags uintptr, data, kind string, ro bool) {
		r := "0"
		if ro {
			r = "1"
		}
		p.op("mount", src, dst, fstype, strconv.FormatUint(uint64(flags), 10), data, kind, r)
	}
	const nsne = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	mount("proc", "/proc", "proc", nsne, "", "d", false)
	mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, devData, "d", false)
	for _, d := range [][3]string{{"null", "1", "3"}, {"zero", "1", "5"}, {"full", "1", "7"}, {"random", "1", "8"}, {"urandom", "1", "9"}, {"tty", "5", "0"}} {
		p.op("mknod", "/dev/"+d[0], "c", d[1], d[2], "438", shift(0), shift(0))
	}
	mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid="+ptsGID, "d", false)
	mount("shm", "/dev/shm", "tmpfs", nsne, "mode=1777,size=65536k", "d", false)
	mount("mqueue", "/dev/mqueue", "mqueue", nsne, "", "d", false)
	sysFlags := uintptr(nsne | unix.MS_RDONLY)
	if s.Privileged {
		sysFlags &^= unix.MS_RDONLY
	}
	mount("sysfs", "/sys", "sysfs", sysFlags, "", "d", false)
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}} {
		p.op("symlink", l[0], "/dev/"+l[1])
	}
	for _, m := range s.Mounts {
		switch m.Type {
		case "tmpfs":
			flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
			if m.ReadOnly {
				flags |= unix.MS_RDONLY
			}
			mount("tmpfs", m.Destination, "tmpfs", flags, strings.Join(m.Options, ","), "d", false)
		default:
			st, err := os.Stat(m.Source)
			if err != nil {
				return nil, fmt.Errorf("container: bind mount source: %w", err)
			}
			kind := "f"
			if st.IsDir() {
				kind = "d"
			}
			mount(m.Source, m.Destination, "", unix.MS_BIND|unix.MS_REC, "", kind, m.ReadOnly)
		}
	}
	for _, d := range s.Devices {
		mode := d.FileMode & 0o777
		if mode == 0 {
			mode = 0o666
		}
		p.op("mknod", d.Path, string(d.Type), strconv.FormatInt(d.Major, 10), strconv.FormatInt(d.Minor, 10),
			strconv.FormatUint(uint64(mode), 10), shift(d.UID), shift(d.GID))
	}
	if s.Privileged {
		devs, err := hostDevices()
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			if slices.ContainsFunc(s.Devices, func(x Device) bool { return x.Path == d.Path }) {
				continue
			}
			p.op("mknod", d.Path, string(d.Type), strconv.FormatInt(d.Major, 10), strconv.FormatInt(d.Minor, 10),
				strconv.FormatUint(uint64(d.FileMode), 10), strconv.FormatUint(uint64(d.UID), 10), strconv.FormatUint(uint64(d.GID), 10))
		}
	}
	p.op("pivot")
	if s.UserNS != nil && s.Network != "host" {
		p.op("unprivports")
	}
	if !s.Privileged {
		for _, m := range maskedPaths {
			p.op("mask", m)
		}
		for _, r := range readonlyPaths {
			p.op("ro", r)
		}
	}
	if s.ReadonlyRootfs {
		p.op("rootro")
	}
	p.op("hostname", s.Hostname)
	if s.Network == "none" {
		p.op("lo")
	}
	for _, r := range s.Rlimits {
		n, ok := rlimitNumber(r.Type)
		if !ok {
			return nil, fmt.Errorf("%w: unknown rlimit %q", ErrInvalidSpec, r.Type)
		}
		p.op("rlimit", strconv.Itoa(n), strconv.FormatUint(r.Soft, 10), strconv.FormatUint(r.Hard, 10))
	}
	caps, err := effectiveCaps(s)
	if err != nil {
		return nil, err
	}
	filter, err := seccompFor(s, caps)
	if err != nil {
		return nil, err
	}
	p.op("user", s.User)
	p.op("caps", strconv.FormatUint(uint64(caps), 10))
	if s.NoNewPrivileges {
		p.op("nnp")
	}
	if filter != nil {
		p.op("seccomp", hex.EncodeToString(filter.Bytes()))
	}
	p.op("cwd", s.Cwd)
	for _, e := range s.Env {
		p.op("env", e)
	}
	for _, a := range s.Args {
		p.op("arg", a)
	}
	p.op("exec")
	return p.Bytes(), nil
}

// hostDevices lists the host's device nodes for a privileged container,
// as docker does: everything under /dev but the pseudo-terminals, shm,
// mqueue, fd links, the console and the nodes every container gets.
func hostDevices() ([]Device, error) {
	std := map[string]bool{"/dev/null": true, "/dev/zero": true, "/dev/full": true, "/dev/random": true, "/dev/urandom": true, "/dev/tty": true, "/dev/console": true, "/dev/ptmx": true}
	var out []Device
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		ents, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("container: list host devices in %s: %w", dir, err)
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				switch e.Name() {
				case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
					continue
				}
				if depth < 4 {
					if err := walk(p, depth+1); err != nil {
						return err
					}
				}
				continue
			case e.Type()&os.ModeDevice == 0 || std[p]:
				continue
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				continue // gone meanwhile
			}
			typ := byte('c')
			if st.Mode&unix.S_IFMT == unix.S_IFBLK {
				typ = 'b'
			}
			out = append(out, Device{Path: p, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
				FileMode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid})
		}
		return nil
	}
	if err := walk("/dev", 0); err != nil {
		return nil, err
	}
	return out, nil
}

// maxMountData is the most option bytes mount(2) takes: one page, with
// its terminating NUL.
const maxMountData = 4095

// shortLinkDir, in a container's directory, holds a short symlink per
// image layer when the layers' own paths are too long to mount together.
const shortLinkDir = "l"

// shortLowerDirs names each of lower relative to dir: a path inside dir
// as it is, any other through a symlink dir/l/<hex index>.
func shortLowerDirs(dir string, lower []string) ([]string, error) {
	links := filepath.Join(dir, shortLinkDir)
	if err := os.RemoveAll(links); err != nil {
		return nil, fmt.Errorf("container: layer links: %w", err)
	}
	if err := os.Mkdir(links, 0o700); err != nil {
		return nil, fmt.Errorf("container: layer links: %w", err)
	}
	short := make([]string, len(lower))
	for i, l := range lower {
		if rel, err := filepath.Rel(dir, l); err == nil && filepath.IsLocal(rel) {
			short[i] = rel
			continue
		}
		short[i] = filepath.Join(shortLinkDir, strconv.FormatInt(int64(i), 16))
		if err := os.Symlink(l, filepath.Join(dir, short[i])); err != nil {
			return nil, fmt.Errorf("container: layer links: %w", err)
		}
	}
	return short, nil
}
