package placement

import (
	"github.com/berth-dev/berth/api"
)

// State is the read-only cluster view Schedule works on.
//
// It is implemented by consensus.StateSnapshot (a go-memdb read
// transaction) and by the static fakes in this package's tests. Schedule
// calls it from one goroutine and never modifies what it returns: objects
// that come out of the state store are shared and must stay untouched.
// Nodes should be returned sorted by ID (memdb's id index does this);
// Schedule sorts a copy when they are not.
type State interface {
	// Nodes returns every registered node, whatever its status.
	Nodes() []*api.Node
	// AllocsByNode returns all allocations on a node, terminal ones included.
	AllocsByNode(nodeID string) []*api.Allocation
	// AllocsByJob returns all allocations of a job, terminal ones included.
	AllocsByJob(jobID string) []*api.Allocation
}

// Scheduling algorithms for Options.Algorithm.
const (
	AlgorithmBinpack = "binpack"
	AlgorithmSpread  = "spread"
)

// Options tune one Schedule call. The zero value is valid: binpack, no
// preemption, counter-based IDs derived from the evaluation ID, time 0.
type Options struct {
	Algorithm         string // "binpack" (default) or "spread"
	PreemptionEnabled bool
	// NewID returns a fresh allocation ID. The worker passes random UUIDs;
	// tests pass a counter. Nil means "<evalID>-<n>", which is deterministic.
	NewID func() string
	// Now is unix nanoseconds, stamped into each new allocation's CreateTime.
	Now int64
	// Cache, when set, keeps node usage from one Schedule call to the
	// next. Only for a State whose nodes and allocation lists are never
	// changed in place (see UsageCache); the plan is the same without it.
	Cache *UsageCache

	// firstFit replaces all scoring with "lowest node ID that fits"; only
	// the fragmentation experiment in the tests uses it, as the baseline.
	firstFit bool
}

// Plan is what one Schedule call wants to change. The plan applier
// re-verifies each node with Fits on the newest state, after removing the
// node's NodeUpdate and NodePreemptions allocations and adding its
// NodeAllocation ones, and commits the part that fits.
type Plan struct {
	EvalID string
	Job    *api.Job // nil when the job is gone
	// NodeAllocation maps a node ID to new allocations (full objects,
	// DesiredStatus run, ClientStatus pending, Job embedded).
	NodeAllocation map[string][]*api.Allocation
	// NodeUpdate maps a node ID to allocations to stop: copies with
	// DesiredStatus stop and a DesiredDescription saying why. Allocations
	// lost on a down node also carry ClientStatus lost.
	NodeUpdate map[string][]*api.Allocation
	// NodePreemptions maps a node ID to allocations evicted for a job of
	// higher priority: copies with DesiredStatus evict.
	NodePreemptions map[string][]*api.Allocation
	// FailedGroups maps a group name to a human reason why some copies
	// could not be placed, e.g. "2 of 3 copies unplaced: 2 nodes: memory
	// exhausted; 1 node: constraint ${node.label.rack} = r1 not met".
	FailedGroups map[string]string
}

// IsNoOp reports whether applying the plan would change nothing.
// FailedGroups alone do not count as a change.
func (p *Plan) IsNoOp() bool {
	if p == nil {
		return true
	}
	return countAllocs(p.NodeAllocation) == 0 && countAllocs(p.NodeUpdate) == 0 && countAllocs(p.NodePreemptions) == 0
}

func countAllocs(m map[string][]*api.Allocation) int {
	n := 0
	for _, as := range m {
		n += len(as)
	}
	return n
}

func newPlan(evalID string, job *api.Job) *Plan {
	return &Plan{
		EvalID:          evalID,
		Job:             job,
		NodeAllocation:  map[string][]*api.Allocation{},
		NodeUpdate:      map[string][]*api.Allocation{},
		NodePreemptions: map[string][]*api.Allocation{},
		FailedGroups:    map[string]string{},
	}
}
