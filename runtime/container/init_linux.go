package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/seccomp"
)

// initError is a failure inside init, with the exit code to report.
type initError struct {
	code int
	msg  string
}

func (e *initError) Error() string { return e.msg }

func failf(code int, format string, a ...any) error {
	return &initError{code: code, msg: fmt.Sprintf(format, a...)}
}

// initConfig is init's view of the container.
type initConfig struct {
	Spec                *Spec
	Rootfs, Upper, Work string
}

// initMain is the container's init, in its new namespaces: argv[1] is the
// container's directory, fd 3 carries its config.json (whose arrival means
// "the cgroup is set"), fd 4 takes an error message and is closed by a
// successful exec.
func initMain() {
	runtime.LockOSThread()
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	status := os.NewFile(4, "status")
	cfgFile := os.NewFile(3, "config")
	data, err := io.ReadAll(cfgFile)
	cfgFile.Close()
	if err == nil && len(data) == 0 {
		err = errors.New("no config from the shim")
	}
	var spec Spec
	if err == nil && len(os.Args) != 2 {
		err = errors.New("usage: berth-init DIR")
	}
	if err == nil {
		err = json.Unmarshal(data, &spec)
	}
	dir := os.Args[len(os.Args)-1]
	cfg := initConfig{Spec: &spec, Rootfs: filepath.Join(filepath.Dir(dir), rootfsDir), Upper: filepath.Join(dir, upperDir), Work: filepath.Join(dir, workDir)}
	if err == nil {
		err = runInit(&cfg)
	}
	code := 127
	var ie *initError
	if errors.As(err, &ie) {
		code = ie.code
	}
	fmt.Fprintf(status, "%d %s", code, err)
	os.Exit(code)
}

func runInit(cfg *initConfig) error {
	s := cfg.Spec
	if s.UserNS != nil {
		return failf(127, "%v: user namespaces need the C init (a build with cgo)", ErrNotSupported)
	}
	unix.Umask(0)
	var netnsFD = -1
	if strings.HasPrefix(s.Network, "/") {
		fd, err := unix.Open(s.Network, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return failf(127, "open network namespace %s: %v", s.Network, err)
		}
		netnsFD = fd
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return failf(127, "make / private: %v", err)
	}
	if err := mountRootfs(cfg); err != nil {
		return err
	}
	if err := pivotRoot(cfg.Rootfs); err != nil {
		return err
	}
	if !s.Privileged {
		if err := maskPaths(); err != nil {
			return err
		}
	}
	if s.ReadonlyRootfs {
		if err := unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return failf(127, "remount / read-only: %v", err)
		}
	}
	if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
		return failf(127, "sethostname: %v", err)
	}
	if s.Network == "none" {
		if err := loopbackUp(); err != nil {
			return failf(127, "bring lo up: %v", err)
		}
	}
	if err := setRlimits(s.Rlimits); err != nil {
		return err
	}
	if netnsFD >= 0 {
		// Network namespaces are per thread: join on this (locked)
		// thread, the one that execs.
		if err := unix.Setns(netnsFD, unix.CLONE_NEWNET); err != nil {
			return failf(127, "join network namespace %s: %v", s.Network, err)
		}
		unix.Close(netnsFD)
	}
	caps, err := effectiveCaps(s)
	if err != nil {
		return failf(127, "%v", err)
	}
	filter, err := seccompFor(s, caps)
	if err != nil {
		return failf(127, "%v", err)
	}
	return finishExec(&execConfig{
		Args: s.Args, Env: s.Env, Cwd: s.Cwd, User: s.User, Hostname: s.Hostname,
		Caps: caps, NoNewPrivileges: s.NoNewPrivileges, MkCwd: true, Seccomp: filter.Bytes(),
	})
}

