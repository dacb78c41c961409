package cgroups

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf/asm"
)

// v2Controllers are the controllers berth enables for its containers, in
// the order they are written to cgroup.subtree_control.
var v2Controllers = []string{"cpuset", "cpu", "memory", "pids"}

type v2Manager struct {
	root   string
	parent string // <root>/berth

	mu      sync.Mutex
	ready   bool
	enabled map[string]bool // controllers enabled in berth/cgroup.subtree_control

	// attachDevices installs a device filter on the cgroup directory dir.
	// It is the eBPF loader on a real host; tests replace it to record the
	// program.
	attachDevices func(dir string, insts asm.Instructions) error
}

var _ Manager = (*v2Manager)(nil)

// NewV2 returns a Manager for the cgroup2 filesystem mounted at root
// (normally /sys/fs/cgroup). It does not need systemd: on first use it
// enables cpuset, cpu, memory and pids (those the kernel offers in
// root/cgroup.controllers) in the subtree_control of root and of
// root/berth, where the containers' cgroups live. Tests point root at a
// fake tree of plain files.
func NewV2(root string) (Manager, error) {
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		return nil, fmt.Errorf("cgroups: %s is not a cgroup2 mount (no cgroup.controllers): %w", root, ErrNotSupported)
	}
	return &v2Manager{
		root:          root,
		parent:        filepath.Join(root, Subtree),
		attachDevices: attachDeviceFilter,
	}, nil
}

func (m *v2Manager) Version() int { return 2 }

// setup enables the controllers along root → berth once. Each controller
// is enabled on its own so that one the kernel refuses (cpu, while a
// realtime task sits outside the root cgroup) does not cost the others.
func (m *v2Manager) setup() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ready {
		return nil
	}
	avail, err := readControllers(m.root)
	if err != nil {
		return err
	}
	rootOn := m.enable(m.root, avail)
	if err := os.MkdirAll(m.parent, 0o755); err != nil {
		return fmt.Errorf("cgroups: create %s: %w", m.parent, err)
	}
	// A real kernel lists in berth/cgroup.controllers what root enabled;
	// a fake tree has no such file, and there root's set stands.
	sub := rootOn
	if _, err := os.Stat(filepath.Join(m.parent, "cgroup.controllers")); err == nil {
		if sub, err = readControllers(m.parent); err != nil {
			return err
		}
	}
	m.enabled = m.enable(m.parent, sub)
	m.ready = true
	return nil
}

// enable writes "+c" for each wanted controller that avail lists into
// dir/cgroup.subtree_control and returns the set that took.
func (m *v2Manager) enable(dir string, avail map[string]bool) map[string]bool {
	on := map[string]bool{}
	have, _ := readControllersFile(dir, "cgroup.subtree_control")
	var add []string
	for _, c := range v2Controllers {
		switch {
		case !avail[c]:
		case have[c]:
			on[c] = true
		default:
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return on
	}
	// One write for all of them, as an administrator would type it.
	if err := writeFile(dir, "cgroup.subtree_control", strings.Join(add, " ")); err == nil {
		for _, a := range add {
			on[a[1:]] = true
		}
		return on
	}
	for _, a := range add {
		if err := writeFile(dir, "cgroup.subtree_control", a); err != nil {
			slog.Warn("cgroups: cannot enable controller; its limits will be refused", "controller", a[1:], "dir", dir, "err", err)
			continue
		}
		on[a[1:]] = true
	}
	return on
}

func readControllers(dir string) (map[string]bool, error) {
	s, err := readControllersFile(dir, "cgroup.controllers")
	if err != nil {
		return nil, fmt.Errorf("cgroups: read %s: %w", filepath.Join(dir, "cgroup.controllers"), err)
	}
	return s, nil
}

func readControllersFile(dir, file string) (map[string]bool, error) {
	s, err := readFile(dir, file)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, c := range strings.Fields(s) {
		set[strings.TrimPrefix(c, "+")] = true
	}
	return set, nil
}

func (m *v2Manager) Create(name string, r *Resources) (Cgroup, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if r == nil {
		r = &Resources{}
	}
	if err := m.setup(); err != nil {
		return nil, err
	}
	if err := m.check(r); err != nil {
		return nil, err
	}
	cg := &v2Cgroup{m: m, name: name, dir: filepath.Join(m.parent, name)}
	err := os.Mkdir(cg.dir, 0o755)
	if err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cgroups: create %s: %w", cg.dir, err)
	}
	fresh := err == nil
	if err := cg.apply(r, true); err != nil {
		if fresh {
			_ = cg.Delete()
		}
		return nil, err
	}
	return cg, nil
}

