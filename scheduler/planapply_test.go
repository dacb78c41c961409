package scheduler

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/scheduler/placement"
)

// fakePlanState is a map-backed state that the fake commit writes into,
// as the FSM would.
type fakePlanState struct {
	mu      sync.Mutex
	nodes   map[string]*api.Node
	allocs  map[string]*api.Allocation
	commits []*consensus.PlanApplyRequest
}

func (f *fakePlanState) NodeByID(_ memdb.WatchSet, id string) (*api.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nodes[id], nil
}

func (f *fakePlanState) AllocsByNode(nodeID string) []*api.Allocation {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*api.Allocation
	for _, a := range f.allocs {
		if a.NodeID == nodeID {
			out = append(out, a)
		}
	}
	return out
}

func (f *fakePlanState) commit(req *consensus.PlanApplyRequest) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.commits = append(f.commits, req)
	for _, a := range req.Allocs {
		f.allocs[a.ID] = a
	}
	return uint64(len(f.commits)), nil
}

func testNode(id string, cpu, mem int) *api.Node {
	return &api.Node{ID: id, Name: id, Status: api.NodeStatusReady, Eligibility: api.NodeEligible,
		Resources: api.NodeResources{CPU: cpu, MemoryMB: mem}}
}

func testAlloc(id, node string, cpu, mem int) *api.Allocation {
	return &api.Allocation{ID: id, NodeID: node, JobID: "j", Group: "g", DesiredStatus: api.AllocDesiredRun,
		ClientStatus: api.AllocClientPending, Resources: api.Resources{CPU: cpu, MemoryMB: mem}}
}

func stopped(a *api.Allocation) *api.Allocation {
	c := *a
	c.DesiredStatus = api.AllocDesiredStop
	return &c
}

func newTestApplier(t *testing.T, f *fakePlanState) *planApplier {
	a := newPlanApplier(func() planState { return f }, f.commit, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go a.Run(ctx)
	return a
}

func TestPlanApplierVerifiesEveryNode(t *testing.T) {
	evalDone := []*api.Evaluation{{ID: "e", JobID: "j", Status: api.EvalStatusComplete}}
	tests := []struct {
		name        string
		nodes       []*api.Node
		existing    []*api.Allocation
		plan        *placement.Plan
		wantRefused []string
		wantPlaced  int
		wantEvals   bool
		wantAllocs  int
	}{
		{
			name:       "fits",
			nodes:      []*api.Node{testNode("n1", 1000, 1024)},
			existing:   []*api.Allocation{testAlloc("old", "n1", 600, 512)},
			plan:       &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("a", "n1", 400, 512)}}},
			wantPlaced: 1, wantEvals: true, wantAllocs: 1,
		},
		{
			name:        "overcommit refused",
			nodes:       []*api.Node{testNode("n1", 1000, 1024)},
			existing:    []*api.Allocation{testAlloc("old", "n1", 600, 512)},
			plan:        &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("a", "n1", 500, 100)}}},
			wantRefused: []string{"n1"},
		},
		{
			name:     "stop in the same plan frees room",
			nodes:    []*api.Node{testNode("n1", 1000, 1024)},
			existing: []*api.Allocation{testAlloc("old", "n1", 600, 512)},
			plan: &placement.Plan{EvalID: "e",
				NodeUpdate:     map[string][]*api.Allocation{"n1": {stopped(testAlloc("old", "n1", 600, 512))}},
				NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("a", "n1", 1000, 1024)}}},
			wantPlaced: 1, wantEvals: true, wantAllocs: 2,
		},
		{
			name:     "partial: one node refused, the other committed, eval held back",
			nodes:    []*api.Node{testNode("n1", 1000, 1024), testNode("n2", 1000, 1024)},
			existing: []*api.Allocation{testAlloc("old", "n1", 900, 512)},
			plan: &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{
				"n1": {testAlloc("a", "n1", 200, 100)},
				"n2": {testAlloc("b", "n2", 200, 100)}}},
			wantRefused: []string{"n1"}, wantPlaced: 1, wantAllocs: 1,
		},
		{
			name:        "down node refused",
			nodes:       []*api.Node{func() *api.Node { n := testNode("n1", 1000, 1024); n.Status = api.NodeStatusDown; return n }()},
			plan:        &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("a", "n1", 1, 1)}}},
			wantRefused: []string{"n1"},
		},
		{
			name:        "draining node takes no new allocs",
			nodes:       []*api.Node{func() *api.Node { n := testNode("n1", 1000, 1024); n.Drain = true; return n }()},
			plan:        &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("a", "n1", 1, 1)}}},
			wantRefused: []string{"n1"},
		},
		{
			name:        "vanished node refused",
			plan:        &placement.Plan{EvalID: "e", NodeAllocation: map[string][]*api.Allocation{"gone": {testAlloc("a", "gone", 1, 1)}}},
			wantRefused: []string{"gone"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakePlanState{nodes: map[string]*api.Node{}, allocs: map[string]*api.Allocation{}}
			for _, n := range tc.nodes {
				f.nodes[n.ID] = n
			}
			for _, a := range tc.existing {
				f.allocs[a.ID] = a
			}
			ap := newTestApplier(t, f)
			res := ap.Submit(context.Background(), tc.plan, evalDone)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if len(res.Refused) != len(tc.wantRefused) {
				t.Fatalf("refused = %v, want %v", res.Refused, tc.wantRefused)
			}
			for _, n := range tc.wantRefused {
				if res.Refused[n] == "" {
					t.Fatalf("node %s not refused: %v", n, res.Refused)
				}
			}
			if res.Placed != tc.wantPlaced {
				t.Fatalf("placed = %d, want %d", res.Placed, tc.wantPlaced)
			}
			var got *consensus.PlanApplyRequest
			if len(f.commits) > 0 {
				got = f.commits[0]
			}
			if tc.wantAllocs == 0 && !tc.wantEvals {
				if got != nil {
					t.Fatalf("committed %+v, want nothing", got)
				}
				return
			}
			if got == nil {
				t.Fatal("nothing committed")
			}
			if len(got.Allocs) != tc.wantAllocs {
				t.Fatalf("committed %d allocs, want %d", len(got.Allocs), tc.wantAllocs)
			}
			if (len(got.Evals) > 0) != tc.wantEvals {
				t.Fatalf("committed evals %v, want evals=%v", got.Evals, tc.wantEvals)
			}
		})
	}
}

