package placement

import (
	"sort"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
)

// nodeIterator yields candidate nodes one at a time; Next returns nil when
// it is exhausted, Reset starts a new pass. Like every link of the chain,
// it is used by one goroutine, never blocks and does no I/O.
type nodeIterator interface {
	Next() *api.Node
	Reset()
}

// staticIterator walks a fixed node list once per pass, starting where
// the previous pass stopped (as Nomad's does), so that with a candidate
// limit consecutive placements look at different nodes. The first pass
// starts at offset, which Schedule derives from the evaluation ID: a
// deterministic stand-in for Nomad's random shuffle.
type staticIterator struct {
	nodes  []*api.Node
	offset int
	seen   int
}

var _ nodeIterator = (*staticIterator)(nil)

func newStaticIterator(nodes []*api.Node, offset int) *staticIterator {
	if len(nodes) > 0 {
		offset %= len(nodes)
	} else {
		offset = 0
	}
	return &staticIterator{nodes: nodes, offset: offset}
}

func (it *staticIterator) Next() *api.Node {
	if it.seen >= len(it.nodes) {
		return nil
	}
	n := it.nodes[it.offset]
	it.offset = (it.offset + 1) % len(it.nodes)
	it.seen++
	return n
}

func (it *staticIterator) Reset() { it.seen = 0 }

// feasibilityChecker decides whether a node can host a copy regardless of
// its free resources. It returns "" when it can, else a short reason that
// FailedGroups counts across nodes.
type feasibilityChecker interface {
	check(n *api.Node) string
}

// feasibilityIterator passes on the nodes every checker accepts and
// counts the others by reason.
type feasibilityIterator struct {
	source  nodeIterator
	checks  []feasibilityChecker
	metrics *placementMetrics
}

var _ nodeIterator = (*feasibilityIterator)(nil)

func (it *feasibilityIterator) Next() *api.Node {
	for {
		n := it.source.Next()
		if n == nil {
			return nil
		}
		it.metrics.evaluate()
		ok := true
		for _, c := range it.checks {
			if reason := c.check(n); reason != "" {
				it.metrics.filter(reason)
				ok = false
				break
			}
		}
		if ok {
			return n
		}
	}
}

func (it *feasibilityIterator) Reset() { it.source.Reset() }

// readyChecker keeps nodes that are ready, eligible and not draining.
type readyChecker struct{}

func (readyChecker) check(n *api.Node) string {
	switch {
	case n.Status != api.NodeStatusReady:
		return "node " + orUnknown(n.Status)
	case n.Eligibility == api.NodeIneligible:
		return "node ineligible"
	case n.Drain:
		return "node draining"
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "status unknown"
	}
	return s
}

// datacenterChecker keeps nodes in one of the job's datacenters. An empty
// list or "*" allows every datacenter.
type datacenterChecker struct {
	dcs    map[string]bool
	reason string
}

func newDatacenterChecker(dcs []string) *datacenterChecker {
	c := &datacenterChecker{}
	for _, d := range dcs {
		if d == "*" {
			return &datacenterChecker{}
		}
		if c.dcs == nil {
			c.dcs = map[string]bool{}
		}
		c.dcs[d] = true
	}
	sorted := append([]string(nil), dcs...)
	sort.Strings(sorted)
	c.reason = "datacenter not in [" + strings.Join(sorted, ", ") + "]"
	return c
}

func (c *datacenterChecker) check(n *api.Node) string {
	if c.dcs == nil || c.dcs[nodeDatacenter(n)] {
		return ""
	}
	return c.reason
}

// constraintChecker keeps nodes that meet every attribute constraint.
type constraintChecker struct {
	matchers []*matcher
	reasons  []string // built once: the checker runs on thousands of nodes
}

func (c *constraintChecker) check(n *api.Node) string {
	if len(c.reasons) != len(c.matchers) {
		c.reasons = make([]string, len(c.matchers))
		for i, m := range c.matchers {
			c.reasons[i] = "constraint " + m.String() + " not met"
		}
	}
	for i, m := range c.matchers {
		if !m.match(n) {
			return c.reasons[i]
		}
	}
	return ""
}

// distinctHostsChecker keeps nodes that hold no live copy of the job (or
// of the group, for a group-level constraint), counting this plan's
// placements and stops.
type distinctHostsChecker struct {
	count func(nodeID string) int
	scope string // "job" or "group"
}

func (c *distinctHostsChecker) check(n *api.Node) string {
	if c.count(n.ID) > 0 {
		return "distinct_hosts: node already runs a copy of the " + c.scope
	}
	return ""
}

// placementMetrics counts, for one placement attempt, how many nodes were
// looked at and why each one was ruled out.
type placementMetrics struct {
	evaluated int
	reasons   map[string]int
}

func newMetrics() *placementMetrics { return &placementMetrics{reasons: map[string]int{}} }

func (m *placementMetrics) evaluate() {
	if m != nil {
		m.evaluated++
	}
}

func (m *placementMetrics) filter(reason string) {
	if m != nil {
		m.reasons[reason]++
	}
}

func (m *placementMetrics) reset() {
	if m != nil {
		m.evaluated = 0
		clear(m.reasons)
	}
}

// merge adds o's counts to m (system jobs aggregate over nodes).
func (m *placementMetrics) merge(o *placementMetrics) {
	m.evaluated += o.evaluated
	for r, n := range o.reasons {
		m.reasons[r] += n
	}
}

// String renders "2 nodes: memory exhausted; 1 node: constraint ... not
// met", most common reason first.
func (m *placementMetrics) String() string {
	if m == nil || m.evaluated == 0 {
		return "no nodes are registered"
	}
	if len(m.reasons) == 0 {
		return strconv.Itoa(m.evaluated) + " nodes evaluated, none fit"
	}
	type rc struct {
		reason string
		n      int
	}
	var list []rc
	for r, n := range m.reasons {
		list = append(list, rc{r, n})
	}
	sort.Slice(list, func(i, j int) bool {
		if list[i].n != list[j].n {
			return list[i].n > list[j].n
		}
		return list[i].reason < list[j].reason
	})
	parts := make([]string, len(list))
	for i, x := range list {
		unit := "nodes"
		if x.n == 1 {
			unit = "node"
		}
		parts[i] = strconv.Itoa(x.n) + " " + unit + ": " + x.reason
	}
	return strings.Join(parts, "; ")
}
