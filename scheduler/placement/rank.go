package placement

import (
	"math"

	"github.com/berth-dev/berth/api"
)

// rankedNode is a feasible node with the resources a copy would get there
// and the scores the ranking links gave it.
type rankedNode struct {
	node   *api.Node
	usage  *nodeUsage
	fit    *fitResult // devices and ports; nil until the node is chosen (see commit)
	scores []float64
	buf    [6]float64 // backing for scores: one allocation per ranked node
	final  float64
	// preempt lists allocations to evict first (set by preemption only).
	preempt []*api.Allocation
}

// rankIterator yields ranked nodes one at a time; Next returns nil when
// exhausted, Reset starts a new pass. Single goroutine, never blocks.
type rankIterator interface {
	Next() *rankedNode
	Reset()
}

// usageSource gives the up-to-date usage of a node (the evalContext).
type usageSource interface {
	usageOf(n *api.Node) *nodeUsage
}

// binPackIterator turns feasible nodes into ranked ones: it drops nodes
// where the copy does not fit (cpu, memory, ports, GPUs) and scores the
// resulting utilisation. Devices and ports are picked later, only on the
// chosen node.
// With spread it prefers empty nodes instead of full ones.
type binPackIterator struct {
	source  nodeIterator
	usage   usageSource
	ask     *groupAsk
	spread  bool
	noScore bool // first-fit baseline: every node scores 0
	metrics *placementMetrics

	slab []rankedNode // see newRanked
	used int
}

var _ rankIterator = (*binPackIterator)(nil)

func (it *binPackIterator) Next() *rankedNode {
	for {
		n := it.source.Next()
		if n == nil {
			return nil
		}
		// Nodes too small even when empty are ruled out before their
		// usage is built: that keeps GPU asks cheap on big clusters of
		// mostly CPU nodes.
		if reason := it.ask.neverFits(n); reason != "" {
			it.metrics.filter(reason)
			continue
		}
		u := it.usage.usageOf(n)
		if reason := u.check(it.ask); reason != "" {
			it.metrics.filter(reason)
			continue
		}
		rn := it.newRanked()
		rn.node, rn.usage = n, u
		rn.scores = rn.buf[:0]
		if !it.noScore {
			rn.scores = append(rn.scores, fitScore(n, u.cpu+it.ask.cpu, u.mem+it.ask.mem, it.spread))
		}
		return rn
	}
}

// Reset starts a new pass. The ranked nodes of the last pass are reused:
// nothing keeps one past the next selection (the chosen one is committed
// first).
func (it *binPackIterator) Reset() {
	it.source.Reset()
	it.used = 0
}

// newRanked hands out a zeroed ranked node from the pass's slab, so a pass
// over thousands of candidates does not allocate one each.
func (it *binPackIterator) newRanked() *rankedNode {
	if it.used == len(it.slab) {
		// The full slab's nodes are still in use this pass: start a
		// bigger one, which later passes reuse.
		it.slab = make([]rankedNode, max(16, 2*len(it.slab)))
		it.used = 0
	}
	rn := &it.slab[it.used]
	it.used++
	*rn = rankedNode{}
	return rn
}

// fitScore is Nomad's ScoreFitBinPack, normalised to 0..1: with free
// fractions f_cpu and f_mem after placement, binpack scores
// (20 - 10^f_cpu - 10^f_mem) / 18, which grows as the node fills, and
// spread scores the mirror image.
func fitScore(n *api.Node, cpu, mem int, spread bool) float64 {
	freeFrac := func(used, total int) float64 {
		if total <= 0 {
			return 0
		}
		f := 1 - float64(used)/float64(total)
		return math.Max(0, math.Min(1, f))
	}
	total := math.Pow(10, freeFrac(cpu, n.Resources.CPU)) + math.Pow(10, freeFrac(mem, n.Resources.MemoryMB))
	score := (20 - total) / 18
	if spread {
		score = (total - 2) / 18
	}
	return math.Max(0, math.Min(1, score))
}

// jobAntiAffinityIterator penalises nodes that already run copies of the
// same group, -(collisions+1)/desired as in Nomad, so copies spread over
// nodes unless nothing else fits. It also penalises (-1) the node a failed
// copy is being rescheduled away from.
type jobAntiAffinityIterator struct {
	source  rankIterator
	count   func(nodeID string) int
	desired int
	avoid   map[string]bool
}

var _ rankIterator = (*jobAntiAffinityIterator)(nil)

func (it *jobAntiAffinityIterator) Next() *rankedNode {
	rn := it.source.Next()
	if rn == nil {
		return nil
	}
	if c := it.count(rn.node.ID); c > 0 {
		d := it.desired
		if d < 1 {
			d = 1
		}
		rn.scores = append(rn.scores, -float64(c+1)/float64(d))
	}
	if it.avoid[rn.node.ID] {
		rn.scores = append(rn.scores, -1)
	}
	return rn
}

func (it *jobAntiAffinityIterator) Reset() { it.source.Reset() }

type weightedMatcher struct {
	m      *matcher
	weight int
}

// affinityIterator adds sum(weights of matching affinities) / sum(|weights|),
// in -1..1, for jobs with affinities.
type affinityIterator struct {
	source     rankIterator
	affinities []weightedMatcher
}

var _ rankIterator = (*affinityIterator)(nil)

