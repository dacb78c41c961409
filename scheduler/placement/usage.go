package placement

import (
	"fmt"
	"regexp"
	"sort"

	"github.com/berth-dev/berth/api"
)

// Dynamic host ports come from this range, lowest free first.
const (
	MinDynamicPort = 20000
	MaxDynamicPort = 32000
)

// live reports whether an allocation holds resources on its node from the
// scheduler's point of view: the server still wants it to run and the
// agent has not reported it finished. An allocation told to stop frees
// its resources for new placements at once (as in Nomad); the agent stops
// the old container before it starts the new one.
func live(a *api.Allocation) bool {
	if a.DesiredStatus != api.AllocDesiredRun && a.DesiredStatus != "" {
		return false
	}
	return !clientTerminal(a)
}

func clientTerminal(a *api.Allocation) bool {
	switch a.ClientStatus {
	case api.AllocClientComplete, api.AllocClientFailed, api.AllocClientLost:
		return true
	}
	return false
}

type portKey struct {
	port  int
	proto string
}

func (k portKey) String() string { return fmt.Sprintf("%d/%s", k.port, k.proto) }

// nodeUsage is what the live allocations on one node hold, kept up to date
// as the plan grows (placements add, stops and preemptions remove).
type nodeUsage struct {
	node   *api.Node
	cpu    int
	mem    int
	gpus   []heldDevice       // devices held, few per node: a slice beats a map
	ports  map[portKey]string // host port → alloc ID holding it
	allocs []*api.Allocation  // live allocations, in the order they were added

	devs    []*api.GPUDevice // schedulable devices (MIG parents left out), by Index then UUID
	parents map[string]bool  // UUIDs of GPUs split into MIG instances; nil when none

	// shared marks a usage that belongs to a UsageCache entry: it must
	// not change. evalContext.mutableUsage swaps in a copy first.
	shared bool
}

// mustOwn guards the cache: changing a shared usage would change every
// later plan's view of the node.
func (u *nodeUsage) mustOwn() {
	if u.shared {
		panic("placement: a cached node usage was about to be changed in place")
	}
}

type heldDevice struct {
	uuid, alloc string
}

func newNodeUsage(n *api.Node) *nodeUsage {
	u := &nodeUsage{node: n}
	if len(n.Resources.GPUs) > 0 {
		for i := range n.Resources.GPUs {
			if p := n.Resources.GPUs[i].ParentUUID; p != "" {
				if u.parents == nil {
					u.parents = map[string]bool{}
				}
				u.parents[p] = true
			}
		}
		u.devs = make([]*api.GPUDevice, 0, len(n.Resources.GPUs))
		sorted := true
		for i := range n.Resources.GPUs {
			d := &n.Resources.GPUs[i]
			if u.parents[d.UUID] {
				continue
			}
			if k := len(u.devs); k > 0 && devLess(d, u.devs[k-1]) {
				sorted = false
			}
			u.devs = append(u.devs, d)
		}
		if !sorted {
			sort.SliceStable(u.devs, func(i, j int) bool { return devLess(u.devs[i], u.devs[j]) })
		}
	}
	return u
}

func devLess(a, b *api.GPUDevice) bool {
	if a.Index != b.Index {
		return a.Index < b.Index
	}
	return a.UUID < b.UUID
}

// holder returns the allocation holding a device, or "".
func (u *nodeUsage) holder(uuid string) string {
	for _, h := range u.gpus {
		if h.uuid == uuid {
			return h.alloc
		}
	}
	return ""
}

func (u *nodeUsage) add(a *api.Allocation) {
	u.mustOwn()
	u.cpu += a.Resources.CPU
	u.mem += a.Resources.MemoryMB
	for _, g := range a.GPUs {
		u.gpus = append(u.gpus, heldDevice{g, a.ID})
	}
	for _, p := range a.Ports {
		if u.ports == nil {
			u.ports = map[portKey]string{}
		}
		u.ports[portKey{p.Value, protocolOf(p.Protocol)}] = a.ID
	}
	u.allocs = append(u.allocs, a)
}

