package placement

import (
	"fmt"
	"hash/fnv"
	"sort"

	"github.com/berth-dev/berth/api"
)

// evalContext is the working state of one Schedule call: the sorted
// nodes, the node-usage index (built lazily, node by node, and kept up to
// date as the plan grows) and the job's copies per node.
type evalContext struct {
	st    State
	eval  *api.Evaluation
	job   *api.Job
	plan  *Plan
	opts  Options
	nodes []*api.Node // sorted by ID

	usage      map[string]*nodeUsage
	stopped    map[string]bool           // alloc IDs this plan stops or preempts
	jobNodes   map[string]int            // node ID → live copies of the job
	groupNodes map[string]map[string]int // group → node ID → live copies
	idSeq      int
	undo       []undoEntry
	source     *staticIterator
}

var _ usageSource = (*evalContext)(nil)

type undoEntry struct {
	place *api.Allocation // a placement to take back
	evict *api.Allocation // a preemption to take back (the original)
	stack *stack
}

func newEvalContext(st State, eval *api.Evaluation, job *api.Job, plan *Plan, opts Options) *evalContext {
	c := &evalContext{
		st: st, eval: eval, job: job, plan: plan, opts: opts,
		usage:      map[string]*nodeUsage{},
		stopped:    map[string]bool{},
		jobNodes:   map[string]int{},
		groupNodes: map[string]map[string]int{},
	}
	return c
}

// loadNodes reads and sorts the nodes; only schedulers that place need it.
func (c *evalContext) loadNodes() {
	c.nodes = sortedNodes(c.st.Nodes())
	c.source = newStaticIterator(c.nodes, int(hashString(c.eval.ID)%uint64(max(1, len(c.nodes)))))
}

