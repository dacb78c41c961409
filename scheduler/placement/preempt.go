package placement

import (
	"sort"

	"github.com/berth-dev/berth/api"
)

// PreemptionPriorityGap is how much lower a job's priority must be for its
// allocations to be evicted for another job.
const PreemptionPriorityGap = 10

// preemptFor runs when no node fits a copy and preemption is enabled. On
// every feasible node it looks for the smallest set of allocations of
// jobs at least PreemptionPriorityGap below this job whose eviction makes
// the copy fit, and picks the node needing the fewest evictions (then the
// lowest evicted priorities, then the lowest node ID).
func (c *evalContext) preemptFor(s *stack) *rankedNode {
	prio := jobPriority(c.job)
	if prio-PreemptionPriorityGap < 1 {
		return nil
	}
	saved := s.feasible.metrics
	s.feasible.metrics = nil
	defer func() { s.feasible.metrics = saved }()

	var best *rankedNode
	bestPrio := 0
	s.feasible.Reset()
	for n := s.feasible.Next(); n != nil; n = s.feasible.Next() {
		u := c.usageOf(n)
		var cands []*api.Allocation
		for _, a := range u.allocs {
			if a.JobID != c.job.ID && a.Job != nil && jobPriority(a.Job) <= prio-PreemptionPriorityGap {
				cands = append(cands, a)
			}
		}
		if len(cands) == 0 {
			continue
		}
		set, fit := preemptSet(u, s.ask, cands)
		if set == nil {
			continue
		}
		sum := 0
		for _, a := range set {
			sum += jobPriority(a.Job)
		}
		if best == nil || len(set) < len(best.preempt) ||
			(len(set) == len(best.preempt) && (sum < bestPrio || (sum == bestPrio && n.ID < best.node.ID))) {
			best = &rankedNode{node: n, usage: u, fit: fit, preempt: set}
			bestPrio = sum
		}
	}
	return best
}

// preemptSet finds a small set of candidates whose removal lets ask fit
// on the node: a single eviction if one is enough (exact), otherwise a
// greedy pass from the lowest priority and largest size, pruned of any
// eviction that turns out not to be needed.
func preemptSet(u *nodeUsage, ask *groupAsk, cands []*api.Allocation) ([]*api.Allocation, *fitResult) {
	size := func(a *api.Allocation) float64 {
		r := u.node.Resources
		s := 0.0
		if r.CPU > 0 {
			s += float64(a.Resources.CPU) / float64(r.CPU)
		}
		if r.MemoryMB > 0 {
			s += float64(a.Resources.MemoryMB) / float64(r.MemoryMB)
		}
		if n := len(u.devs); n > 0 {
			s += float64(len(a.GPUs)) / float64(n)
		}
		return s
	}
	cands = append([]*api.Allocation(nil), cands...)
	sort.SliceStable(cands, func(i, j int) bool {
		pi, pj := jobPriority(cands[i].Job), jobPriority(cands[j].Job)
		if pi != pj {
			return pi < pj
		}
		si, sj := size(cands[i]), size(cands[j])
		if si != sj {
			return si > sj
		}
		return cands[i].ID < cands[j].ID
	})
	trial := func(set []*api.Allocation) *fitResult {
		cl := u.clone()
		for _, a := range set {
			cl.remove(a)
		}
		fit, _ := cl.fit(ask)
		return fit
	}
	if trial(cands) == nil {
		return nil, nil
	}
	for _, a := range cands {
		if f := trial([]*api.Allocation{a}); f != nil {
			return []*api.Allocation{a}, f
		}
	}
	var set []*api.Allocation
	for _, a := range cands {
		set = append(set, a)
		if trial(set) != nil {
			break
		}
	}
	for i := len(set) - 1; i >= 0; i-- {
		without := append(append([]*api.Allocation(nil), set[:i]...), set[i+1:]...)
		if trial(without) != nil {
			set = without
		}
	}
	return set, trial(set)
}