func (u *nodeUsage) remove(a *api.Allocation) {
	for i, b := range u.allocs {
		if b.ID != a.ID {
			continue
		}
		u.mustOwn()
		u.allocs = append(u.allocs[:i:i], u.allocs[i+1:]...)
		u.cpu -= b.Resources.CPU
		u.mem -= b.Resources.MemoryMB
		if len(b.GPUs) > 0 {
			kept := u.gpus[:0:0]
			for _, h := range u.gpus {
				if h.alloc != b.ID {
					kept = append(kept, h)
				}
			}
			u.gpus = kept
		}
		for _, p := range b.Ports {
			k := portKey{p.Value, protocolOf(p.Protocol)}
			if u.ports[k] == b.ID {
				delete(u.ports, k)
			}
		}
		return
	}
}

// clone returns an independent copy, for what-if checks (preemption).
func (u *nodeUsage) clone() *nodeUsage {
	c := *u
	c.shared = false
	c.allocs = append([]*api.Allocation(nil), u.allocs...)
	c.gpus = append([]heldDevice(nil), u.gpus...)
	c.ports = make(map[portKey]string, len(u.ports))
	for k, v := range u.ports {
		c.ports[k] = v
	}
	return &c
}

// freeGPUs counts healthy schedulable devices nobody holds, and all
// healthy schedulable devices.
func (u *nodeUsage) freeGPUs() (free, total int) {
	for _, d := range u.devs {
		if !d.Healthy {
			continue
		}
		total++
		if u.holder(d.UUID) == "" {
			free++
		}
	}
	return free, total
}

// groupAsk is what one copy of a group needs from a node.
type groupAsk struct {
	cpu, mem, pids int
	gpus           []*gpuAsk
	ports          []api.Port
	gpuCount       int
}

type gpuAsk struct {
	req    *api.GPURequest
	model  *regexp.Regexp  // nil: exact match only
	models map[string]bool // model name → matches, so each name is matched once
}

// matchModel reports whether a device model satisfies the request: equal
// to it, or matched by it as a regexp.
func (ga *gpuAsk) matchModel(m string) bool {
	if ga.req.Model == "" || m == ga.req.Model {
		return true
	}
	if ga.model == nil {
		return false
	}
	ok, seen := ga.models[m]
	if !seen {
		if ga.models == nil {
			ga.models = map[string]bool{}
		}
		ok = ga.model.MatchString(m)
		ga.models[m] = ok
	}
	return ok
}

func newGroupAsk(g *api.Group) *groupAsk {
	ask := &groupAsk{}
	for _, t := range g.Tasks {
		if t == nil {
			continue
		}
		ask.cpu += t.Resources.CPU
		ask.mem += t.Resources.MemoryMB
		ask.pids += t.Resources.PidsLimit
		if r := t.Resources.GPUs; r != nil && r.Count > 0 {
			ga := &gpuAsk{req: r}
			if r.Model != "" {
				ga.model, _ = regexp.Compile(r.Model) // ValidateJob refused a bad one
			}
			ask.gpus = append(ask.gpus, ga)
			ask.gpuCount += r.Count
		}
		ask.ports = append(ask.ports, t.Ports...)
	}
	return ask
}

// resources is the Allocation.Resources of a copy: the sum over its tasks.
// GPUs carries the total count, with the other fields of the first task
// that asks for GPUs.
func (a *groupAsk) resources() api.Resources {
	r := api.Resources{CPU: a.cpu, MemoryMB: a.mem, PidsLimit: a.pids}
	if len(a.gpus) > 0 {
		g := *a.gpus[0].req
		g.Count = a.gpuCount
		r.GPUs = &g
	}
	return r
}

// neverFits returns the reason a node could not host the copy even if it
// were empty, or "". It reads only the node, not its allocations.
func (a *groupAsk) neverFits(n *api.Node) string {
	r := n.Resources
	switch {
	case a.cpu > r.CPU:
		return "cpu exhausted"
	case a.mem > r.MemoryMB:
		return "memory exhausted"
	case a.gpuCount > 0 && len(r.GPUs) == 0:
		return "gpu: node has no GPUs"
	}
	return ""
}

