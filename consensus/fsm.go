package consensus

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
)

// FSM is berth's Raft state machine: it applies committed log entries to a
// StateStore. Raft calls Apply, Snapshot and Restore from its own goroutines,
// never Apply and Restore at the same time.
//
// Apply is deterministic. It reads no clock, draws no random numbers, does no
// I/O and never lets map iteration order reach the state, so every server
// that applies the same log holds the same state. Each object it writes
// carries the Raft index of the entry that wrote it.
type FSM struct {
	state  *StateStore
	logger *slog.Logger
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.FSMSnapshot = (*fsmSnapshot)(nil)
)

// NewFSM returns a state machine over an empty state store. logger may be
// nil.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &FSM{state: NewStateStore(), logger: logger}
}

// State returns the store the FSM writes to. The pointer stays the same
// across restores.
func (f *FSM) State() *StateStore { return f.state }

// Apply applies one committed entry. It returns nil or the error that
// refused the request (an error value, which Node.Apply hands back to the
// caller); a refused request changes nothing. An entry that cannot be
// decoded means the replicated log is corrupt or was written by an
// incompatible version, and Apply panics rather than diverge from the other
// servers.
func (f *FSM) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("consensus: empty raft log entry at index %d", l.Index))
	}
	return f.apply(l.Index, MessageType(l.Data[0]), l.Data[1:])
}

// ApplyEntry encodes req as Node.Apply would and applies it as if committed
// at index. It is for tests and tools that build state without Raft; index
// must grow from call to call.
func (f *FSM) ApplyEntry(index uint64, t MessageType, req any) error {
	data, err := encodeEntry(t, req)
	if err != nil {
		return err
	}
	if resp := f.Apply(&raft.Log{Index: index, Type: raft.LogCommand, Data: data}); resp != nil {
		return resp.(error)
	}
	return nil
}

func decode[T any](index uint64, t MessageType, body []byte) *T {
	v := new(T)
	if err := json.Unmarshal(body, v); err != nil {
		panic(fmt.Sprintf("consensus: undecodable %s entry at raft index %d: %v", t, index, err))
	}
	return v
}

func (f *FSM) apply(index uint64, t MessageType, body []byte) any {
	gen := f.state.cur.Load()
	txn := gen.db.Txn(true)
	defer txn.Abort()
	w := &writer{txn: txn, index: index}
	var err error
	switch t {
	case JobRegisterRequestType:
		err = w.jobRegister(decode[JobRegisterRequest](index, t, body))
	case JobDeregisterRequestType:
		err = w.jobDeregister(decode[JobDeregisterRequest](index, t, body))
	case NodeRegisterRequestType:
		err = w.nodeRegister(decode[NodeRegisterRequest](index, t, body))
	case NodeUpdateStatusRequestType:
		err = w.nodeUpdateStatus(decode[NodeUpdateStatusRequest](index, t, body))
	case NodeUpdateEligibilityRequestType:
		err = w.nodeUpdateEligibility(decode[NodeUpdateEligibilityRequest](index, t, body))
	case NodeDeregisterRequestType:
		err = w.nodeDeregister(decode[NodeDeregisterRequest](index, t, body))
	case EvalUpdateRequestType:
		err = w.upsertEvals(decode[EvalUpdateRequest](index, t, body).Evals)
	case PlanApplyRequestType:
		err = w.planApply(decode[PlanApplyRequest](index, t, body))
	case AllocClientUpdateRequestType:
		var skipped int
		skipped, err = w.allocClientUpdate(decode[AllocClientUpdateRequest](index, t, body))
		if skipped > 0 {
			f.logger.Debug("ignored client updates for unknown allocations", "count", skipped, "index", index)
		}
	case ConfigRequestType:
		err = w.schedulerConfig(decode[SchedulerConfig](index, t, body))
	case ServerTombstoneRequestType:
		err = w.serverTombstone(decode[ServerTombstoneRequest](index, t, body))
	case GCRequestType:
		var res *GCResult
		if res, err = w.gc(decode[GCRequest](index, t, body)); err == nil && res.Evals+res.Allocs+res.Jobs > 0 {
			f.logger.Info("garbage collected", "evals", res.Evals, "allocs", res.Allocs, "jobs", res.Jobs, "index", index)
		}
	case ACLBootstrapRequestType, ACLPolicyUpsertRequestType, ACLPolicyDeleteRequestType,
		ACLTokenUpsertRequestType, ACLTokenDeleteRequestType, SecretUpsertRequestType, SecretDeleteRequestType:
		err = w.applyACL(index, t, body) // acl.go
	default:
		panic(fmt.Sprintf("consensus: unknown message type %d at raft index %d; was the log written by a newer berth?", uint8(t), index))
	}
	if err != nil {
		return err
	}
	if w.err == nil {
		w.flushNodeAllocs()
	}
	if w.err != nil {
		// A memdb insert failed: with a static schema and validated IDs
		// this is a bug, and carrying on would diverge from the log.
		panic(fmt.Sprintf("consensus: applying %s at raft index %d: %v", t, index, w.err))
	}
	txn.Commit()
	gen.publish(w.nodeAllocs)
	return nil
}

