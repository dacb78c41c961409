package cgroups

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

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

// Pather is implemented by every Cgroup this package returns. Path gives the
// cgroup's directory in the hierarchy of one controller ("memory", "cpu",
// "pids", ...; on v2 the controller is ignored because there is one
// hierarchy), or "" where that controller is not mounted. Exec uses it to
// join a container's cgroup from a child process.
type Pather interface {
	Path(controller string) string
}

// Subtree is the directory, under each hierarchy's root, that holds all of
// berth's cgroups: a container NAME lives at <hierarchy>/berth/NAME.
const Subtree = "berth"

// DefaultPeriod is the CFS period used when Resources.CPUPeriod is 0.
const DefaultPeriod uint64 = 100000

// CPUQuota converts a CPU count such as `--cpus 1.5` into a CFS quota and
// period (150000 µs per 100000 µs). cpus <= 0 means no limit and gives a
// quota of 0. The quota never goes below the kernel's 1000 µs minimum.
func CPUQuota(cpus float64) (quota int64, period uint64) {
	if cpus <= 0 {
		return 0, DefaultPeriod
	}
	quota = int64(cpus*float64(DefaultPeriod) + 0.5)
	if quota < 1000 {
		quota = 1000
	}
	return quota, DefaultPeriod
}

// SharesToWeight maps v1 cpu.shares (2..262144) onto v2 cpu.weight
// (1..10000) with the formula runc and crun use, so a container gets the
// same weight under every runtime (39 for the default 1024 shares). 0 means
// "not set" and gives 0.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// DefaultDevices is Docker's device allowlist for a container, in the order
// Docker (moby's default spec, then the devices runc adds to every
// container) applies it: deny everything; allow zero, null, urandom,
// random, tty and console; deny FUSE; then allow mknod of any char or
// block node, full, /dev/pts/*, ptmx and /dev/net/tun. Because the mknod
// rule comes after the FUSE deny, as in Docker, only mknod of /dev/fuse is
// allowed.
func DefaultDevices() []DeviceRule {
	const wild = -1
	return []DeviceRule{
		{Allow: false, Type: 'a', Major: wild, Minor: wild, Access: "rwm"},
		{Allow: true, Type: 'c', Major: 1, Minor: 5, Access: "rwm"},      // /dev/zero
		{Allow: true, Type: 'c', Major: 1, Minor: 3, Access: "rwm"},      // /dev/null
		{Allow: true, Type: 'c', Major: 1, Minor: 9, Access: "rwm"},      // /dev/urandom
		{Allow: true, Type: 'c', Major: 1, Minor: 8, Access: "rwm"},      // /dev/random
		{Allow: true, Type: 'c', Major: 5, Minor: 0, Access: "rwm"},      // /dev/tty
		{Allow: true, Type: 'c', Major: 5, Minor: 1, Access: "rwm"},      // /dev/console
		{Allow: false, Type: 'c', Major: 10, Minor: 229, Access: "rwm"},  // /dev/fuse
		{Allow: true, Type: 'c', Major: wild, Minor: wild, Access: "m"},  // mknod of any char node
		{Allow: true, Type: 'b', Major: wild, Minor: wild, Access: "m"},  // mknod of any block node
		{Allow: true, Type: 'c', Major: 1, Minor: 7, Access: "rwm"},      // /dev/full
		{Allow: true, Type: 'c', Major: 136, Minor: wild, Access: "rwm"}, // /dev/pts/*
		{Allow: true, Type: 'c', Major: 5, Minor: 2, Access: "rwm"},      // /dev/ptmx
		{Allow: true, Type: 'c', Major: 10, Minor: 200, Access: "rwm"},   // /dev/net/tun
	}
}

// String renders the rule the way the v1 devices.allow/devices.deny files
// and devices.list spell it: "c 1:3 rwm", "c *:* m", "a *:* rwm".
func (r DeviceRule) String() string {
	num := func(n int64) string {
		if n < 0 {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	if r.Type == 'a' {
		return "a *:* rwm"
	}
	return fmt.Sprintf("%c %s:%s %s", r.Type, num(r.Major), num(r.Minor), r.Access)
}

// Validate reports a rule the kernel would refuse, with the reason.
func (r DeviceRule) Validate() error {
	switch r.Type {
	case 'a', 'c', 'b':
	default:
		return fmt.Errorf("cgroups: device rule %q: type must be 'a', 'c' or 'b'", r.String())
	}
	if r.Type != 'a' {
		if r.Access == "" {
			return fmt.Errorf("cgroups: device rule %q: access is empty; use any of \"rwm\"", r.String())
		}
		for _, c := range r.Access {
			if c != 'r' && c != 'w' && c != 'm' {
				return fmt.Errorf("cgroups: device rule %q: access %q may only hold r, w and m", r.String(), r.Access)
			}
		}
		if r.Major > math.MaxUint32 || r.Minor > math.MaxUint32 || r.Major < -1 || r.Minor < -1 {
			return fmt.Errorf("cgroups: device rule %q: major and minor must be -1 (any) or 0..%d", r.String(), uint32(math.MaxUint32))
		}
	}
	return nil
}

// validName checks that a cgroup name is one path element.
func validName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") || len(name) > 255 {
		return fmt.Errorf("cgroups: invalid cgroup name %q: use one path element such as a container ID", name)
	}
	return nil
}

// checkResources refuses values no kernel accepts, before anything is
// written.
func checkResources(r *Resources) error {
	if r.MemoryLimit < 0 || r.CPUQuota < 0 || r.PidsLimit < 0 {
		return fmt.Errorf("cgroups: negative limit (memory %d, cpu quota %d, pids %d): use 0 for no limit", r.MemoryLimit, r.CPUQuota, r.PidsLimit)
	}
	if r.CPUQuota > 0 && r.CPUQuota < 1000 {
		return fmt.Errorf("cgroups: cpu quota %dµs is below the kernel's 1000µs minimum", r.CPUQuota)
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000) {
		return fmt.Errorf("cgroups: cpu period %dµs is outside 1000..1000000", r.CPUPeriod)
	}
	for _, rule := range r.Devices {
		if err := rule.Validate(); err != nil {
			return err
		}
	}
	return nil
}