// fitResult is a successful fit of one copy on one node.
type fitResult struct {
	gpus  []string
	ports []api.AllocPort
}

// check reports whether one copy fits the node's free capacity, with the
// same reasons as fit, without picking devices or ports: the ranking runs
// it on many nodes, and fit runs only on the chosen one.
func (u *nodeUsage) check(ask *groupAsk) string {
	r := u.node.Resources
	if u.cpu+ask.cpu > r.CPU {
		return "cpu exhausted"
	}
	if u.mem+ask.mem > r.MemoryMB {
		return "memory exhausted"
	}
	dynamic := 0
	for i, p := range ask.ports {
		if p.Static == 0 {
			dynamic++
			continue
		}
		k := portKey{p.Static, protocolOf(p.Protocol)}
		if _, used := u.ports[k]; used {
			return "port " + k.String() + " in use"
		}
		for _, q := range ask.ports[:i] {
			if q.Static == p.Static && protocolOf(q.Protocol) == k.proto {
				return "port " + k.String() + " in use"
			}
		}
	}
	if dynamic > 0 && len(u.ports)+len(ask.ports) > MaxDynamicPort-MinDynamicPort {
		// Rare enough to settle exactly with fit.
		if _, reason := u.assignPorts(ask.ports); reason != "" {
			return reason
		}
	}
	switch {
	case len(ask.gpus) == 1 && ask.gpus[0].req.Topology != "nvlink":
		return u.countGPUs(ask.gpus[0])
	case len(ask.gpus) > 0:
		_, reason := u.fit(ask)
		return reason
	}
	return ""
}

// fit checks one copy against the node's free capacity and picks its GPUs
// and host ports. On failure it returns a short reason meant to be counted
// across nodes ("memory exhausted").
func (u *nodeUsage) fit(ask *groupAsk) (*fitResult, string) {
	r := u.node.Resources
	if u.cpu+ask.cpu > r.CPU {
		return nil, "cpu exhausted"
	}
	if u.mem+ask.mem > r.MemoryMB {
		return nil, "memory exhausted"
	}
	res := &fitResult{}
	if len(ask.ports) > 0 {
		ports, reason := u.assignPorts(ask.ports)
		if reason != "" {
			return nil, reason
		}
		res.ports = ports
	}
	if len(ask.gpus) > 0 {
		var taken map[string]bool // devices given to earlier tasks of this copy
		for i, ga := range ask.gpus {
			if i > 0 && taken == nil {
				taken = map[string]bool{}
				for _, id := range res.gpus {
					taken[id] = true
				}
			}
			ids, reason := u.assignGPUs(ga, taken)
			if reason != "" {
				return nil, reason
			}
			for _, id := range ids {
				if taken != nil {
					taken[id] = true
				}
			}
			res.gpus = append(res.gpus, ids...)
		}
	}
	return res, ""
}

func (u *nodeUsage) assignPorts(ports []api.Port) ([]api.AllocPort, string) {
	out := make([]api.AllocPort, 0, len(ports))
	mine := map[portKey]bool{}
	for _, p := range ports {
		if p.Static == 0 {
			continue
		}
		k := portKey{p.Static, protocolOf(p.Protocol)}
		if _, used := u.ports[k]; used || mine[k] {
			return nil, "port " + k.String() + " in use"
		}
		mine[k] = true
	}
	for _, p := range ports {
		proto := protocolOf(p.Protocol)
		host := p.Static
		if host == 0 {
			for cand := MinDynamicPort; cand <= MaxDynamicPort; cand++ {
				k := portKey{cand, proto}
				if _, used := u.ports[k]; !used && !mine[k] {
					host = cand
					break
				}
			}
			if host == 0 {
				return nil, "dynamic ports exhausted"
			}
			mine[portKey{host, proto}] = true
		}
		out = append(out, api.AllocPort{Label: p.Name, HostIP: p.HostIP, Value: host, To: p.To, Protocol: proto})
	}
	return out, ""
}