// Two plans made from the same stale snapshot race for the last capacity
// of one node: the applier must accept one and refuse the other.
func TestPlanApplierRaceForLastCapacity(t *testing.T) {
	f := &fakePlanState{nodes: map[string]*api.Node{"n1": testNode("n1", 1000, 1024)}, allocs: map[string]*api.Allocation{}}
	ap := newTestApplier(t, f)
	var wg sync.WaitGroup
	results := make([]planResult, 2)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := []string{"x", "y"}[i]
			results[i] = ap.Submit(context.Background(), &placement.Plan{EvalID: id,
				NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc(id, "n1", 700, 700)}}}, nil)
		}(i)
	}
	wg.Wait()
	placed, refused := 0, 0
	for _, r := range results {
		placed += r.Placed
		if r.Refused["n1"] != "" {
			refused++
			if !strings.Contains(r.Refused["n1"], "cpu") && !strings.Contains(r.Refused["n1"], "memory") {
				t.Errorf("refusal reason %q does not name the resource", r.Refused["n1"])
			}
		}
	}
	if placed != 1 || refused != 1 {
		t.Fatalf("placed %d refused %d, want 1 and 1: %+v", placed, refused, results)
	}
	var cpu int
	for _, a := range f.allocs {
		cpu += a.Resources.CPU
	}
	if cpu > 1000 {
		t.Fatalf("node overcommitted: %d millicores of 1000", cpu)
	}
}

// A plan verified while an earlier one is still being committed counts
// the earlier one's placements: the node is not overcommitted even though
// the snapshot does not show them yet.
func TestPlanApplierCountsInflightCommits(t *testing.T) {
	f := &fakePlanState{nodes: map[string]*api.Node{"n1": testNode("n1", 1000, 1024)}, allocs: map[string]*api.Allocation{}}
	release := make(chan struct{})
	entered := make(chan struct{}, 4)
	commit := func(req *consensus.PlanApplyRequest) (uint64, error) {
		entered <- struct{}{}
		<-release
		return f.commit(req)
	}
	a := newPlanApplier(func() planState { return f }, commit, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)

	first := make(chan planResult, 1)
	go func() {
		first <- a.Submit(ctx, &placement.Plan{EvalID: "x", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("x", "n1", 700, 100)}}}, nil)
	}()
	<-entered // x is being committed, not yet in the state
	second := a.Submit(ctx, &placement.Plan{EvalID: "y", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("y", "n1", 700, 100)}}}, nil)
	if second.Refused["n1"] == "" {
		t.Fatalf("second plan accepted while the first was in flight: %+v", second)
	}
	// A small one still fits next to the in-flight one, and commits in
	// parallel with it.
	third := make(chan planResult, 1)
	go func() {
		third <- a.Submit(ctx, &placement.Plan{EvalID: "z", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("z", "n1", 300, 100)}}}, nil)
	}()
	<-entered
	close(release)
	if r := <-first; r.Placed != 1 || r.Err != nil {
		t.Fatalf("first: %+v", r)
	}
	if r := <-third; r.Placed != 1 || r.Err != nil {
		t.Fatalf("third: %+v", r)
	}
	if len(f.allocs) != 2 {
		t.Fatalf("stored %d allocs, want 2", len(f.allocs))
	}
}

// Workers plan on the snapshot plus the placements being committed, so
// they do not pick capacity an earlier plan already holds.
func TestPlanApplierOverlayShowsInflightPlacements(t *testing.T) {
	f := &fakePlanState{nodes: map[string]*api.Node{"n1": testNode("n1", 1000, 1024)}, allocs: map[string]*api.Allocation{}}
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	commit := func(req *consensus.PlanApplyRequest) (uint64, error) {
		entered <- struct{}{}
		<-release
		return f.commit(req)
	}
	a := newPlanApplier(func() planState { return f }, commit, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Run(ctx)

	took := 0
	if extra := a.overlay(func() { took++ }); extra != nil || took != 1 {
		t.Fatalf("idle applier: overlay %v, snapshot taken %d times", extra, took)
	}
	done := make(chan planResult, 1)
	go func() {
		done <- a.Submit(ctx, &placement.Plan{EvalID: "x", NodeAllocation: map[string][]*api.Allocation{"n1": {testAlloc("x", "n1", 700, 100)}}}, nil)
	}()
	<-entered
	extra := a.overlay(func() {})
	if len(extra["n1"]) != 1 || extra["n1"][0].ID != "x" {
		t.Fatalf("overlay while x commits: %v", extra)
	}
	stored := testAlloc("old", "n1", 100, 100)
	merged := withInflight([]*api.Allocation{stored, extra["n1"][0]}, extra["n1"])
	if len(merged) != 2 {
		t.Fatalf("an allocation both stored and in flight counts once; got %d", len(merged))
	}
	close(release)
	if r := <-done; r.Placed != 1 || r.Err != nil {
		t.Fatalf("commit: %+v", r)
	}
	if extra := a.overlay(func() {}); extra != nil {
		t.Fatalf("overlay after the commit: %v", extra)
	}
}
