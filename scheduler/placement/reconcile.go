package placement

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/berth-dev/berth/api"
)

// How many times a failed copy is placed again elsewhere, counting the
// failures along its PreviousAllocation chain. Placement has no clock, so
// these caps stand in for Nomad's reschedule delays: a copy that keeps
// failing stops being replaced instead of looping. Lost copies (node down)
// do not count.
const (
	serviceRescheduleLimit = 10
	batchRescheduleLimit   = 1
)

// placeReq is one copy to place.
type placeReq struct {
	group    *api.Group
	index    int
	previous *api.Allocation // the copy this one replaces, if any
	avoid    string          // node to steer away from (failed there)
	node     *api.Node       // system jobs: the node it must run on
}

type specKey struct {
	version, modify uint64
	group           string
}

// reconciler compares the job's allocations with the job and the nodes.
// It adds stops to the plan at once (so their resources are free for the
// placements) and returns the copies to place.
type reconciler struct {
	ctx       *evalContext
	job       *api.Job
	byID      map[string]*api.Allocation
	specCache map[specKey]bool
}

func newReconciler(c *evalContext, allocs []*api.Allocation) *reconciler {
	r := &reconciler{ctx: c, job: c.job, byID: make(map[string]*api.Allocation, len(allocs)), specCache: map[specKey]bool{}}
	for _, a := range allocs {
		r.byID[a.ID] = a
	}
	return r
}

// tasksChanged reports whether the allocation runs a different task spec
// than the job's group: such a copy is replaced (stop old, place new with
// the same name). Count, constraint or restart changes are not.
func (r *reconciler) tasksChanged(a *api.Allocation, g *api.Group) bool {
	old := a.Job
	if old == nil || old == r.job {
		return false
	}
	if old.Version == r.job.Version && old.JobModifyIndex == r.job.JobModifyIndex {
		return false
	}
	k := specKey{old.Version, old.JobModifyIndex, g.Name}
	if v, ok := r.specCache[k]; ok {
		return v
	}
	changed := true
	for _, og := range old.Groups {
		if og != nil && og.Name == g.Name {
			changed = !reflect.DeepEqual(og.Tasks, g.Tasks)
			break
		}
	}
	r.specCache[k] = changed
	return changed
}

func failedRun(a *api.Allocation, jobType string) bool {
	return a.ClientStatus == api.AllocClientFailed || (a.ClientStatus == api.AllocClientComplete && jobType != api.JobTypeBatch)
}

// failures counts failed runs along a's PreviousAllocation chain, a included.
func (r *reconciler) failures(a *api.Allocation) int {
	n := 0
	seen := map[string]bool{}
	for a != nil && !seen[a.ID] {
		seen[a.ID] = true
		if failedRun(a, r.job.Type) {
			n++
		}
		a = r.byID[a.PreviousAllocation]
	}
	return n
}

// rescheduleLimit is how many failed copies in a row a group's copy may
// have and still be placed again: the group's reschedule policy, else the
// job type's default.
func (r *reconciler) rescheduleLimit(g *api.Group) int {
	if g != nil && g.Reschedule != nil {
		return g.Reschedule.Attempts
	}
	if r.job.Type == api.JobTypeBatch {
		return batchRescheduleLimit
	}
	return serviceRescheduleLimit
}

// oldestFirst orders copies by creation, then ID.
func oldestFirst(as []*api.Allocation) {
	sort.Slice(as, func(i, j int) bool {
		if as[i].CreateIndex != as[j].CreateIndex {
			return as[i].CreateIndex < as[j].CreateIndex
		}
		return as[i].ID < as[j].ID
	})
}

// generic reconciles service and batch jobs by copy index.
func (r *reconciler) generic(allocs []*api.Allocation) []placeReq {
	c := r.ctx
	job := r.job
	batch := job.Type == api.JobTypeBatch
	groups := map[string]*api.Group{}
	for _, g := range job.Groups {
		if g != nil {
			groups[g.Name] = g
		}
	}
	byGroup := map[string][]*api.Allocation{}
	for _, a := range allocs {
		if groups[a.Group] == nil {
			if live(a) {
				c.stop(a, "group removed from job", "")
			}
			continue
		}
		byGroup[a.Group] = append(byGroup[a.Group], a)
	}
	var out []placeReq
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		byIndex := map[int][]*api.Allocation{}
		var indexes []int
		for _, a := range byGroup[g.Name] {
			if _, ok := byIndex[a.Index]; !ok {
				indexes = append(indexes, a.Index)
			}
			byIndex[a.Index] = append(byIndex[a.Index], a)
		}
		sort.Ints(indexes)
		for idx := 0; idx < g.Count; idx++ {
			if _, ok := byIndex[idx]; !ok {
				out = append(out, placeReq{group: g, index: idx})
			}
		}
		for _, idx := range indexes {
			as := byIndex[idx]
			var lives []*api.Allocation
			for _, a := range as {
				if live(a) {
					lives = append(lives, a)
				}
			}
			oldestFirst(lives)
			if idx < 0 || idx >= g.Count {
				for _, a := range lives {
					c.stop(a, fmt.Sprintf("count lowered to %d", g.Count), "")
				}
				continue
			}
			for _, a := range lives[min(1, len(lives)):] {
				c.stop(a, "duplicate copy "+a.Name, "")
			}
			if len(lives) > 0 {
				if p, ok := r.reconcileLive(lives[0], g); ok {
					out = append(out, p)
				}
				continue
			}
			// No live copy of this index.
			done := false
			var latest *api.Allocation
			for _, a := range as {
				if a.DesiredStatus != api.AllocDesiredRun && a.DesiredStatus != "" {
					continue
				}
				if batch && a.ClientStatus == api.AllocClientComplete {
					done = true
				}
				if latest == nil || a.CreateIndex > latest.CreateIndex || (a.CreateIndex == latest.CreateIndex && a.ID > latest.ID) {
					latest = a
				}
			}
			switch {
			case done:
				// A batch copy that finished successfully is never run again.
			case latest == nil:
				out = append(out, placeReq{group: g, index: idx})
			case failedRun(latest, job.Type):
				if r.failures(latest) <= r.rescheduleLimit(g) {
					out = append(out, placeReq{group: g, index: idx, previous: latest, avoid: latest.NodeID})
				}
			default: // lost
				out = append(out, placeReq{group: g, index: idx, previous: latest})
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		gi, gj := groupPos(job, out[i].group), groupPos(job, out[j].group)
		if gi != gj {
			return gi < gj
		}
		return out[i].index < out[j].index
	})
	return out
}

