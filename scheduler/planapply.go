package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/scheduler/placement"
)

// planState is the part of the newest state the plan applier reads.
// consensus.StateSnapshot implements it; tests use a map-backed fake.
type planState interface {
	NodeByID(ws memdb.WatchSet, id string) (*api.Node, error)
	AllocsByNode(nodeID string) []*api.Allocation
}

var _ planState = (*consensus.StateSnapshot)(nil)

// planRequest is one worker's plan plus the evaluation updates to commit
// with it if every node in it is accepted.
type planRequest struct {
	plan  *placement.Plan
	evals []*api.Evaluation
	reply chan planResult
}

// planResult tells the worker what happened to its plan.
type planResult struct {
	// Index is the Raft index of the commit (0 when nothing was written).
	Index uint64
	// Refused maps node IDs whose part of the plan was dropped to why.
	// When it is non-empty the evaluation updates were not committed and
	// the worker should retry on fresh state.
	Refused map[string]string
	// Placed counts allocations committed to run.
	Placed int
	Err    error
}

// planApplier is the single goroutine through which every plan reaches
// Raft, so verification never interleaves. For each plan it takes the
// newest state, re-verifies every node that would receive allocations
// with placement.Fits (counting allocations placed by earlier plans, minus
// those this plan stops or preempts), and commits the part that fits in
// one PlanApplyRequest. This is what keeps nodes from being overcommitted
// when several workers plan from stale snapshots.
//
// Commits are pipelined: while earlier plans are still being written to
// Raft, the next plan is verified against the newest state plus their
// placements (but not their stops: capacity counts as freed only once a
// stop is committed, so a failed commit can only make later checks
// stricter). Raft then writes several plans in one disk sync.
type planApplier struct {
	state   func() planState
	commit  func(*consensus.PlanApplyRequest) (uint64, error)
	log     *slog.Logger
	reqs    chan *planRequest
	observe func(placed, refused int, took time.Duration) // metrics hook; may be nil

	mu       sync.Mutex                   // orders snapshots against in-flight removal
	inflight map[uint64][]*api.Allocation // commit seq → placements being committed
	seq      uint64
	slots    chan struct{} // bounds concurrent commits
	wg       sync.WaitGroup
}

// maxInflightPlans bounds the plans being committed at once.
const maxInflightPlans = 32

func newPlanApplier(state func() planState, commit func(*consensus.PlanApplyRequest) (uint64, error), log *slog.Logger) *planApplier {
	return &planApplier{state: state, commit: commit, log: log, reqs: make(chan *planRequest),
		inflight: map[uint64][]*api.Allocation{}, slots: make(chan struct{}, maxInflightPlans)}
}

// Submit hands a plan to the applier and waits for the verdict. It may be
// called from any number of workers.
func (a *planApplier) Submit(ctx context.Context, plan *placement.Plan, evals []*api.Evaluation) planResult {
	r := &planRequest{plan: plan, evals: evals, reply: make(chan planResult, 1)}
	select {
	case a.reqs <- r:
	case <-ctx.Done():
		return planResult{Err: errApplierStopped}
	}
	select {
	case res := <-r.reply:
		return res
	case <-ctx.Done():
		return planResult{Err: errApplierStopped}
	}
}

// Run applies plans until ctx ends, then waits for commits in flight.
// Exactly one Run may be active.
func (a *planApplier) Run(ctx context.Context) {
	defer a.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-a.reqs:
			a.apply(ctx, r)
		}
	}
}

// view returns the newest state with the placements of in-flight commits
// laid over it. Taking the snapshot and reading the overlay under one lock
// guarantees that a commit is visible in one or the other (or both, which
// only double-counts).
func (a *planApplier) view() planState {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := a.state()
	if len(a.inflight) == 0 {
		return st
	}
	extra := map[string][]*api.Allocation{}
	for _, allocs := range a.inflight {
		for _, al := range allocs {
			extra[al.NodeID] = append(extra[al.NodeID], al)
		}
	}
	return &inflightView{base: st, extra: extra}
}

// overlay calls take (which takes a state snapshot) and returns, per node,
// the placements of plans still being committed, read under the same lock
// as view. A worker plans on the snapshot plus these, so it does not pick
// capacity that an earlier plan is already committing and have its plan
// refused for it.
func (a *planApplier) overlay(take func()) map[string][]*api.Allocation {
	a.mu.Lock()
	defer a.mu.Unlock()
	take()
	if len(a.inflight) == 0 {
		return nil
	}
	extra := map[string][]*api.Allocation{}
	for _, allocs := range a.inflight {
		for _, al := range allocs {
			extra[al.NodeID] = append(extra[al.NodeID], al)
		}
	}
	return extra
}