// mountRootfs mounts the overlay and the kernel filesystems under it.
func mountRootfs(cfg *initConfig) error {
	s := cfg.Spec
	lower := make([]string, len(s.Layers))
	for i, l := range s.Layers {
		lower[len(s.Layers)-1-i] = l
	}
	opts := "lowerdir=" + strings.Join(lower, ":") + ",upperdir=" + cfg.Upper + ",workdir=" + cfg.Work
	if err := unix.Mount("overlay", cfg.Rootfs, "overlay", 0, opts); err != nil {
		return failf(127, "mount overlay rootfs: %v", err)
	}
	root := cfg.Rootfs
	type m struct {
		src, dst, fstype string
		flags            uintptr
		data             string
	}
	const nsne = unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_NODEV
	for _, mt := range []m{
		{"proc", "/proc", "proc", nsne, ""},
		{"tmpfs", "/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
	} {
		if err := mountAt(root, mt.src, mt.dst, mt.fstype, mt.flags, mt.data); err != nil {
			return err
		}
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := filepath.Join(root, "dev", d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return failf(127, "mknod /dev/%s: %v", d.name, err)
		}
	}
	for _, mt := range []m{
		{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
		{"shm", "/dev/shm", "tmpfs", nsne, "mode=1777,size=65536k"},
		{"mqueue", "/dev/mqueue", "mqueue", nsne, ""},
	} {
		if err := mountAt(root, mt.src, mt.dst, mt.fstype, mt.flags, mt.data); err != nil {
			return err
		}
	}
	sysFlags := uintptr(nsne | unix.MS_RDONLY)
	if s.Privileged {
		sysFlags &^= unix.MS_RDONLY
	}
	if err := mountAt(root, "sysfs", "/sys", "sysfs", sysFlags, ""); err != nil {
		// sysfs refuses a new mount when the network namespace is
		// shared with the host; bind the host's read-only instead.
		if err2 := bindAt(root, "/sys", "/sys", !s.Privileged, true); err2 != nil {
			return err
		}
	}
	for _, l := range [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}} {
		if err := os.Symlink(l[0], filepath.Join(root, "dev", l[1])); err != nil {
			return failf(127, "symlink /dev/%s: %v", l[1], err)
		}
	}
	for _, mt := range s.Mounts {
		switch mt.Type {
		case "tmpfs":
			flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
			if mt.ReadOnly {
				flags |= unix.MS_RDONLY
			}
			if err := mountAt(root, "tmpfs", mt.Destination, "tmpfs", flags, strings.Join(mt.Options, ",")); err != nil {
				return err
			}
		default:
			if err := bindAt(root, mt.Source, mt.Destination, mt.ReadOnly, true); err != nil {
				return err
			}
		}
	}
	devices := s.Devices
	if s.Privileged {
		host, err := hostDevices()
		if err != nil {
			return failf(127, "%v", err)
		}
		for _, d := range host {
			if !slices.ContainsFunc(devices, func(x Device) bool { return x.Path == d.Path }) {
				devices = append(devices, d)
			}
		}
	}
	for _, d := range devices {
		p, err := secureJoin(root, d.Path)
		if err != nil {
			return failf(127, "device %s: %v", d.Path, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return failf(127, "device %s: %v", d.Path, err)
		}
		mode := d.FileMode & 0o777
		if mode == 0 {
			mode = 0o666
		}
		typ := uint32(unix.S_IFCHR)
		if d.Type == 'b' {
			typ = unix.S_IFBLK
		}
		if err := unix.Mknod(p, typ|mode, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
			return failf(127, "mknod %s: %v", d.Path, err)
		}
		if err := os.Lchown(p, int(d.UID), int(d.GID)); err != nil {
			return failf(127, "chown %s: %v", d.Path, err)
		}
	}
	return nil
}

// mountAt mounts a filesystem at dst inside root, creating the directory.
func mountAt(root, src, dst, fstype string, flags uintptr, data string) error {
	p, err := secureJoin(root, dst)
	if err != nil {
		return failf(127, "mount %s: %v", dst, err)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return failf(127, "mount %s: %v", dst, err)
	}
	if err := unix.Mount(src, p, fstype, flags, data); err != nil {
		return failf(127, "mount %s on %s: %v", fstype, dst, err)
	}
	return nil
}

// bindAt bind-mounts the host path src on dst inside root, creating dst as
// a directory or an empty file to match src.
func bindAt(root, src, dst string, readonly, recursive bool) error {
	st, err := os.Stat(src)
	if err != nil {
		return failf(127, "bind mount %s: %v", src, err)
	}
	p, err := secureJoin(root, dst)
	if err != nil {
		return failf(127, "bind mount %s: %v", dst, err)
	}
	if st.IsDir() {
		err = os.MkdirAll(p, 0o755)
	} else {
		if err = os.MkdirAll(filepath.Dir(p), 0o755); err == nil {
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|unix.O_NOFOLLOW, 0o644); err == nil {
				f.Close()
			}
		}
	}
	if err != nil {
		return failf(127, "bind mount: create %s: %v", dst, err)
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, p, "", flags, ""); err != nil {
		return failf(127, "bind mount %s on %s: %v", src, dst, err)
	}
	if readonly {
		if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return failf(127, "remount %s read-only: %v", dst, err)
		}
	}
	return nil
}

