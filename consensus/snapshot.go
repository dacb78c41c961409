package consensus

import (
	"fmt"
	"unsafe"

	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
)

// StateSnapshot is a frozen, consistent view of the state store, taken by
// StateStore.Snapshot. Later writes never show through. It is safe for
// concurrent use and needs no release.
//
// It has the StateStore's read methods (ws may be nil; a snapshot never
// changes, so watching it only makes sense to learn of later writes to the
// live store) and, in place of the watch-taking Nodes, AllocsByNode and
// AllocsByJob, the error-free forms that the placement algorithm reads
// (scheduler/placement.State).
type StateSnapshot struct {
	db         *memdb.MemDB
	nodeAllocs *iradix.Tree // node ID → []*api.Allocation, as in db
	gen        *storeState  // the store generation the snapshot was taken from
	store      *StateStore
}

// nodeList caches StateSnapshot.Nodes: the scheduler takes a snapshot per
// evaluation and lists all nodes each time, while the nodes table changes
// rarely (heartbeats are not Raft writes). Two snapshots of one store
// generation with the same nodes-table index hold the same nodes.
type nodeList struct {
	gen   *storeState
	index uint64
	nodes []*api.Node
}

func (s *StateSnapshot) txn() *memdb.Txn { return s.db.Txn(false) }

// mustRead turns a memdb lookup error, which the package's static schema
// rules out, into a panic: the placement interface has no error results.
func mustRead[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("consensus: state snapshot read failed (schema bug): %v", err))
	}
	return v
}

// Nodes returns every node, sorted by ID. The slice is shared with other
// snapshots of the same state: read it, never modify it.
func (s *StateSnapshot) Nodes() []*api.Node {
	txn := s.txn()
	index := tableIndex(txn, nil, TableNodes)
	if c := s.store.nodeCache.Load(); c != nil && c.gen == s.gen && c.index == index {
		return c.nodes
	}
	list := mustRead(nodes(txn, nil))
	s.store.nodeCache.Store(&nodeList{gen: s.gen, index: index, nodes: list})
	return list
}

// AllocsByNode returns a node's allocations, terminal ones included, sorted
// by ID. It is one lookup (the list is kept per node on every write), and
// the slice is shared with the store: read it, never modify it.
func (s *StateSnapshot) AllocsByNode(nodeID string) []*api.Allocation {
	// The tree only reads the key: no need to copy the string.
	v, ok := s.nodeAllocs.Get(unsafe.Slice(unsafe.StringData(nodeID), len(nodeID)))
	if !ok {
		return nil
	}
	return v.([]*api.Allocation)
}

// AllocsByJob returns a job's allocations, terminal ones included, sorted by ID.
func (s *StateSnapshot) AllocsByJob(jobID string) []*api.Allocation {
	return mustRead(allocsBy(s.txn(), nil, "job", jobID))
}

// LatestIndex returns the Raft index of the newest write the snapshot holds.
func (s *StateSnapshot) LatestIndex() uint64 { return latestIndex(s.txn()) }

// Index returns the Raft index of the newest write to one table.
func (s *StateSnapshot) Index(table string) uint64 { return tableIndex(s.txn(), nil, table) }

// JobByID returns a job, or nil, nil if there is none.
func (s *StateSnapshot) JobByID(ws memdb.WatchSet, id string) (*api.Job, error) {
	return jobByID(s.txn(), ws, id)
}

// Jobs returns every job, sorted by ID.
func (s *StateSnapshot) Jobs(ws memdb.WatchSet) ([]*api.Job, error) { return jobs(s.txn(), ws) }

// NodeByID returns a node, or nil, nil if there is none.
func (s *StateSnapshot) NodeByID(ws memdb.WatchSet, id string) (*api.Node, error) {
	return nodeByID(s.txn(), ws, id)
}

// NodeByName returns the node with that name, or nil, nil if there is none.
func (s *StateSnapshot) NodeByName(ws memdb.WatchSet, name string) (*api.Node, error) {
	return nodeByName(s.txn(), ws, name)
}

// AllocByID returns an allocation, or nil, nil if there is none.
func (s *StateSnapshot) AllocByID(ws memdb.WatchSet, id string) (*api.Allocation, error) {
	return allocByID(s.txn(), ws, id)
}

// Allocs returns every allocation, sorted by ID.
func (s *StateSnapshot) Allocs(ws memdb.WatchSet) ([]*api.Allocation, error) {
	return allocsBy(s.txn(), ws, "id")
}

// EvalByID returns an evaluation, or nil, nil if there is none.
func (s *StateSnapshot) EvalByID(ws memdb.WatchSet, id string) (*api.Evaluation, error) {
	return evalByID(s.txn(), ws, id)
}

// Evals returns every evaluation, sorted by ID.
func (s *StateSnapshot) Evals(ws memdb.WatchSet) ([]*api.Evaluation, error) {
	return evalsBy(s.txn(), ws, "id")
}

// EvalsByJob returns a job's evaluations, sorted by ID.
func (s *StateSnapshot) EvalsByJob(ws memdb.WatchSet, jobID string) ([]*api.Evaluation, error) {
	return evalsBy(s.txn(), ws, "job", jobID)
}

// SchedulerConfig returns the scheduler configuration as of the snapshot.
func (s *StateSnapshot) SchedulerConfig() SchedulerConfig { return schedulerConfig(s.txn(), nil) }
