//go:build !linux

package cgroups

// DefaultRoot is where the cgroup filesystems are mounted on Linux.
const DefaultRoot = "/sys/fs/cgroup"

// New returns ErrNotSupported: cgroups exist only on Linux.
func New() (Manager, error) { return nil, ErrNotSupported }

// NewV1 returns ErrNotSupported: cgroups exist only on Linux.
func NewV1(root string) (Manager, error) { return nil, ErrNotSupported }

// NewV2 returns ErrNotSupported: cgroups exist only on Linux.
func NewV2(root string) (Manager, error) { return nil, ErrNotSupported }
