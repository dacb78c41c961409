package placement

import (
	"math"

	"github.com/berth-dev/berth/api"
)

// stack is the iterator chain for one group (see README.md):
//
//	source → feasibility (ready, datacenter, constraints, distinct_hosts)
//	       → binpack/spread fit → job anti-affinity → affinity → spread
//	       → GPU best fit → normalize → limit → max score
type stack struct {
	ctx     *evalContext
	group   *api.Group
	ask     *groupAsk
	metrics *placementMetrics

	static   []feasibilityChecker // node-only checks, reused by the system scheduler
	dynamic  []feasibilityChecker // checks that depend on the plan (distinct_hosts)
	base     *placementMetrics    // reasons the prefilter ruled nodes out, or nil
	all      bool                 // no candidate limit
	feasible *feasibilityIterator
	binpack  *binPackIterator
	anti     *jobAntiAffinityIterator
	spread   *spreadIterator
	limit    *limitIterator
}

// candidateLimit is how many fitting nodes a placement compares: Nomad's
// max(2, ceil(log2 N)) for plain jobs, and all of them when the group
// asks for GPUs (best fit needs to see every GPU node), has affinities or
// spreads, or the first-fit baseline is on.
func candidateLimit(n int, all bool) int {
	if all {
		return math.MaxInt
	}
	return max(2, int(math.Ceil(math.Log2(float64(max(n, 1))))))
}

func newStack(c *evalContext, g *api.Group, source nodeIterator) *stack {
	job := c.job
	s := &stack{ctx: c, group: g, ask: newGroupAsk(g), metrics: newMetrics()}

	s.static = []feasibilityChecker{readyChecker{}, newDatacenterChecker(job.Datacenters)}
	cc := &constraintChecker{}
	var checks []feasibilityChecker
	addConstraints := func(cs []api.Constraint, scope string) {
		for _, con := range cs {
			if con.Operator == api.OpDistinctHosts {
				if scope == "job" {
					checks = append(checks, &distinctHostsChecker{scope: "job", count: func(id string) int { return c.jobNodes[id] }})
				} else {
					checks = append(checks, &distinctHostsChecker{scope: "group", count: func(id string) int { return c.groupNodes[g.Name][id] }})
				}
				continue
			}
			m, err := newMatcher(con.Attribute, con.Operator, con.Value)
			if err != nil {
				s.static = append(s.static, rejectAll("constraint "+con.Attribute+" "+con.Operator+" "+con.Value+" is invalid: "+err.Error()))
				continue
			}
			cc.matchers = append(cc.matchers, m)
		}
	}
	addConstraints(job.Constraints, "job")
	addConstraints(g.Constraints, "group")
	if len(cc.matchers) > 0 {
		s.static = append(s.static, cc)
	}
	s.dynamic = checks
	s.feasible = &feasibilityIterator{source: source, checks: append(append([]feasibilityChecker(nil), s.static...), checks...), metrics: s.metrics}

	firstFit := c.opts.firstFit
	s.binpack = &binPackIterator{source: s.feasible, usage: c, ask: s.ask, spread: c.opts.Algorithm == AlgorithmSpread, noScore: firstFit, metrics: s.metrics}
	var top rankIterator = s.binpack
	affs := append(append([]api.Affinity(nil), job.Affinities...), g.Affinities...)
	spreads := append(append([]api.Spread(nil), job.Spreads...), g.Spreads...)
	if !firstFit {
		s.anti = &jobAntiAffinityIterator{source: top, desired: g.Count, count: func(id string) int { return c.groupNodes[g.Name][id] }}
		top = s.anti
		if len(affs) > 0 {
			ai := &affinityIterator{source: top}
			for _, a := range affs {
				if m, err := newMatcher(a.Attribute, a.Operator, a.Value); err == nil {
					w := a.Weight
					if w == 0 {
						w = 50
					}
					ai.affinities = append(ai.affinities, weightedMatcher{m: m, weight: w})
				}
			}
			top = ai
		}
		if len(spreads) > 0 {
			s.spread = s.newSpread(spreads, top)
			top = s.spread
		}
		top = &gpuFitIterator{source: top, count: s.ask.gpuCount}
	}
	top = &normalizeIterator{source: top}
	all := firstFit || s.ask.gpuCount > 0 || len(affs) > 0 || len(spreads) > 0
	s.all = all
	s.limit = &limitIterator{source: top, limit: candidateLimit(len(c.nodes), all), threshold: 0, maxSkip: 3}
	return s
}

