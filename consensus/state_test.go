package consensus

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
)

// randomLog builds a deterministic log that exercises every message type,
// including refused entries, and returns it encoded, as Raft would store it.
func randomLog(t testing.TB, seed uint64, n int) []*raft.Log {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	var logs []*raft.Log
	allocSeq := 0
	var allocIDs []string
	add := func(typ MessageType, req any) {
		data, err := encodeEntry(typ, req)
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, rawLog(uint64(len(logs)+1), data))
	}
	jobs := map[string]*api.Job{}
	for len(logs) < n {
		jobID := fmt.Sprintf("job-%02d", rng.IntN(12))
		nodeID := fmt.Sprintf("node-%03d", rng.IntN(40))
		evalID := fmt.Sprintf("eval-%05d", len(logs))
		switch rng.IntN(10) {
		case 0, 1:
			j := testJob(jobID, 1+rng.IntN(4))
			j.Meta["k"+fmt.Sprint(rng.IntN(3))] = "v"
			jobs[jobID] = j
			add(JobRegisterRequestType, &JobRegisterRequest{Job: j, Eval: testEval(evalID, jobID)})
		case 2:
			add(NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode(nodeID)})
		case 3:
			st := []string{api.NodeStatusReady, api.NodeStatusDown}[rng.IntN(2)]
			add(NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: nodeID, Status: st, UpdatedAt: int64(len(logs)),
				Evals: []*api.Evaluation{testEval(evalID, jobID)}})
		case 4:
			add(NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: nodeID, Drain: ptr(rng.IntN(2) == 0)})
		case 5, 6:
			j := jobs[jobID]
			if j == nil {
				j = testJob(jobID, 1)
			}
			req := &PlanApplyRequest{EvalID: evalID, Evals: []*api.Evaluation{{ID: evalID, JobID: jobID, Status: api.EvalStatusComplete}}}
			for range 1 + rng.IntN(8) {
				var a *api.Allocation
				if len(allocIDs) > 0 && rng.IntN(3) == 0 {
					a = testAlloc(allocIDs[rng.IntN(len(allocIDs))], j, nodeID)
					a.DesiredStatus = api.AllocDesiredStop
					if rng.IntN(2) == 0 {
						a.Job = nil
					}
				} else {
					allocSeq++
					a = testAlloc(fmt.Sprintf("alloc-%06d", allocSeq), j, nodeID)
					allocIDs = append(allocIDs, a.ID)
				}
				req.Allocs = append(req.Allocs, a)
			}
			add(PlanApplyRequestType, req)
		case 7:
			if len(allocIDs) == 0 {
				continue
			}
			u := &api.Allocation{ID: allocIDs[rng.IntN(len(allocIDs))], ClientStatus: api.AllocClientRunning,
				TaskStates: map[string]*api.TaskState{"nginx": {State: api.TaskStateRunning, Pid: rng.IntN(1000)}, "side": {State: "pending"}}}
			add(AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{u, {ID: "missing"}}})
		case 8:
			add(JobDeregisterRequestType, &JobDeregisterRequest{JobID: jobID, Purge: rng.IntN(4) == 0, Eval: testEval(evalID, jobID)})
		case 9:
			if rng.IntN(4) == 0 {
				add(ConfigRequestType, &SchedulerConfig{PreemptionEnabled: rng.IntN(2) == 0, Algorithm: AlgorithmSpread})
			} else {
				add(EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{
					{ID: evalID, JobID: jobID, Status: api.EvalStatusFailed, FailedTGAllocs: map[string]string{"web": "x", "db": "y", "cache": "z"}}}})
			}
		}
	}
	return logs
}

func applyAll(f *FSM, logs []*raft.Log) {
	for _, l := range logs {
		// Copy the data: each FSM decodes its own objects.
		f.Apply(&raft.Log{Index: l.Index, Term: l.Term, Type: l.Type, Data: bytes.Clone(l.Data)})
	}
}

func TestFSMDeterministic(t *testing.T) {
	logs := randomLog(t, 42, 1500)
	f1, f2 := NewFSM(testLogger(t)), NewFSM(testLogger(t))
	applyAll(f1, logs)
	applyAll(f2, logs)
	s1, s2 := persist(t, f1), persist(t, f2)
	if !bytes.Equal(s1, s2) {
		t.Fatalf("two FSMs applying the same log differ:\n%s", firstDiff(s1, s2))
	}
	if !bytes.Equal(s1, persist(t, f1)) {
		t.Fatal("persisting the same state twice gave different bytes")
	}
	allocs, _ := f1.State().Allocs(nil)
	if len(allocs) < 100 || f1.State().LatestIndex() == 0 {
		t.Fatalf("the random log built too little state: %d allocs", len(allocs))
	}
	// A server restored from that snapshot persists the same bytes too.
	f3 := NewFSM(testLogger(t))
	if err := f3.Restore(readCloser(s1)); err != nil {
		t.Fatal(err)
	}
	if s3 := persist(t, f3); !bytes.Equal(s1, s3) {
		t.Fatalf("restored FSM persists different bytes:\n%s", firstDiff(s1, s3))
	}
}