func sortedNodes(nodes []*api.Node) []*api.Node {
	sorted := true
	for i := 1; i < len(nodes); i++ {
		if nodes[i-1].ID > nodes[i].ID {
			sorted = false
			break
		}
	}
	if sorted {
		return nodes
	}
	cp := append([]*api.Node(nil), nodes...)
	sort.Slice(cp, func(i, j int) bool { return cp[i].ID < cp[j].ID })
	return cp
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

func (c *evalContext) nodeByID(id string) *api.Node {
	i := sort.Search(len(c.nodes), func(i int) bool { return c.nodes[i].ID >= id })
	if i < len(c.nodes) && c.nodes[i].ID == id {
		return c.nodes[i]
	}
	return nil
}

func (c *evalContext) newID() string {
	if c.opts.NewID != nil {
		return c.opts.NewID()
	}
	c.idSeq++
	return fmt.Sprintf("%s-%d", c.eval.ID, c.idSeq)
}

// usageOf returns the node's usage: its live allocations in the state,
// minus those this plan stops, plus those it places.
func (c *evalContext) usageOf(n *api.Node) *nodeUsage {
	if u := c.usage[n.ID]; u != nil {
		return u
	}
	list := c.st.AllocsByNode(n.ID)
	var u *nodeUsage
	if c.opts.Cache != nil && len(c.stopped) == 0 {
		// Shared with the cache (read-only) until this plan changes the
		// node: see mutableUsage.
		u = c.opts.Cache.get(n, list)
	} else {
		u = newNodeUsage(n)
		u.allocs = make([]*api.Allocation, 0, len(list)+1)
		for _, a := range list {
			if live(a) && !c.stopped[a.ID] {
				u.add(a)
			}
		}
	}
	c.usage[n.ID] = u
	if len(c.plan.NodeAllocation[n.ID]) > 0 {
		u = c.mutableUsage(n.ID)
		for _, a := range c.plan.NodeAllocation[n.ID] {
			u.add(a)
		}
	}
	return u
}

// mutableUsage returns the node's usage ready to change (nil if it was
// never built): a usage shared with the cache is replaced by this plan's
// own copy first. Every change to a usage goes through here.
func (c *evalContext) mutableUsage(nodeID string) *nodeUsage {
	u := c.usage[nodeID]
	if u == nil || !u.shared {
		return u
	}
	cp := *u
	cp.own()
	c.usage[nodeID] = &cp
	return &cp
}

// countJobAllocs records the job's live copies per node.
func (c *evalContext) countJobAllocs(allocs []*api.Allocation) {
	for _, a := range allocs {
		if live(a) {
			c.count(a, 1)
		}
	}
}

func (c *evalContext) count(a *api.Allocation, delta int) {
	c.jobNodes[a.NodeID] += delta
	g := c.groupNodes[a.Group]
	if g == nil {
		g = map[string]int{}
		c.groupNodes[a.Group] = g
	}
	g[a.NodeID] += delta
}

// stop adds a stop of a to the plan and frees what it held.
func (c *evalContext) stop(a *api.Allocation, desc, clientStatus string) {
	cp := *a
	cp.DesiredStatus = api.AllocDesiredStop
	cp.DesiredDescription = desc
	if clientStatus != "" {
		cp.ClientStatus = clientStatus
	}
	c.plan.NodeUpdate[a.NodeID] = append(c.plan.NodeUpdate[a.NodeID], &cp)
	wasLive := live(a) && !c.stopped[a.ID]
	c.stopped[a.ID] = true
	if u := c.mutableUsage(a.NodeID); u != nil {
		u.remove(a)
	}
	if wasLive && a.JobID == c.planJobID() {
		c.count(a, -1)
	}
}

func (c *evalContext) planJobID() string {
	if c.job != nil {
		return c.job.ID
	}
	return c.eval.JobID
}

// evict adds a preemption of a (another job's allocation) to the plan.
func (c *evalContext) evict(a *api.Allocation, by *api.Allocation) {
	cp := *a
	cp.DesiredStatus = api.AllocDesiredEvict
	cp.DesiredDescription = fmt.Sprintf("preempted by alloc %s of job %s (priority %d)", by.ID, c.job.ID, jobPriority(c.job))
	c.plan.NodePreemptions[a.NodeID] = append(c.plan.NodePreemptions[a.NodeID], &cp)
	c.stopped[a.ID] = true
	c.usageOf(c.nodeByID(a.NodeID))
	c.mutableUsage(a.NodeID).remove(a)
	c.undo = append(c.undo, undoEntry{evict: a})
}

// place adds a new allocation to the plan and takes its resources.
func (c *evalContext) place(a *api.Allocation, s *stack) {
	c.plan.NodeAllocation[a.NodeID] = append(c.plan.NodeAllocation[a.NodeID], a)
	if u := c.mutableUsage(a.NodeID); u != nil {
		u.add(a)
	}
	c.count(a, 1)
	if s != nil && s.spread != nil {
		s.spread.placed(c.nodeByID(a.NodeID), 1)
	}
	c.undo = append(c.undo, undoEntry{place: a, stack: s})
}

// rollback takes back every placement and preemption made since mark.
func (c *evalContext) rollback(mark int) {
	for i := len(c.undo) - 1; i >= mark; i-- {
		e := c.undo[i]
		switch {
		case e.place != nil:
			a := e.place
			c.plan.NodeAllocation[a.NodeID] = removeAlloc(c.plan.NodeAllocation[a.NodeID], a.ID)
			if u := c.mutableUsage(a.NodeID); u != nil {
				u.remove(a)
			}
			c.count(a, -1)
			if e.stack != nil && e.stack.spread != nil {
				e.stack.spread.placed(c.nodeByID(a.NodeID), -1)
			}
		case e.evict != nil:
			a := e.evict
			c.plan.NodePreemptions[a.NodeID] = removeAlloc(c.plan.NodePreemptions[a.NodeID], a.ID)
			delete(c.stopped, a.ID)
			c.usageOf(c.nodeByID(a.NodeID))
			c.mutableUsage(a.NodeID).add(a)
		}
	}
	c.undo = c.undo[:mark]
}

func removeAlloc(list []*api.Allocation, id string) []*api.Allocation {
	for i, a := range list {
		if a.ID == id {
			return append(list[:i:i], list[i+1:]...)
		}
	}
	return list
}

// tidy drops empty per-node entries the rollbacks left behind.
func (c *evalContext) tidy() {
	for _, m := range []map[string][]*api.Allocation{c.plan.NodeAllocation, c.plan.NodeUpdate, c.plan.NodePreemptions} {
		for k, v := range m {
			if len(v) == 0 {
				delete(m, k)
			}
		}
	}
}

func jobPriority(j *api.Job) int {
	if j == nil || j.Priority == 0 {
		return DefaultPriority
	}
	return j.Priority
}