func (a *planApplier) apply(ctx context.Context, r *planRequest) {
	start := time.Now()
	allocs, refused := verifyPlan(a.view(), r.plan)
	req := &consensus.PlanApplyRequest{Allocs: allocs, EvalID: r.plan.EvalID, Job: r.plan.Job}
	if len(refused) == 0 {
		req.Evals = r.evals
	}
	var placing []*api.Allocation
	for _, al := range allocs {
		if al.DesiredStatus == api.AllocDesiredRun {
			placing = append(placing, al)
		}
	}
	res := planResult{Refused: refused, Placed: len(placing)}
	for node, why := range refused {
		a.log.Info("plan refused for node", "eval", r.plan.EvalID, "node", node, "reason", why)
	}
	if len(req.Allocs) == 0 && len(req.Evals) == 0 {
		a.done(r, res, start)
		return
	}
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		r.reply <- planResult{Err: errApplierStopped}
		return
	}
	a.mu.Lock()
	a.seq++
	seq := a.seq
	a.inflight[seq] = placing
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		idx, err := a.commit(req)
		// The FSM has applied the entry (or it failed): from now on the
		// newest snapshot shows it, so it leaves the overlay.
		a.mu.Lock()
		delete(a.inflight, seq)
		a.mu.Unlock()
		<-a.slots
		if err != nil {
			r.reply <- planResult{Err: fmt.Errorf("commit plan of eval %s: %w", r.plan.EvalID, err)}
			return
		}
		res.Index = idx
		a.done(r, res, start)
	}()
}

func (a *planApplier) done(r *planRequest, res planResult, start time.Time) {
	if a.observe != nil {
		a.observe(res.Placed, len(res.Refused), time.Since(start))
	}
	r.reply <- res
}

// inflightView is the newest state plus the placements of plans still
// being committed.
type inflightView struct {
	base  planState
	extra map[string][]*api.Allocation
}

func (v *inflightView) NodeByID(ws memdb.WatchSet, id string) (*api.Node, error) {
	return v.base.NodeByID(ws, id)
}

func (v *inflightView) AllocsByNode(nodeID string) []*api.Allocation {
	return withInflight(v.base.AllocsByNode(nodeID), v.extra[nodeID])
}

// withInflight is base with the in-flight allocations extra laid over it
// (an allocation in both counts once, as the in-flight version).
func withInflight(base, extra []*api.Allocation) []*api.Allocation {
	if len(extra) == 0 {
		return base
	}
	replaced := make(map[string]bool, len(extra))
	for _, e := range extra {
		replaced[e.ID] = true
	}
	out := make([]*api.Allocation, 0, len(base)+len(extra))
	for _, b := range base {
		if !replaced[b.ID] {
			out = append(out, b)
		}
	}
	return append(out, extra...)
}

// plannerView is what a worker plans on: a state snapshot plus the
// placements of plans still being committed.
type plannerView struct {
	*consensus.StateSnapshot
	extra map[string][]*api.Allocation
}

var _ placement.State = (*plannerView)(nil)

func (v *plannerView) AllocsByNode(nodeID string) []*api.Allocation {
	return withInflight(v.StateSnapshot.AllocsByNode(nodeID), v.extra[nodeID])
}

// verifyPlan checks each node of plan against st and returns the
// allocations to commit and, per refused node, why it was refused.
// Stopping allocations never overcommits, so a node's stops are kept even
// when its placements are refused; its preemptions are dropped with them
// (evicting for a placement that does not happen helps nobody).
func verifyPlan(st planState, plan *placement.Plan) ([]*api.Allocation, map[string]string) {
	nodeIDs := map[string]bool{}
	for id := range plan.NodeAllocation {
		nodeIDs[id] = true
	}
	for id := range plan.NodeUpdate {
		nodeIDs[id] = true
	}
	for id := range plan.NodePreemptions {
		nodeIDs[id] = true
	}
	ids := make([]string, 0, len(nodeIDs))
	for id := range nodeIDs {
		ids = append(ids, id)
	}
	sort.Strings(ids)

	var out []*api.Allocation
	refused := map[string]string{}
	for _, id := range ids {
		placing := plan.NodeAllocation[id]
		out = append(out, plan.NodeUpdate[id]...)
		if len(placing) == 0 {
			out = append(out, plan.NodePreemptions[id]...)
			continue
		}
		if why := verifyNode(st, id, placing, plan.NodeUpdate[id], plan.NodePreemptions[id]); why != "" {
			refused[id] = why
			continue
		}
		out = append(out, plan.NodePreemptions[id]...)
		out = append(out, placing...)
	}
	if len(refused) == 0 {
		refused = nil
	}
	return out, refused
}

func verifyNode(st planState, nodeID string, placing, stopping, preempting []*api.Allocation) string {
	node, err := st.NodeByID(nil, nodeID)
	if err != nil {
		return "reading node: " + err.Error()
	}
	if node == nil {
		return "node no longer exists"
	}
	if node.Status != api.NodeStatusReady {
		return "node is " + node.Status
	}
	existing := st.AllocsByNode(nodeID)
	known := make(map[string]bool, len(existing))
	for _, e := range existing {
		known[e.ID] = true
	}
	for _, p := range placing {
		if !known[p.ID] && (node.Drain || node.Eligibility == api.NodeIneligible) {
			if node.Drain {
				return "node is draining"
			}
			return "node is ineligible for new placements"
		}
	}
	drop := make(map[string]bool, len(placing)+len(stopping)+len(preempting))
	for _, set := range [][]*api.Allocation{placing, stopping, preempting} {
		for _, x := range set {
			drop[x.ID] = true
		}
	}
	proposed := make([]*api.Allocation, 0, len(existing)+len(placing))
	for _, e := range existing {
		if !drop[e.ID] {
			proposed = append(proposed, e)
		}
	}
	proposed = append(proposed, placing...)
	if ok, why := placement.Fits(node, proposed); !ok {
		return why
	}
	return ""
}
