package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

// ErrBadTmpfs means a task's tmpfs mount is malformed.
var ErrBadTmpfs = errors.New("engine: invalid tmpfs mount: want /path[:size=64m,mode=1777,...]")

// applySecurity carries a task's security options into its spec. Every
// privileged start is logged at warning level: it hands the container
// the host.
func applySecurity(req *TaskRequest, spec *container.Spec) error {
	t := req.Task
	spec.Privileged = t.Privileged
	spec.ReadonlyRootfs = t.ReadOnly
	spec.NoNewPrivileges = t.NoNewPrivileges
	spec.Seccomp = t.Seccomp
	for _, s := range t.Tmpfs {
		m, err := ParseTmpfs(s)
		if err != nil {
			return err
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	switch t.Userns {
	case "", "host":
	case "private":
		r, err := UserNSRange("/etc/subuid", "/etc/subgid")
		if err != nil {
			return err
		}
		spec.UserNS = r
	default:
		return fmt.Errorf("engine: userns %q: want host or private", t.Userns)
	}
	if t.Privileged {
		slog.Warn("starting a privileged container: all capabilities and host devices, no seccomp filter",
			"alloc", req.AllocID, "container", req.ID, "task", t.Name, "image", t.Image)
	}
	return nil
}

// DefaultUserNSRange is the host range a user-namespaced container's IDs
// map to when /etc/subuid and /etc/subgid give none to the user "berth":
// 65536 IDs from 2^30, far above any real user's.
var DefaultUserNSRange = container.IDMap{HostID: 1 << 30, Size: 65536}

// UserNSRange returns the range for containers run with --userns private:
// the first subordinate range of the user "berth" in subuid and subgid
// (they must agree), or DefaultUserNSRange when neither names it.
func UserNSRange(subuid, subgid string) (*container.IDMap, error) {
	u, uok, err := subRange(subuid)
	if err != nil {
		return nil, err
	}
	g, gok, err := subRange(subgid)
	if err != nil {
		return nil, err
	}
	switch {
	case !uok && !gok:
		r := DefaultUserNSRange
		return &r, nil
	case uok && gok && u == g:
		return &u, nil
	}
	return nil, fmt.Errorf("engine: the user berth needs the same subordinate range in %s and %s (or none in either)", subuid, subgid)
}

func subRange(path string) (container.IDMap, bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return container.IDMap{}, false, nil
	}
	if err != nil {
		return container.IDMap{}, false, fmt.Errorf("engine: %w", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(l), ":")
		if len(f) != 3 || f[0] != "berth" {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		size, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || start == 0 || size == 0 || start+size > 1<<32-1 {
			return container.IDMap{}, false, fmt.Errorf("engine: %s: bad range %q for berth", path, l)
		}
		return container.IDMap{HostID: uint32(start), Size: uint32(size)}, true, nil
	}
	return container.IDMap{}, false, nil
}

// ParseTmpfs reads docker's --tmpfs PATH[:OPTIONS]. The container always
// mounts it nosuid and nodev; "ro" makes it read-only, and size, mode,
// uid, gid, nr_inodes and nr_blocks go to tmpfs.
func ParseTmpfs(s string) (container.Mount, error) {
	path, opts, _ := strings.Cut(s, ":")
	if !strings.HasPrefix(path, "/") || path == "/" || strings.Contains(path, "..") {
		return container.Mount{}, fmt.Errorf("%w: %q: the path must be absolute and not /", ErrBadTmpfs, s)
	}
	m := container.Mount{Type: "tmpfs", Destination: path}
	if opts == "" {
		return m, nil
	}
	for _, o := range strings.Split(opts, ",") {
		key, _, _ := strings.Cut(o, "=")
		switch key {
		case "ro":
			m.ReadOnly = true
		case "rw", "nosuid", "nodev", "noexec", "exec", "suid", "dev":
			// berth's tmpfs mounts are nosuid and nodev; exec is allowed.
		case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks":
			if !strings.Contains(o, "=") || strings.ContainsAny(o, " \x00") {
				return container.Mount{}, fmt.Errorf("%w: %q: option %q needs a value", ErrBadTmpfs, s, o)
			}
			m.Options = append(m.Options, o)
		default:
			return container.Mount{}, fmt.Errorf("%w: %q: unknown option %q", ErrBadTmpfs, s, o)
		}
	}
	return m, nil
}

// CheckTaskSecurity validates a task's security options at the edge (the
// CLI, the job loader): a seccomp profile that does not parse, a bad
// tmpfs, an unknown userns mode.
func CheckTaskSecurity(t *api.Task) error {
	for _, s := range t.Tmpfs {
		if _, err := ParseTmpfs(s); err != nil {
			return err
		}
	}
	if err := container.CheckSeccomp(t.Seccomp); err != nil {
		return err
	}
	switch t.Userns {
	case "", "host", "private":
	default:
		return fmt.Errorf("engine: userns %q: want host or private", t.Userns)
	}
	return nil
}
