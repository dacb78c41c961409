package placement

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// staticRank yields fixed ranked nodes: a static source for testing one
// ranking link alone.
type staticRank struct {
	nodes []*rankedNode
	pos   int
}

var _ rankIterator = (*staticRank)(nil)

func (s *staticRank) Next() *rankedNode {
	if s.pos >= len(s.nodes) {
		return nil
	}
	rn := s.nodes[s.pos]
	s.pos++
	return rn
}

func (s *staticRank) Reset() { s.pos = 0 }

func drainNodes(it nodeIterator) []string {
	var out []string
	for n := it.Next(); n != nil; n = it.Next() {
		out = append(out, n.ID)
	}
	return out
}

func drainRanked(it rankIterator) []*rankedNode {
	var out []*rankedNode
	for rn := it.Next(); rn != nil; rn = it.Next() {
		out = append(out, rn)
	}
	return out
}

// usageMap is a usageSource over fixed usages.
type usageMap map[string]*nodeUsage

func (m usageMap) usageOf(n *api.Node) *nodeUsage {
	if u := m[n.ID]; u != nil {
		return u
	}
	u := newNodeUsage(n)
	m[n.ID] = u
	return u
}

func TestStaticIterator(t *testing.T) {
	nodes := []*api.Node{mkNode("a", 1, 1), mkNode("b", 1, 1), mkNode("c", 1, 1)}
	it := newStaticIterator(nodes, 4) // 4 % 3 = 1
	if got := drainNodes(it); !reflect.DeepEqual(got, []string{"b", "c", "a"}) {
		t.Fatalf("first pass %v", got)
	}
	it.Reset()
	if n := it.Next(); n.ID != "b" {
		t.Fatalf("after a full pass, next pass starts at b, got %s", n.ID)
	}
	it.Reset() // a partial pass continues where it stopped
	if got := drainNodes(it); !reflect.DeepEqual(got, []string{"c", "a", "b"}) {
		t.Fatalf("continued pass %v", got)
	}
	if got := drainNodes(newStaticIterator(nil, 7)); got != nil {
		t.Fatalf("empty iterator yielded %v", got)
	}
}

func TestFeasibilityIterator(t *testing.T) {
	down := mkNode("down", 1, 1)
	down.Status = api.NodeStatusDown
	inel := mkNode("inel", 1, 1)
	inel.Eligibility = api.NodeIneligible
	drain := mkNode("drain", 1, 1)
	drain.Drain = true
	nodes := []*api.Node{
		mkNode("ok1", 1, 1, withLabel("rack", "r1")), down, inel, drain,
		mkNode("dc2", 1, 1, withDC("dc2"), withLabel("rack", "r1")),
		mkNode("r2", 1, 1, withLabel("rack", "r2")),
		mkNode("ok2", 1, 1, withLabel("rack", "r1")),
	}
	m, err := newMatcher("${node.label.rack}", "=", "r1")
	if err != nil {
		t.Fatal(err)
	}
	metrics := newMetrics()
	it := &feasibilityIterator{
		source:  newStaticIterator(nodes, 0),
		checks:  []feasibilityChecker{readyChecker{}, newDatacenterChecker([]string{"dc1"}), &constraintChecker{matchers: []*matcher{m}}},
		metrics: metrics,
	}
	if got := drainNodes(it); !reflect.DeepEqual(got, []string{"ok1", "ok2"}) {
		t.Fatalf("feasible %v, want [ok1 ok2]", got)
	}
	want := "1 node: constraint ${node.label.rack} = r1 not met; 1 node: datacenter not in [dc1]; 1 node: node down; 1 node: node draining; 1 node: node ineligible"
	if got := metrics.String(); got != want {
		t.Errorf("metrics\n got %q\nwant %q", got, want)
	}
	if metrics.evaluated != len(nodes) {
		t.Errorf("evaluated %d, want %d", metrics.evaluated, len(nodes))
	}
}

