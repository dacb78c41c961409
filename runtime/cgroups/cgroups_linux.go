package cgroups

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where the cgroup filesystems are mounted.
const DefaultRoot = "/sys/fs/cgroup"

// New detects the host's cgroup layout at DefaultRoot. When DefaultRoot is
// itself a cgroup2 filesystem (the unified layout) it returns a v2 Manager;
// otherwise it returns a v1 Manager over the per-controller hierarchies. A
// hybrid host's empty cgroup2 mount at /sys/fs/cgroup/unified holds no
// controllers and is ignored.
func New() (Manager, error) {
	v, err := detect(DefaultRoot)
	if err != nil {
		return nil, err
	}
	if v == 2 {
		return NewV2(DefaultRoot)
	}
	return NewV1(DefaultRoot)
}

// detect reports 2 when root is a cgroup2 mount and 1 otherwise.
func detect(root string) (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(root, &st); err != nil {
		return 0, fmt.Errorf("cgroups: statfs %s: %w; is cgroupfs mounted?", root, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return 2, nil
	}
	return 1, nil
}
