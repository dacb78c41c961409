package consensus

import (
	"context"
	"fmt"
	"sync/atomic"

	iradix "github.com/hashicorp/go-immutable-radix"
	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
)

// StateStore is the replicated cluster state: jobs, evaluations,
// allocations, nodes, the scheduler configuration and, per table, the Raft
// index of its last write. Only the FSM writes to it, from Raft's apply
// goroutine; any number of goroutines may read it concurrently.
//
// Every object returned is shared with other readers and with the store
// itself: never change one in place. Copy it first (CopyJob, CopyAlloc,
// CopyNode, CopyEval).
//
// Each read method takes a memdb.WatchSet (nil when not blocking) to which it
// adds the channels that fire when what it read changes; see BlockingQuery.
// Reads through the StateStore each see the newest committed state; use
// Snapshot for several reads that must agree with each other.
type StateStore struct {
	cur       atomic.Pointer[storeState]
	nodeCache atomic.Pointer[nodeList] // see StateSnapshot.Nodes
}

// storeState is one generation of the store. Restore replaces it wholesale
// and closes abandonCh, which wakes every query watching the old one.
type storeState struct {
	db        *memdb.MemDB
	abandonCh chan struct{}
	// view is what Snapshot hands out; the FSM publishes a new one after
	// each entry, before Apply returns.
	view atomic.Pointer[storeView]
}

// storeView is a consistent pair: a memdb snapshot and, for the same
// state, every node's allocation list (the node_allocs rows) in an
// immutable radix tree keyed by node ID. The placement algorithm reads a
// node's list for every candidate node it weighs; a lookup in the tree
// costs no allocation, where a memdb read costs seven.
type storeView struct {
	db         *memdb.MemDB
	nodeAllocs *iradix.Tree
}

func newStoreState(db *memdb.MemDB) *storeState {
	st := &storeState{db: db, abandonCh: make(chan struct{})}
	tree := iradix.New().Txn()
	it, err := db.Txn(false).Get(tableNodeAllocs, "id")
	if err != nil {
		panic(readErr("allocation lists", err))
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		row := obj.(*nodeAllocs)
		tree.Insert([]byte(row.NodeID), row.Allocs)
	}
	st.view.Store(&storeView{db: db.Snapshot(), nodeAllocs: tree.Commit()})
	return st
}

// publish makes the state the FSM just committed visible to Snapshot.
// changed holds the node_allocs rows the entry rewrote (nil or empty
// list: deleted). Only the FSM calls it, from Raft's apply goroutine.
func (st *storeState) publish(changed map[string][]*api.Allocation) {
	tree := st.view.Load().nodeAllocs
	if len(changed) > 0 {
		txn := tree.Txn()
		for id, list := range changed {
			if len(list) == 0 {
				txn.Delete([]byte(id))
			} else {
				txn.Insert([]byte(id), list)
			}
		}
		tree = txn.Commit()
	}
	st.view.Store(&storeView{db: st.db.Snapshot(), nodeAllocs: tree})
}

// NewStateStore returns an empty store. Servers get theirs from Node.State;
// this is for tests and tools that build state without Raft.
func NewStateStore() *StateStore {
	s := &StateStore{}
	s.cur.Store(newStoreState(newMemDB()))
	return s
}

func (s *StateStore) txn() *memdb.Txn { return s.cur.Load().db.Txn(false) }

// AbandonCh is closed when the store's contents are replaced by a snapshot
// restore. BlockingQuery watches it; other long-lived watchers should too.
func (s *StateStore) AbandonCh() <-chan struct{} { return s.cur.Load().abandonCh }

// swap installs a freshly restored database and wakes everyone watching the
// old one.
func (s *StateStore) swap(db *memdb.MemDB) {
	old := s.cur.Swap(newStoreState(db))
	close(old.abandonCh)
}

// Snapshot returns a consistent, read-only view of the current state. It is
// cheap (no copying) and stays valid, unchanged, however the store moves on.
// It shows every entry whose Apply has returned.
func (s *StateStore) Snapshot() *StateSnapshot {
	gen := s.cur.Load()
	v := gen.view.Load()
	return &StateSnapshot{db: v.db, nodeAllocs: v.nodeAllocs, gen: gen, store: s}
}

// LatestIndex returns the Raft index of the newest write to any table.
func (s *StateStore) LatestIndex() uint64 { return latestIndex(s.txn()) }

// Index returns the Raft index of the newest write to one table (TableJobs,
// TableAllocs, ...), or 0 if it was never written.
func (s *StateStore) Index(table string) uint64 { return tableIndex(s.txn(), nil, table) }