// writer performs one entry's writes inside one memdb transaction. Objects
// it inserts come freshly decoded from the entry, so it may set their index
// fields; objects already in the store are copied before being changed.
type writer struct {
	txn     *memdb.Txn
	index   uint64
	touched [len(tableOrder)]bool // per table, see mark
	err     error                 // first insert/delete failure
	// nodeAllocs are the allocation lists (sorted by ID, owned by this
	// entry) of the nodes whose allocations it changed; they replace the
	// nodes' node_allocs rows before commit.
	nodeAllocs map[string][]*api.Allocation
}

var tableOrder = [...]string{TableJobs, TableEvals, TableAllocs, TableNodes, TableSchedulerConfig,
	TableACLPolicies, TableACLTokens, TableACLMeta, TableSecrets}

func (w *writer) insert(table string, obj any) {
	if table == TableAllocs {
		a := obj.(*api.Allocation)
		if old := w.alloc(a.ID); old != nil && old.NodeID != a.NodeID {
			w.removeNodeAlloc(old.NodeID, a.ID)
		}
		w.upsertNodeAlloc(a)
	}
	if err := w.txn.Insert(table, obj); err != nil && w.err == nil {
		w.err = fmt.Errorf("insert into %s: %w", table, err)
	}
	w.mark(table)
}

func (w *writer) delete(table string, obj any) {
	if table == TableAllocs {
		a := obj.(*api.Allocation)
		w.removeNodeAlloc(a.NodeID, a.ID)
	}
	if err := w.txn.Delete(table, obj); err != nil && w.err == nil {
		w.err = fmt.Errorf("delete from %s: %w", table, err)
	}
	w.mark(table)
}

// nodeAllocList returns this entry's working copy of a node's allocation
// list, starting from the stored row.
func (w *writer) nodeAllocList(nodeID string) []*api.Allocation {
	if list, ok := w.nodeAllocs[nodeID]; ok {
		return list
	}
	if w.nodeAllocs == nil {
		w.nodeAllocs = map[string][]*api.Allocation{}
	}
	var list []*api.Allocation
	obj, err := w.txn.First(tableNodeAllocs, "id", nodeID)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("read allocation list of node %q: %w", nodeID, err)
	}
	if obj != nil {
		stored := obj.(*nodeAllocs).Allocs
		list = make([]*api.Allocation, len(stored), len(stored)+4)
		copy(list, stored)
	}
	w.nodeAllocs[nodeID] = list
	return list
}

// upsertNodeAlloc puts a into its node's list, replacing the entry with
// its ID.
func (w *writer) upsertNodeAlloc(a *api.Allocation) {
	list := w.nodeAllocList(a.NodeID)
	i, found := slices.BinarySearchFunc(list, a.ID, func(x *api.Allocation, id string) int { return strings.Compare(x.ID, id) })
	if found {
		list[i] = a
	} else {
		list = slices.Insert(list, i, a)
	}
	w.nodeAllocs[a.NodeID] = list
}