// countGPUs is assignGPUs without the picking: enough matching free
// devices or the reason there are not.
func (u *nodeUsage) countGPUs(ga *gpuAsk) string {
	_, reason := u.scanGPUs(ga, nil, false)
	return reason
}

// scanGPUs walks the node's devices for one request and returns the free
// matching ones (when collect is set) or the reason there are too few.
func (u *nodeUsage) scanGPUs(ga *gpuAsk, taken map[string]bool, collect bool) ([]*api.GPUDevice, string) {
	req := ga.req
	if len(u.devs) == 0 {
		return nil, "gpu: node has no GPUs"
	}
	var kindOK, modelOK, memOK, nfree int
	var free []*api.GPUDevice
	for _, d := range u.devs {
		if req.MIGProfile != "" {
			if d.MIGProfile != req.MIGProfile || d.ParentUUID == "" {
				continue
			}
		} else if d.ParentUUID != "" {
			continue
		}
		kindOK++
		if !ga.matchModel(d.Model) {
			continue
		}
		modelOK++
		if d.MemoryMiB < req.MinMemoryMiB {
			continue
		}
		memOK++
		if !d.Healthy || taken[d.UUID] || u.holder(d.UUID) != "" {
			continue
		}
		nfree++
		if collect {
			free = append(free, d)
		}
	}
	switch {
	case kindOK == 0 && req.MIGProfile != "":
		return nil, fmt.Sprintf("gpu: no MIG instance with profile %q", req.MIGProfile)
	case kindOK == 0:
		return nil, "gpu: node has no whole GPUs (only MIG instances)"
	case modelOK == 0:
		return nil, fmt.Sprintf("gpu: no device matches model %q", req.Model)
	case memOK == 0:
		return nil, fmt.Sprintf("gpu: no device has min_memory_mib %d", req.MinMemoryMiB)
	case memOK < req.Count:
		return nil, fmt.Sprintf("gpu: node has fewer than %d matching devices", req.Count)
	case nfree < req.Count:
		return nil, "gpu: not enough free healthy devices"
	}
	return free, ""
}

// assignGPUs picks devices for one request. With topology nvlink the set
// must be pairwise NVLink peers; otherwise it prefers a set on one NUMA
// node, the NUMA node with the fewest free devices that still fits (best
// fit inside the node too), and the lowest indexes.
func (u *nodeUsage) assignGPUs(ga *gpuAsk, taken map[string]bool) ([]string, string) {
	req := ga.req
	if len(u.devs) == 0 {
		return nil, "gpu: node has no GPUs"
	}
	free, reason := u.scanGPUs(ga, taken, true)
	if reason != "" {
		return nil, reason
	}
	var chosen []*api.GPUDevice
	if req.Topology == "nvlink" {
		chosen = nvlinkClique(free, req.Count)
		if chosen == nil {
			return nil, fmt.Sprintf("gpu: no %d free devices that are all NVLink peers", req.Count)
		}
	} else {
		chosen = numaPick(free, req.Count)
	}
	ids := make([]string, len(chosen))
	for i, d := range chosen {
		ids[i] = d.UUID
	}
	return ids, ""
}

func numaPick(free []*api.GPUDevice, count int) []*api.GPUDevice {
	// Free devices per NUMA node; machines have a handful of NUMA nodes.
	type group struct{ numa, n int }
	var groups []group
	for _, d := range free {
		found := false
		for i := range groups {
			if groups[i].numa == d.NUMANode {
				groups[i].n++
				found = true
				break
			}
		}
		if !found {
			groups = append(groups, group{d.NUMANode, 1})
		}
	}
	best := -1
	for i, g := range groups {
		if g.n < count {
			continue
		}
		if best < 0 || g.n < groups[best].n || (g.n == groups[best].n && g.numa < groups[best].numa) {
			best = i
		}
	}
	if best < 0 {
		return free[:count]
	}
	out := make([]*api.GPUDevice, 0, count)
	for _, d := range free {
		if d.NUMANode == groups[best].numa {
			out = append(out, d)
			if len(out) == count {
				break
			}
		}
	}
	return out
}