func (s *stack) newSpread(spreads []api.Spread, source rankIterator) *spreadIterator {
	c := s.ctx
	it := &spreadIterator{source: source}
	for _, sp := range spreads {
		w := sp.Weight
		if w == 0 {
			w = 50
		}
		t := &spreadTarget{attr: sp.Attribute, weight: w, counts: map[string]int{}}
		seen := map[string]bool{}
		for _, n := range c.nodes {
			if readyChecker.check(readyChecker{}, n) != "" {
				continue
			}
			if v, ok := resolveTarget(n, sp.Attribute); ok {
				seen[v] = true
			}
		}
		t.values = len(seen)
		for nodeID, cnt := range c.groupNodes[s.group.Name] {
			if n := c.nodeByID(nodeID); n != nil && cnt > 0 {
				if v, ok := resolveTarget(n, sp.Attribute); ok {
					t.counts[v] += cnt
				}
			}
		}
		it.targets = append(it.targets, t)
	}
	return it
}

// prefilter runs the node-only checks once for the whole group and points
// the chain at the nodes that pass, so that each placement of a group
// that looks at every node (GPU asks, affinities, spreads) walks only the
// candidates: on 5,000 nodes with 500 GPU nodes a GPU copy then fits 500
// nodes, not 5,000. The reasons are kept and added to each placement's.
func (s *stack) prefilter(offset int) {
	s.base = newMetrics()
	var cands []*api.Node
	for _, n := range s.ctx.nodes {
		reason := ""
		for _, c := range s.static {
			if reason = c.check(n); reason != "" {
				break
			}
		}
		if reason == "" {
			reason = s.ask.neverFits(n)
		}
		if reason != "" {
			s.base.evaluate()
			s.base.filter(reason)
			continue
		}
		cands = append(cands, n)
	}
	s.feasible.source = newStaticIterator(cands, offset)
	s.feasible.checks = s.dynamic
}

// rejectAll is a checker for a stored constraint that cannot be evaluated.
type rejectAll string

func (r rejectAll) check(*api.Node) string { return string(r) }

// setSource points the chain at other candidate nodes (the system
// scheduler walks one node at a time).
func (s *stack) setSource(src nodeIterator) { s.feasible.source = src }

// selectNode runs the chain once and returns the best node for one copy,
// or nil; s.metrics then says why nodes were ruled out. avoid is the node
// a failed copy is rescheduled away from ("" for none).
func (s *stack) selectNode(avoid string) *rankedNode {
	s.metrics.reset()
	if s.base != nil {
		s.metrics.merge(s.base)
	}
	if s.anti != nil {
		s.anti.avoid = nil
		if avoid != "" {
			s.anti.avoid = map[string]bool{avoid: true}
		}
	}
	s.limit.Reset()
	return maxScore(s.limit)
}

// staticFeasible reports whether a node passes the node-only checks
// (ready, datacenter, constraints), for the system scheduler.
func (s *stack) staticFeasible(n *api.Node) bool {
	for _, c := range s.static {
		if c.check(n) != "" {
			return false
		}
	}
	return true
}

// singleIterator yields one node once per pass.
type singleIterator struct {
	node *api.Node
	done bool
}

var _ nodeIterator = (*singleIterator)(nil)

func (it *singleIterator) Next() *api.Node {
	if it.done || it.node == nil {
		return nil
	}
	it.done = true
	return it.node
}

func (it *singleIterator) Reset() { it.done = false }