// IndexWatch is Index that also adds the table's index row to ws, so a
// blocking query wakes when anything in that table changes.
func (s *StateStore) IndexWatch(ws memdb.WatchSet, table string) uint64 {
	return tableIndex(s.txn(), ws, table)
}

// JobByID returns a job, or nil, nil if there is none.
func (s *StateStore) JobByID(ws memdb.WatchSet, id string) (*api.Job, error) {
	return jobByID(s.txn(), ws, id)
}

// Jobs returns every job, sorted by ID.
func (s *StateStore) Jobs(ws memdb.WatchSet) ([]*api.Job, error) { return jobs(s.txn(), ws) }

// NodeByID returns a node, or nil, nil if there is none.
func (s *StateStore) NodeByID(ws memdb.WatchSet, id string) (*api.Node, error) {
	return nodeByID(s.txn(), ws, id)
}

// NodeByName returns the node with that name (the lowest ID if several
// share it), or nil, nil if there is none.
func (s *StateStore) NodeByName(ws memdb.WatchSet, name string) (*api.Node, error) {
	return nodeByName(s.txn(), ws, name)
}

// Nodes returns every node, sorted by ID.
func (s *StateStore) Nodes(ws memdb.WatchSet) ([]*api.Node, error) { return nodes(s.txn(), ws) }

// AllocByID returns an allocation, or nil, nil if there is none.
func (s *StateStore) AllocByID(ws memdb.WatchSet, id string) (*api.Allocation, error) {
	return allocByID(s.txn(), ws, id)
}

// Allocs returns every allocation, sorted by ID.
func (s *StateStore) Allocs(ws memdb.WatchSet) ([]*api.Allocation, error) {
	return allocsBy(s.txn(), ws, "id")
}

// AllocsByJob returns a job's allocations, terminal ones included, sorted by ID.
func (s *StateStore) AllocsByJob(ws memdb.WatchSet, jobID string) ([]*api.Allocation, error) {
	return allocsBy(s.txn(), ws, "job", jobID)
}

// AllocsByNode returns a node's allocations, terminal ones included, sorted by ID.
// The slice is the caller's; the allocations are shared.
func (s *StateStore) AllocsByNode(ws memdb.WatchSet, nodeID string) ([]*api.Allocation, error) {
	ch, obj, err := s.txn().FirstWatch(tableNodeAllocs, "id", nodeID)
	if err != nil {
		return nil, readErr("allocations of node "+nodeID, err)
	}
	ws.Add(ch) // fires when the node's list changes
	if obj == nil {
		return nil, nil
	}
	return append([]*api.Allocation(nil), obj.(*nodeAllocs).Allocs...), nil
}

// EvalByID returns an evaluation, or nil, nil if there is none.
func (s *StateStore) EvalByID(ws memdb.WatchSet, id string) (*api.Evaluation, error) {
	return evalByID(s.txn(), ws, id)
}

// Evals returns every evaluation, sorted by ID.
func (s *StateStore) Evals(ws memdb.WatchSet) ([]*api.Evaluation, error) {
	return evalsBy(s.txn(), ws, "id")
}

// EvalsByJob returns a job's evaluations, sorted by ID.
func (s *StateStore) EvalsByJob(ws memdb.WatchSet, jobID string) ([]*api.Evaluation, error) {
	return evalsBy(s.txn(), ws, "job", jobID)
}

// SchedulerConfig returns the cluster's scheduler configuration; Algorithm
// is never empty (binpack unless set).
func (s *StateStore) SchedulerConfig() SchedulerConfig { return schedulerConfig(s.txn(), nil) }

// BlockingQuery runs fn until the index it returns exceeds minIndex, an
// error occurs, or ctx is done. fn reads through the given store and adds
// what it reads to ws; when its index is not yet past minIndex, BlockingQuery
// waits for any of those channels (or a snapshot restore) to fire and runs fn
// again. With minIndex 0 it runs fn once.
//
// When ctx is done it returns nil: the caller keeps the last result fn
// produced, as HTTP blocking queries do when their wait time runs out. fn's
// own error is returned as is. It may be called from many goroutines.
func (s *StateStore) BlockingQuery(ctx context.Context, minIndex uint64, fn func(ws memdb.WatchSet, s *StateStore) (index uint64, err error)) error {
	for {
		ws := memdb.NewWatchSet()
		ws.Add(s.AbandonCh())
		index, err := fn(ws, s)
		if err != nil {
			return err
		}
		if minIndex == 0 || index > minIndex || ctx.Err() != nil {
			return nil
		}
		if err := ws.WatchCtx(ctx); err != nil {
			return nil
		}
	}
}