func TestConstraintOperators(t *testing.T) {
	n := mkNode("node-7", 1, 1, withLabel("rack", "r1"), withDC("eu1"),
		withAttr("kernel.version", "6.1.0-18-amd64"), withAttr("driver.version", "535.104.05"),
		withAttr("features", "avx2, sse4,nvme"))
	tests := []struct {
		name, attr, op, value string
		want                  bool
	}{
		{"eq label", "${node.label.rack}", "=", "r1", true},
		{"eq label mismatch", "${node.label.rack}", "=", "r2", false},
		{"eq missing", "${node.label.zone}", "=", "", false},
		{"default op is =", "${node.label.rack}", "", "r1", true},
		{"ne", "${node.label.rack}", "!=", "r2", true},
		{"ne same", "${node.label.rack}", "!=", "r1", false},
		{"ne missing is met", "${node.label.zone}", "!=", "z1", true},
		{"node name", "${node.name}", "=", "name-node-7", true},
		{"node id", "${node.id}", "=", "node-7", true},
		{"datacenter", "${node.datacenter}", "=", "eu1", true},
		{"regexp", "${node.name}", "regexp", "^name-node-[0-9]+$", true},
		{"regexp no", "${node.name}", "regexp", "^gpu-", false},
		{"version range", "${attr.kernel.version}", "version", ">= 5.10, < 7", true},
		{"version too old", "${attr.kernel.version}", "version", ">= 6.2", false},
		{"version exact", "${attr.kernel.version}", "version", "6.1", true},
		{"version not", "${attr.kernel.version}", "version", "!= 6.1.0", false},
		{"version pessimistic", "${attr.driver.version}", "version", "~> 535.100", true},
		{"version pessimistic out", "${attr.driver.version}", "version", "~> 535.104.06", false},
		{"version missing", "${attr.cuda.version}", "version", ">= 1", false},
		{"set_contains", "${attr.features}", "set_contains", "nvme,avx2", true},
		{"set_contains missing item", "${attr.features}", "set_contains", "nvme,avx512", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := newMatcher(tc.attr, tc.op, tc.value)
			if err != nil {
				t.Fatalf("newMatcher: %v", err)
			}
			if got := m.match(n); got != tc.want {
				t.Errorf("%s %s %q on node = %v, want %v", tc.attr, tc.op, tc.value, got, tc.want)
			}
		})
	}
	t.Run("distinct_hosts", func(t *testing.T) {
		counts := map[string]int{"busy": 1}
		c := &distinctHostsChecker{scope: "job", count: func(id string) int { return counts[id] }}
		if r := c.check(mkNode("busy", 1, 1)); !strings.Contains(r, "distinct_hosts") {
			t.Errorf("busy node passed: %q", r)
		}
		if r := c.check(mkNode("idle", 1, 1)); r != "" {
			t.Errorf("idle node refused: %q", r)
		}
	})
}

func TestBinPackIterator(t *testing.T) {
	full := mkNode("full", 4000, 4096)
	empty := mkNode("empty", 4000, 4096)
	tiny := mkNode("tiny", 4000, 200)
	usage := usageMap{}
	usage.usageOf(full).add(&api.Allocation{ID: "x", Resources: api.Resources{CPU: 3000, MemoryMB: 3000}})
	ask := &groupAsk{cpu: 500, mem: 512}
	for _, spread := range []bool{false, true} {
		metrics := newMetrics()
		it := &binPackIterator{source: newStaticIterator([]*api.Node{empty, full, tiny}, 0), usage: usage, ask: ask, spread: spread, metrics: metrics}
		got := drainRanked(it)
		if len(got) != 2 {
			t.Fatalf("spread=%v: %d options, want 2 (tiny has too little memory)", spread, len(got))
		}
		if metrics.reasons["memory exhausted"] != 1 {
			t.Errorf("reasons %v, want memory exhausted once", metrics.reasons)
		}
		fullScore, emptyScore := got[1].scores[0], got[0].scores[0]
		if !spread && fullScore <= emptyScore {
			t.Errorf("binpack: full node %.3f should beat empty node %.3f", fullScore, emptyScore)
		}
		if spread && fullScore >= emptyScore {
			t.Errorf("spread: empty node %.3f should beat full node %.3f", emptyScore, fullScore)
		}
	}
	// A node filled exactly by the copy scores 1 with binpack.
	exact := mkNode("exact", 500, 512)
	it := &binPackIterator{source: &singleIterator{node: exact}, usage: usageMap{}, ask: ask}
	if rn := it.Next(); rn == nil || math.Abs(rn.scores[0]-1) > 1e-9 {
		t.Fatalf("exact fit: %+v", rn)
	}
}

func TestJobAntiAffinityIterator(t *testing.T) {
	a, b := &rankedNode{node: mkNode("a", 1, 1)}, &rankedNode{node: mkNode("b", 1, 1)}
	counts := map[string]int{"a": 2}
	it := &jobAntiAffinityIterator{source: &staticRank{nodes: []*rankedNode{a, b}}, desired: 3,
		count: func(id string) int { return counts[id] }, avoid: map[string]bool{"b": true}}
	drainRanked(it)
	if !reflect.DeepEqual(a.scores, []float64{-1}) {
		t.Errorf("a scores %v, want [-1] (-(2+1)/3)", a.scores)
	}
	if !reflect.DeepEqual(b.scores, []float64{-1}) {
		t.Errorf("b scores %v, want [-1] (rescheduled away from b)", b.scores)
	}
}

