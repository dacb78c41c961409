package cgroups

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"
)

// v1Controllers are the cgroup v1 hierarchies berth uses, each mounted at
// <root>/<name>. Where cpu and cpuacct share one hierarchy, the usual
// "cpu" and "cpuacct" symlinks lead to the same directory.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "cpuset", "pids", "devices", "freezer"}

// v1Unlimited: the v1 memory controller reports "no limit" as the largest
// page-aligned int64 (9223372036854771712); anything this large is no limit.
const v1Unlimited = uint64(1) << 62

type v1Manager struct {
	root string
	// hier maps a controller to its hierarchy root (<root>/<controller>);
	// controllers that are not mounted are absent.
	hier map[string]string
	mu   sync.Mutex // serialises the set-up of the berth/ parents
}

var _ Manager = (*v1Manager)(nil)

// NewV1 returns a Manager for the cgroup v1 hierarchies mounted under root
// (normally /sys/fs/cgroup). Controllers that are not mounted are skipped;
// asking for a limit of a missing controller fails in Create and Update.
// Tests point root at a fake tree of plain files.
func NewV1(root string) (Manager, error) {
	m := &v1Manager{root: root, hier: map[string]string{}}
	for _, c := range v1Controllers {
		dir := filepath.Join(root, c)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			m.hier[c] = dir
		}
	}
	if len(m.hier) == 0 {
		return nil, fmt.Errorf("cgroups: no v1 controller (memory, cpu, pids, ...) is mounted under %s: %w", root, ErrNotSupported)
	}
	return m, nil
}

func (m *v1Manager) Version() int { return 1 }

// dirs returns the cgroup's directory in each mounted hierarchy.
func (m *v1Manager) dirs(name string) map[string]string {
	d := make(map[string]string, len(m.hier))
	for c, h := range m.hier {
		d[c] = filepath.Join(h, Subtree, name)
	}
	return d
}

func (m *v1Manager) Create(name string, r *Resources) (Cgroup, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	if r == nil {
		r = &Resources{}
	}
	if err := m.check(r); err != nil {
		return nil, err
	}
	cg := &v1Cgroup{m: m, name: name, dirs: m.dirs(name)}
	if err := m.setupParents(); err != nil {
		return nil, err
	}
	fresh := false
	for _, c := range v1Controllers {
		dir, ok := cg.dirs[c]
		if !ok {
			continue
		}
		err := os.Mkdir(dir, 0o755)
		if err != nil && !errors.Is(err, os.ErrExist) {
			_ = cg.Delete()
			return nil, fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		if err == nil {
			fresh = true
		}
		if c == "cpuset" {
			if err := copyCpuset(filepath.Dir(dir), dir); err != nil {
				_ = cg.Delete()
				return nil, err
			}
		}
	}
	if err := cg.apply(r, true); err != nil {
		if fresh {
			_ = cg.Delete()
		}
		return nil, err
	}
	return cg, nil
}

// check refuses limits whose controller is not mounted, and bad device
// rules, before anything is written.
func (m *v1Manager) check(r *Resources) error {
	if err := checkResources(r); err != nil {
		return err
	}
	need := map[string]bool{
		"memory":  r.MemoryLimit != 0,
		"cpu":     r.CPUQuota != 0 || r.CPUShares != 0,
		"pids":    r.PidsLimit != 0,
		"cpuset":  r.CpusetCpus != "" || r.CpusetMems != "",
		"devices": r.Devices != nil,
	}
	for c, n := range need {
		if _, ok := m.hier[c]; n && !ok {
			return fmt.Errorf("cgroups: the %s controller is not mounted under %s; mount it or drop that limit: %w", c, m.root, ErrNotSupported)
		}
	}
	return nil
}

// setupParents makes <hierarchy>/berth everywhere. cpuset needs the
// parent's cpus and mems copied in, because a new v1 cpuset cgroup starts
// empty and no process (nor child's value) can be added to an empty one.
func (m *v1Manager) setupParents() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c, h := range m.hier {
		dir := filepath.Join(h, Subtree)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("cgroups: create %s: %w", dir, err)
		}
		if c == "cpuset" {
			if err := copyCpuset(h, dir); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyCpuset fills an empty cpuset.cpus/cpuset.mems of dir from parent.
func copyCpuset(parent, dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := readFile(dir, f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("cgroups: read %s: %w", filepath.Join(dir, f), err)
		}
		if cur != "" {
			continue
		}
		v, err := readFile(parent, f)
		if err != nil {
			return fmt.Errorf("cgroups: read %s: %w", filepath.Join(parent, f), err)
		}
		if err := writeFile(dir, f, v); err != nil {
			return err
		}
	}
	return nil
}

func (m *v1Manager) Load(name string) (Cgroup, error) {
	if err := validName(name); err != nil {
		return nil, err
	}
	cg := &v1Cgroup{m: m, name: name, dirs: m.dirs(name)}
	for _, d := range cg.dirs {
		if _, err := os.Stat(d); err == nil {
			return cg, nil
		}
	}
	return nil, fmt.Errorf("cgroups: %s: %w", name, ErrNotFound)
}

type v1Cgroup struct {
	m    *v1Manager
	name string
	dirs map[string]string // controller -> directory
	mu   sync.Mutex        // serialises Update and Kill
}

var (
	_ Cgroup = (*v1Cgroup)(nil)
	_ Pather = (*v1Cgroup)(nil)
)

func (c *v1Cgroup) Name() string { return c.name }

func (c *v1Cgroup) Path(controller string) string { return c.dirs[controller] }

// unique returns each distinct directory once (cpu and cpuacct may be one).
func (c *v1Cgroup) unique() []string {
	seen := map[string]bool{}
	var out []string
	for _, ctl := range v1Controllers {
		d, ok := c.dirs[ctl]
		if !ok {
			continue
		}
		key := d
		if r, err := filepath.EvalSymlinks(d); err == nil {
			key = r
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, d)
		}
	}
	return out
}

