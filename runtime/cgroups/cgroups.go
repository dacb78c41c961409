package cgroups

import "errors"

// Errors returned by this package.
var (
	// ErrNotSupported is returned on systems without cgroups.
	ErrNotSupported = errors.New("cgroups: not supported on this system")
	// ErrNotFound is returned by Load for a cgroup that does not exist.
	ErrNotFound = errors.New("cgroups: cgroup not found")
	// ErrBusy is returned by Delete while processes remain in the cgroup.
	ErrBusy = errors.New("cgroups: cgroup still has processes; kill them first")
)

// Resources are the limits of one container's cgroup. Zero values mean
// "no limit" (or the kernel's default).
type Resources struct {
	MemoryLimit int64  // bytes
	CPUQuota    int64  // microseconds of CPU per CPUPeriod; --cpus 1.5 is 150000/100000
	CPUPeriod   uint64 // microseconds; 0 means 100000
	CPUShares   uint64 // v1 shares (2..262144, default 1024); mapped to cpu.weight on v2
	PidsLimit   int64
	CpusetCpus  string // "0-1"
	CpusetMems  string
	// Devices is the device allowlist, applied in order. nil means
	// DefaultDevices().
	Devices []DeviceRule
}

// DeviceRule allows or denies access to device nodes.
type DeviceRule struct {
	Allow  bool
	Type   byte   // 'a' (all), 'c' or 'b'
	Major  int64  // -1 matches any
	Minor  int64  // -1 matches any
	Access string // any of "rwm"
}

// Stats is a snapshot of a cgroup's usage.
type Stats struct {
	MemoryUsage    uint64 // bytes
	MemoryMaxUsage uint64 // bytes; 0 where the kernel does not report it
	MemoryLimit    uint64 // bytes; 0 means no limit
	CPUUsageNanos  uint64
	Pids           uint64
	PidsLimit      uint64 // 0 means no limit
	OOMKills       uint64
}

// Manager creates and finds cgroups under berth's own subtree ("berth/NAME")
// of one cgroup filesystem, v1 or v2. It is safe for use by several
// goroutines; its methods do file I/O and may block briefly.
type Manager interface {
	// Version is 1 or 2.
	Version() int
	// Create makes the cgroup NAME (a single path element such as a
	// container ID) with the given limits. Creating an existing cgroup
	// updates its limits.
	Create(name string, r *Resources) (Cgroup, error)
	// Load finds an existing cgroup, or returns ErrNotFound.
	Load(name string) (Cgroup, error)
}

// Cgroup is one container's cgroup. Its methods may be called from several
// goroutines and do file I/O.
type Cgroup interface {
	Name() string
	// Add moves a process into the cgroup (in every v1 hierarchy).
	Add(pid int) error
	// Update changes the limits of a live cgroup.
	Update(r *Resources) error
	Stats() (*Stats, error)
	// OOMKills counts processes the kernel killed for exceeding the memory
	// limit since the cgroup was made.
	OOMKills() (uint64, error)
	// Pids lists the processes in the cgroup.
	Pids() ([]int, error)
	// Kill sends SIGKILL to every process in the cgroup and waits until it
	// is empty (freezing first where the kernel has no cgroup.kill, so no
	// process can fork away).
	Kill() error
	// Delete removes the cgroup from every hierarchy. It returns ErrBusy if
	// processes remain, and nil if the cgroup is already gone.
	Delete() error
}