func TestAffinityIterator(t *testing.T) {
	r1, _ := newMatcher("${node.label.rack}", "=", "r1")
	ssd, _ := newMatcher("${node.label.disk}", "=", "ssd")
	a := &rankedNode{node: mkNode("a", 1, 1, withLabel("rack", "r1"), withLabel("disk", "ssd"))}
	b := &rankedNode{node: mkNode("b", 1, 1, withLabel("rack", "r1"))}
	c := &rankedNode{node: mkNode("c", 1, 1)}
	it := &affinityIterator{source: &staticRank{nodes: []*rankedNode{a, b, c}},
		affinities: []weightedMatcher{{m: r1, weight: 50}, {m: ssd, weight: -50}}}
	drainRanked(it)
	if a.scores[0] != 0 || b.scores[0] != 0.5 || c.scores[0] != 0 {
		t.Errorf("scores a %v b %v c %v, want 0, 0.5, 0", a.scores, b.scores, c.scores)
	}
}

func TestSpreadIterator(t *testing.T) {
	r1 := &rankedNode{node: mkNode("a", 1, 1, withLabel("rack", "r1"))}
	r2 := &rankedNode{node: mkNode("b", 1, 1, withLabel("rack", "r2"))}
	none := &rankedNode{node: mkNode("c", 1, 1)}
	target := &spreadTarget{attr: "${node.label.rack}", weight: 100, counts: map[string]int{"r1": 2}, values: 2}
	it := &spreadIterator{source: &staticRank{nodes: []*rankedNode{r1, r2, none}}, targets: []*spreadTarget{target}}
	drainRanked(it)
	if !(r2.scores[0] > r1.scores[0]) {
		t.Errorf("empty rack r2 %.2f should beat r1 %.2f", r2.scores[0], r1.scores[0])
	}
	if none.scores[0] != -1 {
		t.Errorf("node without the attribute scores %v, want -1", none.scores[0])
	}
	it.placed(r2.node, 2)
	if target.counts["r2"] != 2 {
		t.Errorf("placed did not count: %v", target.counts)
	}
}

func TestGPUFitIterator(t *testing.T) {
	partly := mkNode("partly", 1, 1, withGPUs("H100", 8, 81920))
	whole := mkNode("whole", 1, 1, withGPUs("H100", 8, 81920))
	cpuOnly := mkNode("cpu", 1, 1)
	usage := usageMap{}
	usage.usageOf(partly).add(&api.Allocation{ID: "x", GPUs: []string{"GPU-partly-0", "GPU-partly-1", "GPU-partly-2", "GPU-partly-3", "GPU-partly-4", "GPU-partly-5"}})
	mk := func(n *api.Node) *rankedNode { return &rankedNode{node: n, usage: usage.usageOf(n)} }
	p, w, c := mk(partly), mk(whole), mk(cpuOnly)
	drainRanked(&gpuFitIterator{source: &staticRank{nodes: []*rankedNode{p, w, c}}, count: 1})
	if !(p.scores[0] > w.scores[0]) {
		t.Errorf("1-GPU copy: partly used node %v should beat whole node %v", p.scores, w.scores)
	}
	if len(c.scores) != 0 {
		t.Errorf("node without GPUs got a GPU score %v", c.scores)
	}
	p2, w2, c2 := mk(partly), mk(whole), mk(cpuOnly)
	drainRanked(&gpuFitIterator{source: &staticRank{nodes: []*rankedNode{p2, w2, c2}}})
	if !(w2.scores[0] < p2.scores[0] && len(c2.scores) == 0) {
		t.Errorf("CPU-only copy should avoid free GPUs: whole %v partly %v cpu %v", w2.scores, p2.scores, c2.scores)
	}
}

func TestNormalizeLimitAndMaxScore(t *testing.T) {
	mk := func(id string, scores ...float64) *rankedNode {
		return &rankedNode{node: mkNode(id, 1, 1), scores: scores}
	}
	src := &staticRank{nodes: []*rankedNode{mk("d", -0.5), mk("c", 0.25, 0.75), mk("b", 0.5), mk("a", 0.1, 0.5), mk("e", 0.9)}}
	norm := &normalizeIterator{source: src}
	lim := &limitIterator{source: norm, limit: 2, maxSkip: 3}
	best := maxScore(lim)
	// d scores below 0 and is held back; the two options are c (0.5) and b (0.5).
	if best == nil || best.node.ID != "b" {
		t.Fatalf("best %+v, want b (tie with c, lower ID wins)", best)
	}
	lim.Reset()
	var ids []string
	for rn := lim.Next(); rn != nil; rn = lim.Next() {
		ids = append(ids, rn.node.ID)
	}
	if !reflect.DeepEqual(ids, []string{"c", "b"}) {
		t.Errorf("limited options %v, want [c b]", ids)
	}
	// With only negative options, held-back ones come out at the end.
	neg := &limitIterator{source: &normalizeIterator{source: &staticRank{nodes: []*rankedNode{mk("x", -1), mk("y", -0.2)}}}, limit: 2, maxSkip: 3}
	if best := maxScore(neg); best == nil || best.node.ID != "y" {
		t.Errorf("best of negatives %+v, want y", best)
	}
}