// removeNodeAlloc drops allocation id from a node's list.
func (w *writer) removeNodeAlloc(nodeID, id string) {
	list := w.nodeAllocList(nodeID)
	if i, found := slices.BinarySearchFunc(list, id, func(x *api.Allocation, id string) int { return strings.Compare(x.ID, id) }); found {
		list = slices.Delete(list, i, i+1)
	}
	w.nodeAllocs[nodeID] = list
}

// flushNodeAllocs writes the changed lists as the nodes' new rows.
func (w *writer) flushNodeAllocs() {
	for id, list := range w.nodeAllocs {
		var err error
		if len(list) == 0 {
			_, err = w.txn.DeleteAll(tableNodeAllocs, "id", id)
		} else {
			err = w.txn.Insert(tableNodeAllocs, &nodeAllocs{NodeID: id, Allocs: list})
		}
		if err != nil && w.err == nil {
			w.err = fmt.Errorf("write allocation list of node %q: %w", id, err)
		}
	}
}

// mark records that table changed, so its row in the index table gets this
// entry's index. Done eagerly (not at commit) to keep it to one insert per
// table.
func (w *writer) mark(table string) {
	for i, t := range tableOrder {
		if t == table {
			if !w.touched[i] {
				w.touched[i] = true
				if err := w.txn.Insert(TableIndex, &indexEntry{Key: table, Value: w.index}); err != nil && w.err == nil {
					w.err = fmt.Errorf("update index of %s: %w", table, err)
				}
			}
			return
		}
	}
}

func (w *writer) first(table, id string) any {
	obj, err := w.txn.First(table, "id", id)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("read %s %q: %w", table, id, err)
	}
	return obj
}

func (w *writer) job(id string) *api.Job {
	if obj := w.first(TableJobs, id); obj != nil {
		return obj.(*api.Job)
	}
	return nil
}

func (w *writer) node(id string) *api.Node {
	if obj := w.first(TableNodes, id); obj != nil {
		return obj.(*api.Node)
	}
	return nil
}

func (w *writer) alloc(id string) *api.Allocation {
	if obj := w.first(TableAllocs, id); obj != nil {
		return obj.(*api.Allocation)
	}
	return nil
}

func (w *writer) upsertEvals(evals []*api.Evaluation) error {
	if err := w.checkEvals(evals); err != nil {
		return err
	}
	for _, e := range evals {
		e.CreateIndex = w.index
		if obj := w.first(TableEvals, e.ID); obj != nil {
			e.CreateIndex = obj.(*api.Evaluation).CreateIndex
		}
		e.ModifyIndex = w.index
		w.insert(TableEvals, e)
	}
	return nil
}

func (w *writer) upsertEval(e *api.Evaluation) error {
	if e == nil {
		return nil
	}
	return w.upsertEvals([]*api.Evaluation{e})
}

// jobSpec is the part of a job that the user wrote: a change to it makes a
// new job version. Server-set fields are zeroed.
func jobSpec(j *api.Job) []byte {
	c := *j
	c.Stop, c.Status, c.Version, c.SubmitTime = false, "", 0, 0
	c.CreateIndex, c.ModifyIndex, c.JobModifyIndex = 0, 0, 0
	b, err := json.Marshal(&c)
	if err != nil {
		panic(fmt.Sprintf("consensus: encode job %q: %v", j.ID, err))
	}
	return b
}

func (w *writer) jobRegister(req *JobRegisterRequest) error {
	job := req.Job
	if job == nil || job.ID == "" {
		return fmt.Errorf("%w: job register without a job ID", ErrInvalidRequest)
	}
	if req.Eval != nil && req.Eval.ID == "" {
		return fmt.Errorf("%w: evaluation without an ID", ErrInvalidRequest)
	}
	job.Stop = false
	job.CreateIndex, job.Version = w.index, 0
	if old := w.job(job.ID); old != nil {
		job.CreateIndex, job.Version = old.CreateIndex, old.Version
		if !bytes.Equal(jobSpec(old), jobSpec(job)) {
			job.Version++
		}
	}
	job.ModifyIndex, job.JobModifyIndex = w.index, w.index
	w.insert(TableJobs, job)
	return w.upsertEval(req.Eval)
}