func nvlinked(a, b *api.GPUDevice) bool {
	for _, p := range a.NVLinkPeers {
		if p == b.UUID {
			return true
		}
	}
	for _, p := range b.NVLinkPeers {
		if p == a.UUID {
			return true
		}
	}
	return false
}

// nvlinkClique finds count devices that are pairwise NVLink peers, the
// first such set in index order. count is small (≤ 8 on real machines),
// so backtracking is cheap.
func nvlinkClique(free []*api.GPUDevice, count int) []*api.GPUDevice {
	if count == 1 {
		return free[:1]
	}
	set := make([]*api.GPUDevice, 0, count)
	var grow func(start int) bool
	grow = func(start int) bool {
		if len(set) == count {
			return true
		}
		for i := start; i <= len(free)-(count-len(set)); i++ {
			ok := true
			for _, s := range set {
				if !nvlinked(s, free[i]) {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			set = append(set, free[i])
			if grow(i + 1) {
				return true
			}
			set = set[:len(set)-1]
		}
		return false
	}
	if grow(0) {
		return set
	}
	return nil
}

// Fits re-verifies one node against a proposed set of allocations: the
// plan applier calls it on the newest state with the node's existing
// allocations, minus those the plan stops or preempts, plus those it
// places. Allocations that are stopped or finished (see live) are skipped,
// so the full set may be passed. It checks cpu and memory against the
// node's capacity, that every assigned GPU exists on the node and is held
// by one allocation only (a MIG instance and its parent GPU count as the
// same device), and that no host port is taken twice. The reason says
// what does not fit and which allocations collide.
func Fits(node *api.Node, allocs []*api.Allocation) (ok bool, reason string) {
	if node == nil {
		return false, "node does not exist"
	}
	u := newNodeUsage(node)
	devByID := make(map[string]*api.GPUDevice, len(node.Resources.GPUs))
	for i := range node.Resources.GPUs {
		devByID[node.Resources.GPUs[i].UUID] = &node.Resources.GPUs[i]
	}
	for _, a := range allocs {
		if a == nil || !live(a) {
			continue
		}
		for _, g := range a.GPUs {
			d, exists := devByID[g]
			if !exists {
				return false, fmt.Sprintf("gpu %s of alloc %s does not exist on node %s", g, a.ID, node.Name)
			}
			if other := u.holder(g); other != "" {
				return false, fmt.Sprintf("gpu %s is assigned to both alloc %s and alloc %s", g, other, a.ID)
			}
			if d.ParentUUID != "" {
				if other := u.holder(d.ParentUUID); other != "" {
					return false, fmt.Sprintf("gpu %s (MIG instance of %s) of alloc %s overlaps alloc %s, which holds the whole GPU", g, d.ParentUUID, a.ID, other)
				}
			}
			if u.parents[g] {
				for _, h := range u.gpus {
					if cd := devByID[h.uuid]; cd != nil && cd.ParentUUID == g {
						return false, fmt.Sprintf("gpu %s of alloc %s is split into MIG instances and %s is held by alloc %s", g, a.ID, h.uuid, h.alloc)
					}
				}
			}
		}
		for _, p := range a.Ports {
			k := portKey{p.Value, protocolOf(p.Protocol)}
			if other, held := u.ports[k]; held {
				return false, fmt.Sprintf("host port %s is assigned to both alloc %s and alloc %s", k, other, a.ID)
			}
		}
		u.add(a)
	}
	r := node.Resources
	if u.cpu > r.CPU {
		return false, fmt.Sprintf("cpu exhausted: %d of %d millicores asked", u.cpu, r.CPU)
	}
	if u.mem > r.MemoryMB {
		return false, fmt.Sprintf("memory exhausted: %d of %d MiB asked", u.mem, r.MemoryMB)
	}
	return true, ""
}