func (m *v2Manager) check(r *Resources) error {
	if err := checkResources(r); err != nil {
		return err
	}
	need := map[string]bool{
		"memory": r.MemoryLimit != 0,
		"cpu":    r.CPUQuota != 0 || r.CPUShares != 0,
		"pids":   r.PidsLimit != 0,
		"cpuset": r.CpusetCpus != "" || r.CpusetMems != "",
	}
	for c, n := range need {
		if n && !m.enabled[c] {
			return fmt.Errorf("cgroups: the %s controller is not enabled for %s (see %s/cgroup.controllers); drop that limit or delegate the controller: %w",
				c, m.parent, m.root, ErrNotSupported)
		}
	}
	return nil
}

func (m *v2Manager) Load(name string) (Cgroup, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	cg := &v2Cgroup{m: m, name: name, dir: filepath.Join(m.parent, name)}
	if _, err := os.Stat(cg.dir); err != nil {
		return nil, fmt.Errorf("cgroups: %s: %w", name, ErrNotFound)
	}
	// Load may run in a fresh process (an agent restarted); learn which
	// controllers the subtree has so Update checks limits correctly.
	if err := m.setup(); err != nil {
		return nil, err
	}
	return cg, nil
}

type v2Cgroup struct {
	m    *v2Manager
	name string
	dir  string
	mu   sync.Mutex // serialises Update and Kill
}

var (
	_ Cgroup = (*v2Cgroup)(nil)
	_ Pather = (*v2Cgroup)(nil)
)

func (c *v2Cgroup) Name() string { return c.name }

// Path returns the cgroup's one directory whatever the controller.
func (c *v2Cgroup) Path(string) string { return c.dir }

func (c *v2Cgroup) Add(pid int) error { return addPid(c.dir, pid) }

func (c *v2Cgroup) Update(r *Resources) error {
	if r == nil {
		r = &Resources{}
	}
	if err := c.m.check(r); err != nil {
		return err
	}
	return c.apply(r, false)
}

// apply writes the limits of the enabled controllers. As on v1, zero
// values reset a limit, and device rules are replaced on create and on an
// update that sets r.Devices.
func (c *v2Cgroup) apply(r *Resources, create bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	on := c.m.enabled
	if on["memory"] {
		v := "max"
		if r.MemoryLimit > 0 {
			v = strconv.FormatInt(r.MemoryLimit, 10)
		}
		if err := writeFile(c.dir, "memory.max", v); err != nil {
			return err
		}
	}
	if on["cpu"] {
		period := r.CPUPeriod
		if period == 0 {
			period = DefaultPeriod
		}
		quota := "max"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		if err := writeFile(c.dir, "cpu.max", quota+" "+strconv.FormatUint(period, 10)); err != nil {
			return err
		}
		weight := SharesToWeight(r.CPUShares)
		if weight == 0 {
			weight = 100 // the kernel's default
		}
		if err := writeFile(c.dir, "cpu.weight", strconv.FormatUint(weight, 10)); err != nil {
			return err
		}
	}
	if on["pids"] {
		v := "max"
		if r.PidsLimit > 0 {
			v = strconv.FormatInt(r.PidsLimit, 10)
		}
		if err := writeFile(c.dir, "pids.max", v); err != nil {
			return err
		}
	}
	if on["cpuset"] {
		// An empty v2 cpuset inherits the parent's, so nothing is copied.
		if r.CpusetCpus != "" {
			if err := writeFile(c.dir, "cpuset.cpus", r.CpusetCpus); err != nil {
				return err
			}
		}
		if r.CpusetMems != "" {
			if err := writeFile(c.dir, "cpuset.mems", r.CpusetMems); err != nil {
				return err
			}
		}
	}
	if create || r.Devices != nil {
		rules := r.Devices
		if rules == nil {
			rules = DefaultDevices()
		}
		insts, err := DeviceProgram(rules)
		if err != nil {
			return err
		}
		if err := c.m.attachDevices(c.dir, insts); err != nil {
			return err
		}
	}
	return nil
}