func (w *writer) jobDeregister(req *JobDeregisterRequest) error {
	if req.Eval != nil && req.Eval.ID == "" {
		return fmt.Errorf("%w: evaluation without an ID", ErrInvalidRequest)
	}
	old := w.job(req.JobID)
	if old == nil {
		return fmt.Errorf("%w: %q", ErrJobNotFound, req.JobID)
	}
	if req.Purge {
		w.delete(TableJobs, old)
		w.purgeAllocs(req.JobID)
	} else {
		job := *old
		job.Stop = true
		job.ModifyIndex, job.JobModifyIndex = w.index, w.index
		w.insert(TableJobs, &job)
	}
	return w.upsertEval(req.Eval)
}

// purgeAllocs deletes a purged job's allocations. Agents remove the
// containers of allocations that disappear, which is what `berth rm` asks
// for. A node's allocation list is watched by index (the newest change
// among its allocations), and a deletion leaves nothing to carry the new
// index, so each affected node is rewritten with this entry's index.
func (w *writer) purgeAllocs(jobID string) {
	it, err := w.txn.Get(TableAllocs, "job", jobID)
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("read allocations of job %q: %w", jobID, err)
		}
		return
	}
	var gone []*api.Allocation
	for obj := it.Next(); obj != nil; obj = it.Next() {
		gone = append(gone, obj.(*api.Allocation))
	}
	touched := map[string]bool{}
	var nodes []string
	for _, a := range gone {
		w.delete(TableAllocs, a)
		if !touched[a.NodeID] {
			touched[a.NodeID] = true
			nodes = append(nodes, a.NodeID)
		}
	}
	sort.Strings(nodes)
	for _, id := range nodes {
		if n := w.node(id); n != nil {
			c := CopyNode(n)
			c.ModifyIndex = w.index
			w.insert(TableNodes, c)
		}
	}
}

func (w *writer) nodeRegister(req *NodeRegisterRequest) error {
	n := req.Node
	if n == nil || n.ID == "" {
		return fmt.Errorf("%w: node register without a node ID", ErrInvalidRequest)
	}
	if n.Status == "" {
		n.Status = api.NodeStatusReady
	}
	n.CreateIndex = w.index
	if old := w.node(n.ID); old != nil {
		// Drain and eligibility belong to the operator, not the agent.
		n.CreateIndex, n.Drain = old.CreateIndex, old.Drain
		if n.Eligibility == "" || old.Drain {
			n.Eligibility = old.Eligibility
		}
	}
	if n.Eligibility == "" {
		n.Eligibility = api.NodeEligible
	}
	n.ModifyIndex = w.index
	if err := w.checkEvals(req.Evals); err != nil {
		return err
	}
	w.insert(TableNodes, n)
	return w.upsertEvals(req.Evals)
}

func (w *writer) checkEvals(evals []*api.Evaluation) error {
	for _, e := range evals {
		if e == nil || e.ID == "" {
			return fmt.Errorf("%w: evaluation without an ID", ErrInvalidRequest)
		}
	}
	return nil
}

func (w *writer) nodeUpdateStatus(req *NodeUpdateStatusRequest) error {
	old := w.node(req.NodeID)
	if old == nil {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, req.NodeID)
	}
	if req.Status == "" {
		return fmt.Errorf("%w: node status update without a status", ErrInvalidRequest)
	}
	if err := w.checkEvals(req.Evals); err != nil {
		return err
	}
	n := *old
	n.Status = req.Status
	if req.UpdatedAt != 0 {
		n.StatusUpdatedAt = req.UpdatedAt
	}
	n.ModifyIndex = w.index
	w.insert(TableNodes, &n)
	return w.upsertEvals(req.Evals)
}