// The read functions below serve both StateStore and StateSnapshot. They
// return errors only when a memdb index lookup fails, which with this
// package's static schema means a bug.

func readErr(what string, err error) error {
	return fmt.Errorf("consensus: read %s: %w", what, err)
}

func jobByID(txn *memdb.Txn, ws memdb.WatchSet, id string) (*api.Job, error) {
	ch, obj, err := txn.FirstWatch(TableJobs, "id", id)
	if err != nil {
		return nil, readErr("job "+id, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*api.Job), nil
}

func jobs(txn *memdb.Txn, ws memdb.WatchSet) ([]*api.Job, error) {
	it, err := txn.Get(TableJobs, "id")
	if err != nil {
		return nil, readErr("jobs", err)
	}
	ws.Add(it.WatchCh())
	var out []*api.Job
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*api.Job))
	}
	return out, nil
}

func nodeByID(txn *memdb.Txn, ws memdb.WatchSet, id string) (*api.Node, error) {
	ch, obj, err := txn.FirstWatch(TableNodes, "id", id)
	if err != nil {
		return nil, readErr("node "+id, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*api.Node), nil
}

func nodeByName(txn *memdb.Txn, ws memdb.WatchSet, name string) (*api.Node, error) {
	ch, obj, err := txn.FirstWatch(TableNodes, "name", name)
	if err != nil {
		return nil, readErr("node named "+name, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*api.Node), nil
}

func nodes(txn *memdb.Txn, ws memdb.WatchSet) ([]*api.Node, error) {
	it, err := txn.Get(TableNodes, "id")
	if err != nil {
		return nil, readErr("nodes", err)
	}
	ws.Add(it.WatchCh())
	var out []*api.Node
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*api.Node))
	}
	return out, nil
}

func allocByID(txn *memdb.Txn, ws memdb.WatchSet, id string) (*api.Allocation, error) {
	ch, obj, err := txn.FirstWatch(TableAllocs, "id", id)
	if err != nil {
		return nil, readErr("allocation "+id, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*api.Allocation), nil
}

// allocsBy lists allocations through one index ("id" or "job"),
// in allocation ID order.
func allocsBy(txn *memdb.Txn, ws memdb.WatchSet, index string, args ...any) ([]*api.Allocation, error) {
	it, err := txn.Get(TableAllocs, index, args...)
	if err != nil {
		return nil, readErr("allocations by "+index, err)
	}
	ws.Add(it.WatchCh())
	var out []*api.Allocation
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*api.Allocation))
	}
	return out, nil
}

func evalByID(txn *memdb.Txn, ws memdb.WatchSet, id string) (*api.Evaluation, error) {
	ch, obj, err := txn.FirstWatch(TableEvals, "id", id)
	if err != nil {
		return nil, readErr("evaluation "+id, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*api.Evaluation), nil
}

func evalsBy(txn *memdb.Txn, ws memdb.WatchSet, index string, args ...any) ([]*api.Evaluation, error) {
	it, err := txn.Get(TableEvals, index, args...)
	if err != nil {
		return nil, readErr("evaluations by "+index, err)
	}
	ws.Add(it.WatchCh())
	var out []*api.Evaluation
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*api.Evaluation))
	}
	return out, nil
}

func schedulerConfig(txn *memdb.Txn, ws memdb.WatchSet) SchedulerConfig {
	ch, obj, err := txn.FirstWatch(TableSchedulerConfig, "id", configRowID)
	if err != nil {
		panic(readErr("scheduler config", err))
	}
	ws.Add(ch)
	var c SchedulerConfig
	if obj != nil {
		c = obj.(*configEntry).Config
	}
	if c.Algorithm == "" {
		c.Algorithm = AlgorithmBinpack
	}
	return c
}

func tableIndex(txn *memdb.Txn, ws memdb.WatchSet, table string) uint64 {
	ch, obj, err := txn.FirstWatch(TableIndex, "id", table)
	if err != nil {
		panic(readErr("index of "+table, err))
	}
	ws.Add(ch)
	if obj == nil {
		return 0
	}
	return obj.(*indexEntry).Value
}

func latestIndex(txn *memdb.Txn) uint64 {
	it, err := txn.Get(TableIndex, "id")
	if err != nil {
		panic(readErr("indexes", err))
	}
	var latest uint64
	for obj := it.Next(); obj != nil; obj = it.Next() {
		latest = max(latest, obj.(*indexEntry).Value)
	}
	return latest
}