func (c *v2Cgroup) Stats() (*Stats, error) {
	if _, err := os.Stat(c.dir); err != nil {
		return nil, fmt.Errorf("cgroups: stats of %s: %w", c.name, ErrNotFound)
	}
	s := &Stats{}
	var err error
	if s.MemoryUsage, err = readUint(c.dir, "memory.current"); err != nil {
		return nil, err
	}
	if s.MemoryMaxUsage, err = readUint(c.dir, "memory.peak"); err != nil { // Linux 5.19+
		return nil, err
	}
	if s.MemoryLimit, err = readUint(c.dir, "memory.max"); err != nil {
		return nil, err
	}
	usec, _, err := readKeyed(c.dir, "cpu.stat", "usage_usec")
	if err != nil {
		return nil, err
	}
	s.CPUUsageNanos = usec * 1000
	if s.Pids, err = readUint(c.dir, "pids.current"); err != nil {
		return nil, err
	}
	if s.PidsLimit, err = readUint(c.dir, "pids.max"); err != nil {
		return nil, err
	}
	if s.OOMKills, err = c.OOMKills(); err != nil {
		return nil, err
	}
	return s, nil
}

// OOMKills reads "oom_kill" from memory.events.
func (c *v2Cgroup) OOMKills() (uint64, error) {
	n, _, err := readKeyed(c.dir, "memory.events", "oom_kill")
	return n, err
}

func (c *v2Cgroup) Pids() ([]int, error) { return readPids(c.dir) }

// Kill uses cgroup.kill (Linux 5.14+), which kills every process in the
// cgroup atomically. Older kernels get the freezer: cgroup.freeze, kill
// every pid, thaw.
func (c *v2Cgroup) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := os.Stat(c.dir); err != nil {
		return nil
	}
	deadline := time.Now().Add(killTimeout)
	if _, err := os.Stat(filepath.Join(c.dir, "cgroup.kill")); err == nil {
		if err := writeFile(c.dir, "cgroup.kill", "1"); err != nil {
			return err
		}
		return waitEmpty(c.dir, deadline)
	}
	_, ferr := os.Stat(filepath.Join(c.dir, "cgroup.freeze"))
	canFreeze := ferr == nil
	for {
		frozen := canFreeze && c.freeze()
		pids, err := readPids(c.dir)
		kerr := err
		if err == nil {
			kerr = killAll(pids)
		}
		if canFreeze { // thaw even a freeze that did not complete
			if err := writeFile(c.dir, "cgroup.freeze", "0"); err != nil && kerr == nil {
				return err
			}
		}
		if errors.Is(kerr, ErrNotFound) {
			return nil
		}
		if kerr != nil {
			return kerr
		}
		if len(pids) == 0 || frozen {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: %s: processes keep appearing after SIGKILL: %w", c.name, ErrBusy)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return waitEmpty(c.dir, deadline)
}

// freeze writes cgroup.freeze and waits for cgroup.events to say frozen.
func (c *v2Cgroup) freeze() bool {
	if err := writeFile(c.dir, "cgroup.freeze", "1"); err != nil {
		return false
	}
	for i := 0; i < 200; i++ {
		v, ok, err := readKeyed(c.dir, "cgroup.events", "frozen")
		if err != nil || !ok {
			return false
		}
		if v == 1 {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	return false
}

// Delete removes the directory; the kernel detaches the device filter
// with it.
func (c *v2Cgroup) Delete() error { return removeDir(c.dir) }