func firstDiff(a, b []byte) string {
	la, lb := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := range min(len(la), len(lb)) {
		if la[i] != lb[i] {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d lines", len(la), len(lb))
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func readCloser(b []byte) nopCloser { return nopCloser{bytes.NewReader(b)} }

// compareStores checks every table of two stores for equality.
func compareStores(t *testing.T, a, b *StateStore) {
	t.Helper()
	check := func(what string, x, y any, ex, ey error) {
		t.Helper()
		if ex != nil || ey != nil {
			t.Fatalf("%s: %v %v", what, ex, ey)
		}
		if !reflect.DeepEqual(x, y) {
			t.Errorf("%s differ:\n%+v\n%+v", what, x, y)
		}
	}
	j1, e1 := a.Jobs(nil)
	j2, e2 := b.Jobs(nil)
	check("jobs", j1, j2, e1, e2)
	n1, e1 := a.Nodes(nil)
	n2, e2 := b.Nodes(nil)
	check("nodes", n1, n2, e1, e2)
	a1, e1 := a.Allocs(nil)
	a2, e2 := b.Allocs(nil)
	check("allocs", a1, a2, e1, e2)
	v1, e1 := a.Evals(nil)
	v2, e2 := b.Evals(nil)
	check("evals", v1, v2, e1, e2)
	check("scheduler config", a.SchedulerConfig(), b.SchedulerConfig(), nil, nil)
	for _, tb := range tableOrder {
		check("index of "+tb, a.Index(tb), b.Index(tb), nil, nil)
	}
}

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	f := NewFSM(testLogger(t))
	applyAll(f, randomLog(t, 7, 800))
	data := persist(t, f)

	g := NewFSM(testLogger(t))
	mustApply(t, g, 1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("stale")}) // replaced wholesale
	if err := g.Restore(readCloser(data)); err != nil {
		t.Fatal(err)
	}
	compareStores(t, f.State(), g.State())
	if getNode(t, g.State(), "stale") != nil && getNode(t, f.State(), "stale") == nil {
		t.Fatal("restore kept state from before")
	}
	// Allocations of one job version share one object after a restore.
	allocs, _ := g.State().AllocsByJob(nil, "job-01")
	jobs := map[*api.Job]bool{}
	versions := map[string]bool{}
	for _, a := range allocs {
		jobs[a.Job] = true
		b, _ := json.Marshal(a.Job)
		versions[string(b)] = true
	}
	if len(allocs) > 0 && len(jobs) != len(versions) {
		t.Fatalf("%d allocations hold %d job objects for %d distinct versions", len(allocs), len(jobs), len(versions))
	}
}

func TestRestoreRejectsDamagedSnapshots(t *testing.T) {
	tests := []struct {
		name, data string
	}{
		{"not json", "{nope\n"},
		{"unknown record", `{"t":"widget","v":{}}` + "\n"},
		{"dangling job reference", `{"t":"alloc","k":3,"v":{"id":"a1"}}` + "\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(testLogger(t))
			mustApply(t, f, 1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
			if err := f.Restore(readCloser([]byte(tc.data))); err == nil {
				t.Fatal("restore accepted a damaged snapshot")
			}
			if getNode(t, f.State(), "n1") == nil {
				t.Fatal("a failed restore dropped the existing state")
			}
		})
	}
}

func TestRestoreWakesBlockingQuery(t *testing.T) {
	f := NewFSM(testLogger(t))
	mustApply(t, f, 1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
	other := NewFSM(testLogger(t))
	job := testJob("web", 1)
	for i, e := range []entry{
		{JobRegisterRequestType, &JobRegisterRequest{Job: job}},
		{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")}},
		{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", job, "n1")}}},
	} {
		mustApply(t, other, uint64(i+1), e.typ, e.req)
	}
	snapshot := persist(t, other)

	started := make(chan struct{})
	done := make(chan error, 1)
	var got []*api.Allocation
	go func() {
		calls := 0
		done <- f.State().BlockingQuery(context.Background(), 1, func(ws memdb.WatchSet, s *StateStore) (uint64, error) {
			allocs, err := s.AllocsByNode(ws, "n1")
			got = allocs
			if calls++; calls == 1 {
				close(started)
			}
			return s.IndexWatch(ws, TableAllocs), err
		})
	}()
	<-started
	if err := f.Restore(readCloser(snapshot)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil || len(got) != 1 || got[0].ID != "a1" {
			t.Fatalf("query returned %v with %d allocs", err, len(got))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("restore did not wake the blocking query")
	}
}

func TestBlockingQuery(t *testing.T) {
	job := testJob("web", 1)
	newFSM := func(t *testing.T) *FSM {
		f := NewFSM(testLogger(t))
		mustApply(t, f, 1, JobRegisterRequestType, &JobRegisterRequest{Job: job})
		mustApply(t, f, 2, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
		return f
	}
	nodeAllocs := func(out *[]*api.Allocation, calls *int, first chan struct{}) func(memdb.WatchSet, *StateStore) (uint64, error) {
		return func(ws memdb.WatchSet, s *StateStore) (uint64, error) {
			allocs, err := s.AllocsByNode(ws, "n1")
			*out = allocs
			if *calls++; *calls == 1 && first != nil {
				close(first)
			}
			return max(s.IndexWatch(ws, TableAllocs), 1), err
		}
	}

	t.Run("returns at once when the index has passed", func(t *testing.T) {
		f := newFSM(t)
		var got []*api.Allocation
		calls := 0
		if err := f.State().BlockingQuery(context.Background(), 0, nodeAllocs(&got, &calls, nil)); err != nil || calls != 1 {
			t.Fatalf("err %v, calls %d", err, calls)
		}
	})

	t.Run("wakes on a write", func(t *testing.T) {
		f := newFSM(t)
		var got []*api.Allocation
		calls := 0
		first := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- f.State().BlockingQuery(context.Background(), 2, nodeAllocs(&got, &calls, first)) }()
		<-first
		mustApply(t, f, 3, PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", job, "n1")}})
		select {
		case err := <-done:
			if err != nil || len(got) != 1 {
				t.Fatalf("err %v, allocs %d", err, len(got))
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the write did not wake the query")
		}
	})

	t.Run("does not block with index 0", func(t *testing.T) {
		f := NewFSM(testLogger(t))
		calls := 0
		err := f.State().BlockingQuery(context.Background(), 0, func(ws memdb.WatchSet, s *StateStore) (uint64, error) {
			calls++
			_, err := s.Jobs(ws)
			return s.IndexWatch(ws, TableJobs), err // 0: nothing written yet
		})
		if err != nil || calls != 1 {
			t.Fatalf("err %v, calls %d", err, calls)
		}
	})

	t.Run("ends with the last result when ctx is done", func(t *testing.T) {
		f := newFSM(t)
		var got []*api.Allocation
		calls := 0
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := f.State().BlockingQuery(ctx, 5, nodeAllocs(&got, &calls, nil)); err != nil {
			t.Fatal(err)
		}
		if calls < 1 || got != nil || ctx.Err() == nil {
			t.Fatalf("calls %d, allocs %v, ctx %v", calls, got, ctx.Err())
		}
	})

	t.Run("returns the function's error", func(t *testing.T) {
		f := newFSM(t)
		want := fmt.Errorf("boom")
		err := f.State().BlockingQuery(context.Background(), 5, func(memdb.WatchSet, *StateStore) (uint64, error) { return 0, want })
		if err != want {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestPlanApplyWireDedup(t *testing.T) {
	f := NewFSM(testLogger(t))
	job := testJob("web", 3)
	mustApply(t, f, 1, JobRegisterRequestType, &JobRegisterRequest{Job: job})
	stored := getJob(t, f.State(), "web")
	v2 := CopyJob(stored)
	v2.Version, v2.Groups[0].Tasks[0].Image = 1, "nginx:1.28"

	req := &PlanApplyRequest{Allocs: []*api.Allocation{
		testAlloc("a1", stored, "n1"), testAlloc("a2", stored, "n1"), testAlloc("a3", stored, "n2"),
		testAlloc("a4", v2, "n2"),
	}}
	data, err := encodeEntry(PlanApplyRequestType, req)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(data), `"nginx:1.27"`); n != 1 {
		t.Fatalf("the shared job appears %d times in the entry, want once", n)
	}
	if req.Allocs[0].Job != stored {
		t.Fatal("encoding changed the caller's allocation")
	}
	mustApply(t, f, 2, PlanApplyRequestType, req)
	s := f.State()
	for _, id := range []string{"a1", "a2", "a3"} {
		if a := getAlloc(t, s, id); a.Job != stored {
			t.Fatalf("alloc %s: job %p, want the stored job %p", id, a.Job, stored)
		}
	}
	if a4 := getAlloc(t, s, "a4"); a4.Job.Version != 1 || a4.Job.Groups[0].Tasks[0].Image != "nginx:1.28" {
		t.Fatalf("alloc a4 lost its own job version: %+v", a4.Job)
	}
	// A stop without any job on the wire keeps the allocation's job.
	stop := &api.Allocation{ID: "a4", JobID: "web", NodeID: "n2", DesiredStatus: api.AllocDesiredStop}
	mustApply(t, f, 3, PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{stop}})
	if a4 := getAlloc(t, s, "a4"); a4.Job == nil || a4.Job.Version != 1 || a4.DesiredStatus != api.AllocDesiredStop {
		t.Fatalf("stopped alloc: %+v", a4)
	}
}

func TestCopyHelpersAreDeep(t *testing.T) {
	job := testJob("web", 1)
	job.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: 1}
	cj := CopyJob(job)
	cj.Groups[0].Count = 9
	cj.Groups[0].Tasks[0].Env["A"] = "x"
	cj.Groups[0].Tasks[0].Resources.GPUs.Count = 4
	cj.Groups[0].Restart.Attempts = 7
	cj.Meta["team"] = "b"
	if job.Groups[0].Count != 1 || job.Groups[0].Tasks[0].Env["A"] != "1" || job.Groups[0].Tasks[0].Resources.GPUs.Count != 1 ||
		job.Groups[0].Restart.Attempts != 2 || job.Meta["team"] != "a" {
		t.Fatalf("CopyJob shares state: %+v", job)
	}
	if !reflect.DeepEqual(CopyJob(job), job) {
		t.Fatal("CopyJob is not equal to its source")
	}

	a := testAlloc("a1", job, "n1")
	a.TaskStates = map[string]*api.TaskState{"nginx": {State: "running"}}
	ca := CopyAlloc(a)
	ca.TaskStates["nginx"].State = "dead"
	ca.Ports[0].Value = 1
	if a.TaskStates["nginx"].State != "running" || a.Ports[0].Value != 23000 || ca.Job != a.Job {
		t.Fatal("CopyAlloc shares state or did not share the job")
	}

	n := testNode("n1")
	cn := CopyNode(n)
	cn.Resources.GPUs[0].NVLinkPeers[0] = "y"
	cn.Labels["rack"] = "r2"
	if n.Resources.GPUs[0].NVLinkPeers[0] != "GPU-x" || n.Labels["rack"] != "r1" || !reflect.DeepEqual(CopyNode(n), n) {
		t.Fatal("CopyNode shares state")
	}

	e := &api.Evaluation{ID: "e", FailedTGAllocs: map[string]string{"g": "r"}}
	ce := CopyEval(e)
	ce.FailedTGAllocs["g"] = "x"
	if e.FailedTGAllocs["g"] != "r" {
		t.Fatal("CopyEval shares state")
	}
	if CopyJob(nil) != nil || CopyAlloc(nil) != nil || CopyNode(nil) != nil || CopyEval(nil) != nil {
		t.Fatal("copy of nil is not nil")
	}
}

func TestSnapshotNodesFollowsWrites(t *testing.T) {
	f := NewFSM(testLogger(t))
	mustApply(t, f, 1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
	s1 := f.State().Snapshot()
	if got := s1.Nodes(); len(got) != 1 {
		t.Fatalf("first snapshot: %d nodes", len(got))
	}
	mustApply(t, f, 2, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n2")})
	mustApply(t, f, 3, JobRegisterRequestType, &JobRegisterRequest{Job: testJob("web", 1)})
	s2 := f.State().Snapshot()
	if got := s2.Nodes(); len(got) != 2 || got[1].ID != "n2" {
		t.Fatalf("second snapshot: %+v", got)
	}
	if got := s1.Nodes(); len(got) != 1 {
		t.Fatalf("first snapshot sees a later node: %d nodes", len(got))
	}
	mustApply(t, f, 4, NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "n2", Status: api.NodeStatusDown})
	if got := f.State().Snapshot().Nodes(); got[1].Status != api.NodeStatusDown {
		t.Fatalf("status change not seen: %+v", got[1])
	}

	// A restore may bring a different node table under the same index.
	other := NewFSM(testLogger(t))
	mustApply(t, other, 1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("x1")})
	mustApply(t, other, 2, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("x2")})
	mustApply(t, other, 3, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("x3")})
	mustApply(t, other, 4, NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "x3", Status: api.NodeStatusDown})
	if err := f.Restore(readCloser(persist(t, other))); err != nil {
		t.Fatal(err)
	}
	if got := f.State().Snapshot().Nodes(); len(got) != 3 || got[0].ID != "x1" {
		t.Fatalf("after restore: %+v", got)
	}
}