func (w *writer) nodeUpdateEligibility(req *NodeUpdateEligibilityRequest) error {
	old := w.node(req.NodeID)
	if old == nil {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, req.NodeID)
	}
	if err := w.checkEvals(req.Evals); err != nil {
		return err
	}
	n := *old
	if req.Eligibility != "" {
		n.Eligibility = req.Eligibility
	}
	if req.Drain != nil {
		n.Drain = *req.Drain
	}
	if n.Drain {
		n.Eligibility = api.NodeIneligible
	}
	n.ModifyIndex = w.index
	w.insert(TableNodes, &n)
	return w.upsertEvals(req.Evals)
}

func (w *writer) nodeDeregister(req *NodeDeregisterRequest) error {
	old := w.node(req.NodeID)
	if old == nil {
		return fmt.Errorf("%w: %q", ErrNodeNotFound, req.NodeID)
	}
	w.delete(TableNodes, old)
	return nil
}

func (w *writer) planApply(req *PlanApplyRequest) error {
	for _, a := range req.Allocs {
		if a == nil || a.ID == "" {
			return fmt.Errorf("%w: plan allocation without an ID", ErrInvalidRequest)
		}
	}
	if err := w.checkEvals(req.Evals); err != nil {
		return err
	}
	// All allocations of the entry share one decoded job; when it is the
	// version in the jobs table, they share that object instead, so 100k
	// allocations do not hold 100k copies of a few jobs.
	shared := req.Job
	if shared != nil {
		if stored := w.job(shared.ID); stored != nil && sameJob(stored, shared) {
			shared = stored
		}
	}
	for _, a := range req.Allocs {
		old := w.alloc(a.ID)
		if old == nil && w.job(a.JobID) == nil {
			// The job was purged after this plan was made: placing it
			// now would leave allocations without a job.
			continue
		}
		if a.Job == nil {
			if shared != nil && shared.ID == a.JobID {
				a.Job = shared
			} else if old != nil {
				a.Job = old.Job
			}
		}
		if old != nil {
			a.CreateIndex = old.CreateIndex
			if a.ClientStatus == "" {
				a.ClientStatus = old.ClientStatus
				if a.ClientDescription == "" {
					a.ClientDescription = old.ClientDescription
				}
			}
			if a.TaskStates == nil {
				a.TaskStates = old.TaskStates
			}
			if a.DesiredStatus == "" {
				a.DesiredStatus = old.DesiredStatus
			}
			if a.CreateTime == 0 {
				a.CreateTime = old.CreateTime
			}
		} else {
			a.CreateIndex = w.index
			if a.ClientStatus == "" {
				a.ClientStatus = api.AllocClientPending
			}
			if a.DesiredStatus == "" {
				a.DesiredStatus = api.AllocDesiredRun
			}
		}
		if a.EvalID == "" {
			a.EvalID = req.EvalID
		}
		a.ModifyIndex = w.index
		w.insert(TableAllocs, a)
	}
	return w.upsertEvals(req.Evals)
}

func (w *writer) allocClientUpdate(req *AllocClientUpdateRequest) (skipped int, err error) {
	if err := w.checkEvals(req.Evals); err != nil {
		return 0, err
	}
	for _, u := range req.Allocs {
		if u == nil {
			continue
		}
		old := w.alloc(u.ID)
		if old == nil {
			skipped++
			continue
		}
		a := *old
		if u.ClientStatus != "" {
			a.ClientStatus = u.ClientStatus
		}
		a.ClientDescription = u.ClientDescription
		if u.TaskStates != nil {
			a.TaskStates = u.TaskStates
		}
		a.ModifyIndex = w.index
		w.insert(TableAllocs, &a)
	}
	return skipped, w.upsertEvals(req.Evals)
}

func (w *writer) schedulerConfig(c *SchedulerConfig) error {
	switch c.Algorithm {
	case "", AlgorithmBinpack, AlgorithmSpread:
	default:
		return fmt.Errorf("%w: unknown scheduler algorithm %q", ErrInvalidRequest, c.Algorithm)
	}
	c.ModifyIndex = w.index
	w.insert(TableSchedulerConfig, &configEntry{ID: configRowID, Config: *c})
	return nil
}
