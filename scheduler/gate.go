package scheduler

import (
	"container/heap"
	"sync"

	"github.com/berth-dev/berth/api"
)

// planGate admits one worker at a time into placement, which is pure CPU:
// the other workers wait for their commits meanwhile, and the Raft, FSM
// and HTTP goroutines keep a core instead of queueing behind several
// placements for Go's 10 ms preemption slice.
//
// When several workers wait, the gate lets in the evaluation of the
// highest priority first, then the cheapest (fewest allocations asked),
// then the one that came first: the same order as the broker's, so a
// count=1 job that a worker has just taken does not wait for every bulk
// job that other workers took before it, only for the one being planned.
// A waiting evaluation is overtaken only by cheaper ones, which take at
// most their own planning time each.
//
// Enter blocks; Leave must follow every Enter. Safe for concurrent use.
type planGate struct {
	mu      sync.Mutex
	busy    bool
	seq     uint64
	waiting gateHeap
}

type gateWaiter struct {
	priority int
	cost     int
	seq      uint64
	admit    chan struct{}
}

type gateHeap []*gateWaiter

func (h gateHeap) Len() int { return len(h) }
func (h gateHeap) Less(i, j int) bool {
	if h[i].priority != h[j].priority {
		return h[i].priority > h[j].priority
	}
	if h[i].cost != h[j].cost {
		return h[i].cost < h[j].cost
	}
	return h[i].seq < h[j].seq
}
func (h gateHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *gateHeap) Push(x any)   { *h = append(*h, x.(*gateWaiter)) }
func (h *gateHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return x
}

// Enter waits until the caller may plan an evaluation of the given
// priority and cost.
func (g *planGate) Enter(priority, cost int) {
	g.mu.Lock()
	if !g.busy {
		g.busy = true
		g.mu.Unlock()
		return
	}
	g.seq++
	w := &gateWaiter{priority: priority, cost: cost, seq: g.seq, admit: make(chan struct{})}
	heap.Push(&g.waiting, w)
	g.mu.Unlock()
	<-w.admit
}

// Leave lets the next waiter in, or opens the gate.
func (g *planGate) Leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiting.Len() == 0 {
		g.busy = false
		return
	}
	close(heap.Pop(&g.waiting).(*gateWaiter).admit)
}

// jobCost estimates the work of evaluating a job, for the broker's and
// the gate's order: the number of allocations it asks for (one per group
// of a system job, whose count is per node). A missing job costs nothing.
func jobCost(job *api.Job) int {
	if job == nil {
		return 0
	}
	n := 0
	for _, g := range job.Groups {
		if job.Type == api.JobTypeSystem {
			n++
		} else {
			n += g.Count
		}
	}
	return n
}