func groupPos(job *api.Job, g *api.Group) int {
	for i, x := range job.Groups {
		if x == g {
			return i
		}
	}
	return len(job.Groups)
}

// reconcileLive decides about the one live copy of an index: keep it, or
// stop it and return its replacement.
func (r *reconciler) reconcileLive(a *api.Allocation, g *api.Group) (placeReq, bool) {
	c := r.ctx
	n := c.nodeByID(a.NodeID)
	switch {
	case n == nil || n.Status == api.NodeStatusDown:
		c.stop(a, "node down: alloc lost", api.AllocClientLost)
		return placeReq{group: g, index: a.Index, previous: a}, true
	case n.Drain && r.job.Type != api.JobTypeBatch:
		c.stop(a, "node draining: alloc migrated", "")
		return placeReq{group: g, index: a.Index, previous: a}, true
	case r.tasksChanged(a, g):
		c.stop(a, fmt.Sprintf("task spec changed (job version %d)", r.job.Version), "")
		return placeReq{group: g, index: a.Index, previous: a}, true
	}
	return placeReq{}, false
}

// system reconciles a system job: one copy of each group on every ready,
// eligible node that meets the job's datacenters and constraints.
func (r *reconciler) system(allocs []*api.Allocation, stacks map[string]*stack) []placeReq {
	c := r.ctx
	job := r.job
	var out []placeReq
	byGroup := map[string][]*api.Allocation{}
	for _, a := range allocs {
		if stacks[a.Group] == nil {
			if live(a) {
				c.stop(a, "group removed from job", "")
			}
			continue
		}
		byGroup[a.Group] = append(byGroup[a.Group], a)
	}
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		s := stacks[g.Name]
		liveByNode := map[string][]*api.Allocation{}
		var latestByNode = map[string]*api.Allocation{}
		for _, a := range byGroup[g.Name] {
			if live(a) {
				liveByNode[a.NodeID] = append(liveByNode[a.NodeID], a)
				continue
			}
			if a.DesiredStatus != api.AllocDesiredRun && a.DesiredStatus != "" {
				continue
			}
			if l := latestByNode[a.NodeID]; l == nil || a.CreateIndex > l.CreateIndex || (a.CreateIndex == l.CreateIndex && a.ID > l.ID) {
				latestByNode[a.NodeID] = a
			}
		}
		// Copies on nodes that are gone, down, draining or no longer match.
		var nodeIDs []string
		for id := range liveByNode {
			nodeIDs = append(nodeIDs, id)
		}
		sort.Strings(nodeIDs)
		kept := map[string]bool{}
		replacing := map[string]bool{}
		for _, id := range nodeIDs {
			lives := liveByNode[id]
			oldestFirst(lives)
			for _, a := range lives[1:] {
				c.stop(a, "duplicate copy "+a.Name, "")
			}
			a := lives[0]
			n := c.nodeByID(id)
			switch {
			case n == nil || n.Status == api.NodeStatusDown:
				c.stop(a, "node down: alloc lost", api.AllocClientLost)
			case n.Drain:
				c.stop(a, "node draining", "")
			case n.Status != api.NodeStatusReady || n.Eligibility == api.NodeIneligible:
				kept[id] = true // left alone until the node is usable again
			case !s.staticFeasible(n):
				c.stop(a, "node no longer meets the job's datacenters or constraints", "")
			case r.tasksChanged(a, g):
				c.stop(a, fmt.Sprintf("task spec changed (job version %d)", job.Version), "")
				out = append(out, placeReq{group: g, previous: a, node: n})
				replacing[id] = true
			default:
				kept[id] = true
			}
		}
		for _, n := range c.nodes {
			if kept[n.ID] || !s.staticFeasible(n) {
				continue
			}
			if replacing[n.ID] {
				continue
			}
			p := placeReq{group: g, node: n}
			if l := latestByNode[n.ID]; l != nil {
				if failedRun(l, job.Type) && r.failures(l) > r.rescheduleLimit(g) {
					continue
				}
				p.previous = l
			}
			out = append(out, p)
		}
	}
	return out
}