func (it *affinityIterator) Next() *rankedNode {
	rn := it.source.Next()
	if rn == nil {
		return nil
	}
	var total, got float64
	for _, a := range it.affinities {
		total += math.Abs(float64(a.weight))
		if a.m.match(rn.node) {
			got += float64(a.weight)
		}
	}
	if total > 0 {
		rn.scores = append(rn.scores, got/total)
	}
	return rn
}

func (it *affinityIterator) Reset() { it.source.Reset() }

// spreadTarget is one spread stanza with the group's current copies per
// value of its attribute.
type spreadTarget struct {
	attr   string
	weight int
	counts map[string]int
	values int // distinct values among ready nodes
}

// spreadIterator scores how far a node's attribute value is below an even
// share of the group's copies: (mean - count) / mean, clamped to -1..1,
// averaged by weight. A node without the attribute scores -1.
type spreadIterator struct {
	source  rankIterator
	targets []*spreadTarget
}

var _ rankIterator = (*spreadIterator)(nil)

func (it *spreadIterator) Next() *rankedNode {
	rn := it.source.Next()
	if rn == nil {
		return nil
	}
	var total, got float64
	for _, t := range it.targets {
		w := float64(t.weight)
		total += w
		v, ok := resolveTarget(rn.node, t.attr)
		if !ok {
			got -= w
			continue
		}
		placed := 0
		for _, c := range t.counts {
			placed += c
		}
		values := t.values
		if values < 1 {
			values = 1
		}
		mean := float64(placed+1) / float64(values)
		s := (mean - float64(t.counts[v])) / mean
		got += w * math.Max(-1, math.Min(1, s))
	}
	if total > 0 {
		rn.scores = append(rn.scores, got/total)
	}
	return rn
}

func (it *spreadIterator) Reset() { it.source.Reset() }

// placed records a copy placed (+1) or taken back (-1) on a node.
func (it *spreadIterator) placed(n *api.Node, delta int) {
	for _, t := range it.targets {
		if v, ok := resolveTarget(n, t.attr); ok {
			t.counts[v] += delta
		}
	}
}

// gpuFitIterator is the fragmentation-aware best fit. For a copy that asks
// for k GPUs on a node with F free of T healthy devices it adds
// 1 - (F-k)/T: the fewer GPUs left free after placement, the better, so
// small jobs fill partly used nodes and whole nodes stay free for 8-GPU
// jobs. For a copy that asks for no GPU it adds -F/T on GPU nodes, so
// CPU-only work does not eat the cpu and memory GPU jobs will need.
type gpuFitIterator struct {
	source rankIterator
	count  int
}

var _ rankIterator = (*gpuFitIterator)(nil)

func (it *gpuFitIterator) Next() *rankedNode {
	rn := it.source.Next()
	if rn == nil {
		return nil
	}
	free, total := rn.usage.freeGPUs()
	if total > 0 {
		if it.count > 0 {
			rn.scores = append(rn.scores, 1-float64(free-it.count)/float64(total))
		} else if free > 0 {
			rn.scores = append(rn.scores, -float64(free)/float64(total))
		}
	}
	return rn
}

func (it *gpuFitIterator) Reset() { it.source.Reset() }

// normalizeIterator sets the final score to the mean of the scores.
type normalizeIterator struct {
	source rankIterator
}

var _ rankIterator = (*normalizeIterator)(nil)

func (it *normalizeIterator) Next() *rankedNode {
	rn := it.source.Next()
	if rn == nil {
		return nil
	}
	rn.final = 0
	if len(rn.scores) > 0 {
		var sum float64
		for _, s := range rn.scores {
			sum += s
		}
		rn.final = sum / float64(len(rn.scores))
	}
	return rn
}

func (it *normalizeIterator) Reset() { it.source.Reset() }

// limitIterator stops after limit options, so a placement looks at a few
// nodes rather than all of them (Nomad's power of k choices). Options
// scoring below threshold are held back, up to maxSkip of them, and only
// returned when the source runs dry.
type limitIterator struct {
	source    rankIterator
	limit     int
	threshold float64
	maxSkip   int
	seen      int
	skipped   []*rankedNode
}

var _ rankIterator = (*limitIterator)(nil)

func (it *limitIterator) Next() *rankedNode {
	if it.seen >= it.limit {
		return nil
	}
	for {
		rn := it.source.Next()
		if rn == nil {
			if len(it.skipped) == 0 {
				return nil
			}
			rn = it.skipped[0]
			it.skipped = it.skipped[1:]
			it.seen++
			return rn
		}
		if rn.final < it.threshold && len(it.skipped) < it.maxSkip {
			it.skipped = append(it.skipped, rn)
			continue
		}
		it.seen++
		return rn
	}
}

func (it *limitIterator) Reset() {
	it.source.Reset()
	it.seen = 0
	it.skipped = it.skipped[:0]
}

// maxScore drains an iterator and returns the best option: the highest
// final score, ties going to the lowest node ID, so the outcome does not
// depend on where the pass started.
func maxScore(it rankIterator) *rankedNode {
	var best *rankedNode
	for rn := it.Next(); rn != nil; rn = it.Next() {
		if best == nil || rn.final > best.final || (rn.final == best.final && rn.node.ID < best.node.ID) {
			best = rn
		}
	}
	return best
}