func (c *v1Cgroup) Add(pid int) error {
	for _, d := range c.unique() {
		if err := addPid(d, pid); err != nil {
			return err
		}
	}
	return nil
}

func (c *v1Cgroup) Update(r *Resources) error {
	if r == nil {
		r = &Resources{}
	}
	if err := c.m.check(r); err != nil {
		return err
	}
	return c.apply(r, false)
}

// apply writes the limits. Zero values reset a limit to "none", so Update
// is not cumulative. Device rules are rewritten on create, and on update
// only when r.Devices is set: resetting the rules of a live cgroup would
// briefly deny its processes every device.
func (c *v1Cgroup) apply(r *Resources, create bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.dirs["memory"]; ok {
		v := "-1"
		if r.MemoryLimit > 0 {
			v = strconv.FormatInt(r.MemoryLimit, 10)
		}
		if err := writeFile(d, "memory.limit_in_bytes", v); err != nil {
			return err
		}
	}
	if d, ok := c.dirs["cpu"]; ok {
		period := r.CPUPeriod
		if period == 0 {
			period = DefaultPeriod
		}
		quota := "-1"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		// Lift the quota first: a new period with the old quota can
		// briefly exceed what the kernel accepts.
		if err := writeFile(d, "cpu.cfs_quota_us", "-1"); err != nil {
			return err
		}
		if err := writeFile(d, "cpu.cfs_period_us", strconv.FormatUint(period, 10)); err != nil {
			return err
		}
		if err := writeFile(d, "cpu.cfs_quota_us", quota); err != nil {
			return err
		}
		shares := r.CPUShares
		if shares == 0 {
			shares = 1024
		}
		if err := writeFile(d, "cpu.shares", strconv.FormatUint(shares, 10)); err != nil {
			return err
		}
	}
	if d, ok := c.dirs["pids"]; ok {
		v := "max"
		if r.PidsLimit > 0 {
			v = strconv.FormatInt(r.PidsLimit, 10)
		}
		if err := writeFile(d, "pids.max", v); err != nil {
			return err
		}
	}
	if d, ok := c.dirs["cpuset"]; ok {
		if r.CpusetCpus != "" {
			if err := writeFile(d, "cpuset.cpus", r.CpusetCpus); err != nil {
				return err
			}
		}
		if r.CpusetMems != "" {
			if err := writeFile(d, "cpuset.mems", r.CpusetMems); err != nil {
				return err
			}
		}
	}
	if d, ok := c.dirs["devices"]; ok && (create || r.Devices != nil) {
		rules := r.Devices
		if rules == nil {
			rules = DefaultDevices()
		}
		for _, rule := range rules {
			file := "devices.deny"
			if rule.Allow {
				file = "devices.allow"
			}
			if err := writeFile(d, file, rule.String()); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *v1Cgroup) Stats() (*Stats, error) {
	if !c.exists() {
		return nil, fmt.Errorf("cgroups: stats of %s: %w", c.name, ErrNotFound)
	}
	s := &Stats{}
	var err error
	if d, ok := c.dirs["memory"]; ok {
		if s.MemoryUsage, err = readUint(d, "memory.usage_in_bytes"); err != nil {
			return nil, err
		}
		if s.MemoryMaxUsage, err = readUint(d, "memory.max_usage_in_bytes"); err != nil {
			return nil, err
		}
		if s.MemoryLimit, err = readUint(d, "memory.limit_in_bytes"); err != nil {
			return nil, err
		}
		if s.MemoryLimit >= v1Unlimited {
			s.MemoryLimit = 0
		}
		if s.OOMKills, err = c.OOMKills(); err != nil {
			return nil, err
		}
	}
	if d, ok := c.dirs["cpuacct"]; ok {
		if s.CPUUsageNanos, err = readUint(d, "cpuacct.usage"); err != nil {
			return nil, err
		}
	}
	if d, ok := c.dirs["pids"]; ok {
		if s.Pids, err = readUint(d, "pids.current"); err != nil {
			return nil, err
		}
		if s.PidsLimit, err = readUint(d, "pids.max"); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// OOMKills reads the "oom_kill" counter of memory.oom_control (Linux 4.13
// and later). Older kernels lack it; there the best available signal is
// memory.failcnt, the number of times usage hit the limit, and OOMKills
// reports 1 once it is non-zero: the limit was reached at least once, which
// on such kernels is how a runtime has to guess at an OOM kill.
func (c *v1Cgroup) OOMKills() (uint64, error) {
	d, ok := c.dirs["memory"]
	if !ok {
		return 0, nil
	}
	n, found, err := readKeyed(d, "memory.oom_control", "oom_kill")
	if err != nil || found {
		return n, err
	}
	fail, err := readUint(d, "memory.failcnt")
	if err != nil || fail == 0 {
		return 0, err
	}
	return 1, nil
}

// exists reports whether the cgroup is in any hierarchy.
func (c *v1Cgroup) exists() bool {
	for _, d := range c.dirs {
		if _, err := os.Stat(d); err == nil {
			return true
		}
	}
	return false
}

// Pids lists the union of the processes in every hierarchy, sorted.
func (c *v1Cgroup) Pids() ([]int, error) {
	set := map[int]bool{}
	found := false
	for _, d := range c.unique() {
		pids, err := readPids(d)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found = true
		for _, p := range pids {
			set[p] = true
		}
	}
	if !found {
		return nil, fmt.Errorf("cgroups: %s: %w", c.name, ErrNotFound)
	}
	out := make([]int, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Ints(out)
	return out, nil
}

// Kill freezes the cgroup so nothing can fork while the pids are read,
// sends SIGKILL to all of them, thaws (frozen processes cannot die), and
// waits until every hierarchy is empty.
func (c *v1Cgroup) Kill() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	deadline := time.Now().Add(killTimeout)
	fz, hasFreezer := c.dirs["freezer"]
	if hasFreezer {
		if _, err := os.Stat(fz); err != nil {
			hasFreezer = false
		}
	}
	for {
		frozen := false
		if hasFreezer {
			frozen = c.freeze(fz)
		}
		pids, err := c.Pids()
		kerr := err
		if err == nil {
			kerr = killAll(pids)
		}
		// Thaw even when the freeze did not complete (a task stuck in
		// FREEZING): frozen tasks cannot act on SIGKILL.
		if hasFreezer {
			if err := writeFile(fz, "freezer.state", "THAWED"); err != nil && kerr == nil && c.exists() {
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
		// Without a completed freeze a process may have forked between
		// the read and the kill: go round until a read finds nothing.
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroups: %s: processes keep appearing after SIGKILL: %w", c.name, ErrBusy)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, d := range c.unique() {
		if err := waitEmpty(d, deadline); err != nil {
			return err
		}
	}
	return nil
}

// freeze asks the freezer for FROZEN and waits briefly for the state to
// settle; it reports whether the cgroup froze.
func (c *v1Cgroup) freeze(dir string) bool {
	if err := writeFile(dir, "freezer.state", "FROZEN"); err != nil {
		return false
	}
	for i := 0; i < 200; i++ {
		s, err := readFile(dir, "freezer.state")
		if err != nil {
			return false
		}
		if s == "FROZEN" {
			return true
		}
		time.Sleep(time.Millisecond)
	}
	// Still FREEZING (a task in an uninterruptible sleep): kill anyway
	// and let the caller go round again after thawing.
	return false
}

func (c *v1Cgroup) Delete() error {
	var busy error
	for _, d := range c.unique() {
		if err := removeDir(d); err != nil {
			if errors.Is(err, ErrBusy) {
				busy = err
				continue
			}
			return err
		}
	}
	return busy
}