// secureJoin resolves path inside root the way the container will see it:
// symlinks are followed, but ".." and absolute targets never climb above
// root. The result may not exist yet.
func secureJoin(root, path string) (string, error) {
	var resolved string // relative to root, no leading slash
	rest := strings.Split(filepath.Clean("/"+path), "/")
	links := 0
	for len(rest) > 0 {
		part := rest[0]
		rest = rest[1:]
		switch part {
		case "", ".":
			continue
		case "..":
			resolved = filepath.Dir("/" + resolved)[1:]
			continue
		}
		next := filepath.Join(resolved, part)
		st, err := os.Lstat(filepath.Join(root, next))
		if err != nil || st.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		links++
		if links > 40 {
			return "", fmt.Errorf("too many symlinks under %s", path)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, resolved), nil
}

// pivotRoot makes rootfs the root and detaches the old one, as runc does.
func pivotRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return failf(127, "chdir rootfs: %v", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return failf(127, "pivot_root: %v", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return failf(127, "detach the old root: %v", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return failf(127, "chdir /: %v", err)
	}
	return nil
}

// Docker's default masked and read-only paths.
var (
	maskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func maskPaths() error {
	for _, p := range maskedPaths {
		if err := maskPath(p); err != nil {
			return err
		}
	}
	for _, p := range readonlyPaths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return failf(127, "bind %s: %v", p, err)
		}
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
			return failf(127, "remount %s read-only: %v", p, err)
		}
	}
	return nil
}

// maskPath hides p as the C init's do_mask does: through O_PATH
// descriptors, with /dev/null checked to be the null device, so no
// symlink can redirect the mount.
func maskPath(p string) error {
	target, err := unix.Open(p, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return failf(127, "mask %s: %v", p, err)
	}
	defer unix.Close(target)
	var st unix.Stat_t
	if err := unix.Fstat(target, &st); err != nil {
		return failf(127, "mask %s: %v", p, err)
	}
	tpath := "/proc/self/fd/" + strconv.Itoa(target)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return failf(127, "mask %s: it is a symlink", p)
	case unix.S_IFDIR:
		err = unix.Mount("tmpfs", tpath, "tmpfs", unix.MS_RDONLY, "")
	default:
		null, err2 := unix.Open("/dev/null", unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err2 != nil {
			return failf(127, "mask %s: open /dev/null: %v", p, err2)
		}
		defer unix.Close(null)
		var ns unix.Stat_t
		if err := unix.Fstat(null, &ns); err != nil {
			return failf(127, "mask %s: stat /dev/null: %v", p, err)
		}
		if ns.Mode&unix.S_IFMT != unix.S_IFCHR || ns.Rdev != unix.Mkdev(1, 3) {
			return failf(127, "mask %s: /dev/null is not the null device", p)
		}
		err = unix.Mount("/proc/self/fd/"+strconv.Itoa(null), tpath, "", unix.MS_BIND, "")
	}
	if err != nil {
		return failf(127, "mask %s: %v", p, err)
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// setRlimits applies rlimits, clamped to the current hard limit: without
// CAP_SYS_RESOURCE a hard limit can only go down.
func setRlimits(rls []Rlimit) error {
	for _, r := range rls {
		n, ok := rlimitNumber(r.Type)
		if !ok {
			return failf(127, "unknown rlimit %q", r.Type)
		}
		var cur syscall.Rlimit
		if err := syscall.Getrlimit(n, &cur); err != nil {
			return failf(127, "getrlimit %s: %v", r.Type, err)
		}
		hard, soft := r.Hard, r.Soft
		if hard > cur.Max {
			hard = cur.Max
		}
		if soft > hard {
			soft = hard
		}
		// syscall.Setrlimit (not unix's) so that Go does not restore its
		// own NOFILE soft limit at exec.
		if err := syscall.Setrlimit(n, &syscall.Rlimit{Cur: soft, Max: hard}); err != nil {
			return failf(127, "setrlimit %s: %v", r.Type, err)
		}
	}
	return nil
}

// execConfig is the last step shared by init and exec: who to run as and
// what to run.
type execConfig struct {
	Args            []string `json:"args"`
	Env             []string `json:"env"`
	Cwd             string   `json:"cwd"`
	User            string   `json:"user"`
	Hostname        string   `json:"hostname"`
	Caps            CapSet   `json:"caps"`
	NoNewPrivileges bool     `json:"noNewPrivileges"`
	Rlimits         []Rlimit `json:"rlimits,omitempty"`
	MkCwd           bool     `json:"mkCwd,omitempty"`
	// Seccomp is the filter (seccomp.Program.Bytes), none when empty.
	Seccomp []byte `json:"seccomp,omitempty"`
}

// finishExec resolves the user and the executable inside the container's
// root, drops to the user and capabilities on this locked thread, closes
// every inherited descriptor and execs. It returns only on failure.
func finishExec(c *execConfig) error {
	u, err := lookupUser(c.User)
	if err != nil {
		return failf(127, "%v", err)
	}
	env := buildEnv(c.Env, c.Hostname, u.Home)
	path, err := lookPath(c.Args[0], envValue(env, "PATH"))
	if err != nil {
		return err
	}
	if c.MkCwd {
		if err := os.MkdirAll(c.Cwd, 0o755); err != nil {
			return failf(127, "create working directory %s: %v", c.Cwd, err)
		}
	}
	unix.Umask(0o022)
	if err := closeExtraFDs(); err != nil {
		return failf(127, "close inherited descriptors: %v", err)
	}
	filter, err := seccomp.Decode(c.Seccomp)
	if err != nil {
		return failf(127, "%v", err)
	}
	late := seccompLate(c.NoNewPrivileges, c.Caps)
	if len(filter) > 0 && !late {
		if err := seccomp.Install(filter); err != nil {
			return failf(127, "%v", err)
		}
	}
	if err := setCreds(u, c.Caps); err != nil {
		return failf(127, "%v", err)
	}
	if c.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return failf(127, "set no_new_privs: %v", err)
		}
	}
	if err := unix.Chdir(c.Cwd); err != nil {
		return failf(127, "chdir to %s: %v", c.Cwd, err)
	}
	// A working directory reached through a descriptor of the host
	// (CVE-2024-21626) is outside the root: getcwd says "(unreachable)".
	if wd, err := unix.Getwd(); err != nil || !strings.HasPrefix(wd, "/") {
		return failf(127, "working directory %s is outside the container's root", c.Cwd)
	}
	if len(filter) > 0 && late {
		if err := seccomp.Install(filter); err != nil {
			return failf(127, "%v", err)
		}
	}
	err = syscall.Exec(path, c.Args, env)
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM) {
		return failf(126, "exec %q: permission denied", c.Args[0])
	}
	if errors.Is(err, syscall.ENOENT) {
		return failf(127, "exec %q: no such file or directory", c.Args[0])
	}
	return failf(126, "exec %q: %v", c.Args[0], err)
}

func lookupUser(spec string) (*ExecUser, error) {
	var passwd, group io.Reader
	if f, err := os.Open("/etc/passwd"); err == nil {
		defer f.Close()
		passwd = f
	}
	if f, err := os.Open("/etc/group"); err == nil {
		defer f.Close()
		group = f
	}
	return ResolveUser(spec, passwd, group)
}

// buildEnv adds PATH, HOSTNAME and HOME when the image and spec lack them,
// like docker.
func buildEnv(env []string, hostname, home string) []string {
	out := make([]string, 0, len(env)+3)
	seen := map[string]int{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[k]; ok {
			out[i] = kv
			continue
		}
		seen[k] = len(out)
		out = append(out, kv)
	}
	if _, ok := seen["PATH"]; !ok {
		out = append(out, "PATH="+DefaultPath)
	}
	if _, ok := seen["HOSTNAME"]; !ok && hostname != "" {
		out = append(out, "HOSTNAME="+hostname)
	}
	if _, ok := seen["HOME"]; !ok {
		out = append(out, "HOME="+home)
	}
	return out
}

func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}

// lookPath finds file in the container's PATH like a shell does.
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		st, err := os.Stat(file)
		if err != nil {
			return "", failf(127, "exec %q: no such file or directory", file)
		}
		if st.IsDir() || st.Mode()&0o111 == 0 {
			return "", failf(126, "exec %q: permission denied", file)
		}
		return file, nil
	}
	denied := false
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, file)
		st, err := os.Stat(p)
		if err != nil || st.IsDir() {
			continue
		}
		if st.Mode()&0o111 == 0 {
			denied = true
			continue
		}
		return p, nil
	}
	if denied {
		return "", failf(126, "exec %q: permission denied", file)
	}
	return "", failf(127, "exec %q: executable file not found in $PATH", file)
}

// closeExtraFDs marks every descriptor above 2 close-on-exec, so nothing
// of the host leaks into the container (and the status pipe closes on a
// successful exec).
func closeExtraFDs() error {
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// setCreds drops to user u with capability set caps. Capabilities, the
// bounding set and (with raw syscalls) the IDs are per thread; the caller
// is locked to the thread that execs, and exec hands that thread's
// credentials to the new program.
func setCreds(u *ExecUser, caps CapSet) error {
	for c := 0; c < 64; c++ {
		if caps.Has(c) {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break // past the kernel's last capability
			}
			return fmt.Errorf("drop capability %d from the bounding set: %v", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("keep capabilities: %v", err)
	}
	groups := make([]uint32, len(u.Groups)+1)
	copy(groups, u.Groups)
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(u.Groups)), uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
		return fmt.Errorf("setgroups: %v", e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return fmt.Errorf("setgid %d: %v", u.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return fmt.Errorf("setuid %d: %v", u.UID, e)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0].Effective, data[0].Permitted = uint32(caps), uint32(caps)
	data[1].Effective, data[1].Permitted = uint32(caps>>32), uint32(caps>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset: %v", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("clear ambient capabilities: %v", err)
	}
	return nil
}
