package consensus

import (
	"errors"
	"testing"

	"github.com/berth-dev/berth/api"
)

type entry struct {
	typ MessageType
	req any
}

func ptr[T any](v T) *T { return &v }

// TestFSMApply applies setup entries at indexes 1..n, then the entry under
// test at n+1, and checks the state and the FSM's answer.
func TestFSMApply(t *testing.T) {
	job := testJob("web", 3)
	// What placement embeds: the job as stored by regJob at index 1.
	stored := testJob("web", 3)
	stored.CreateIndex, stored.ModifyIndex, stored.JobModifyIndex = 1, 1, 1
	changed := testJob("web", 5)
	stoppedReq := testJob("web", 3)
	stoppedReq.Stop = true
	allocs := func(ids ...string) []*api.Allocation {
		var out []*api.Allocation
		for _, id := range ids {
			out = append(out, testAlloc(id, stored, "n1"))
		}
		return out
	}
	running := &api.Allocation{ID: "a1", ClientStatus: api.AllocClientRunning, ClientDescription: "started",
		TaskStates: map[string]*api.TaskState{"nginx": {State: api.TaskStateRunning, Pid: 42}}}
	stopA1 := testAlloc("a1", stored, "n1")
	stopA1.DesiredStatus, stopA1.DesiredDescription = api.AllocDesiredStop, "job stopped"
	lostA1 := testAlloc("a1", stored, "n1")
	lostA1.DesiredStatus, lostA1.ClientStatus, lostA1.ClientDescription = api.AllocDesiredStop, api.AllocClientLost, "node down"
	regJob := entry{JobRegisterRequestType, &JobRegisterRequest{Job: job, Eval: testEval("e1", "web")}}
	regNode := entry{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")}}
	plan := entry{PlanApplyRequestType, &PlanApplyRequest{Allocs: allocs("a1", "a2"), EvalID: "e1"}}

	tests := []struct {
		name    string
		setup   []entry
		apply   entry
		wantErr error
		check   func(t *testing.T, s *StateStore, idx uint64)
	}{
		{
			name:  "job register creates job and eval",
			apply: regJob,
			check: func(t *testing.T, s *StateStore, idx uint64) {
				j := getJob(t, s, "web")
				if j.CreateIndex != idx || j.ModifyIndex != idx || j.JobModifyIndex != idx || j.Version != 0 || j.Stop {
					t.Fatalf("job indexes/version: %+v", j)
				}
				if j.SubmitTime != job.SubmitTime {
					t.Fatalf("SubmitTime = %d, want the request's %d", j.SubmitTime, job.SubmitTime)
				}
				e := getEval(t, s, "e1")
				if e == nil || e.CreateIndex != idx || e.ModifyIndex != idx {
					t.Fatalf("eval: %+v", e)
				}
				if s.Index(TableJobs) != idx || s.Index(TableEvals) != idx || s.LatestIndex() != idx {
					t.Fatalf("index table: jobs=%d evals=%d latest=%d", s.Index(TableJobs), s.Index(TableEvals), s.LatestIndex())
				}
			},
		},
		{
			name:  "job re-register with the same spec keeps the version",
			setup: []entry{regJob},
			apply: entry{JobRegisterRequestType, &JobRegisterRequest{Job: testJob("web", 3)}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				j := getJob(t, s, "web")
				if j.Version != 0 || j.CreateIndex != 1 || j.ModifyIndex != idx || j.JobModifyIndex != idx {
					t.Fatalf("job: version=%d create=%d modify=%d jobmodify=%d", j.Version, j.CreateIndex, j.ModifyIndex, j.JobModifyIndex)
				}
			},
		},
		{
			name:  "job re-register with a changed spec bumps the version",
			setup: []entry{regJob},
			apply: entry{JobRegisterRequestType, &JobRegisterRequest{Job: changed}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				j := getJob(t, s, "web")
				if j.Version != 1 || j.CreateIndex != 1 || j.ModifyIndex != idx || j.Groups[0].Count != 5 {
					t.Fatalf("job: version=%d create=%d modify=%d count=%d", j.Version, j.CreateIndex, j.ModifyIndex, j.Groups[0].Count)
				}
			},
		},
		{
			name:  "job register of a stopped job restarts it without a new version",
			setup: []entry{regJob, {JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web"}}},
			apply: entry{JobRegisterRequestType, &JobRegisterRequest{Job: stoppedReq}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				j := getJob(t, s, "web")
				if j.Stop || j.Version != 0 || j.ModifyIndex != idx {
					t.Fatalf("job: stop=%v version=%d modify=%d", j.Stop, j.Version, j.ModifyIndex)
				}
			},
		},
		{
			name:    "job register without a job is refused",
			apply:   entry{JobRegisterRequestType, &JobRegisterRequest{Eval: testEval("e1", "web")}},
			wantErr: ErrInvalidRequest,
		},
		{
			name:    "job register with an eval without ID is refused atomically",
			apply:   entry{JobRegisterRequestType, &JobRegisterRequest{Job: job, Eval: &api.Evaluation{JobID: "web"}}},
			wantErr: ErrInvalidRequest,
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if getJob(t, s, "web") != nil {
					t.Fatal("job written by a refused entry")
				}
			},
		},
		{
			name:  "job deregister stops the job",
			setup: []entry{regJob},
			apply: entry{JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web", Eval: testEval("e2", "web")}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				j := getJob(t, s, "web")
				if !j.Stop || j.CreateIndex != 1 || j.ModifyIndex != idx || j.Version != 0 {
					t.Fatalf("job: %+v", j)
				}
				if e := getEval(t, s, "e2"); e == nil || e.CreateIndex != idx {
					t.Fatalf("eval: %+v", e)
				}
			},
		},
		{
			name:  "job deregister with purge deletes the job",
			setup: []entry{regJob},
			apply: entry{JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web", Purge: true}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if getJob(t, s, "web") != nil {
					t.Fatal("purged job still stored")
				}
				if s.Index(TableJobs) != idx {
					t.Fatalf("jobs index = %d, want %d", s.Index(TableJobs), idx)
				}
			},
		},
		{
			name:  "job deregister with purge deletes its allocations and marks their nodes",
			setup: []entry{regJob, regNode, plan},
			apply: entry{JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web", Purge: true}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				for _, id := range []string{"a1", "a2"} {
					if getAlloc(t, s, id) != nil {
						t.Fatalf("allocation %s of a purged job still stored", id)
					}
				}
				if n := getNode(t, s, "n1"); n.ModifyIndex != idx {
					t.Fatalf("node modify index %d, want %d: agents blocking on it would not wake", n.ModifyIndex, idx)
				}
				if s.Index(TableAllocs) != idx {
					t.Fatalf("allocs index = %d, want %d", s.Index(TableAllocs), idx)
				}
			},
		},
		{
			name:  "plan apply skips new allocations of a purged job",
			setup: []entry{regJob, regNode, {JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web", Purge: true}}},
			apply: plan,
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if getAlloc(t, s, "a1") != nil {
					t.Fatal("allocation placed for a purged job")
				}
			},
		},
		{
			name:    "job deregister of an unknown job writes nothing",
			apply:   entry{JobDeregisterRequestType, &JobDeregisterRequest{JobID: "nope", Eval: testEval("e2", "nope")}},
			wantErr: ErrJobNotFound,
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if getEval(t, s, "e2") != nil || s.LatestIndex() != 0 {
					t.Fatal("refused deregister wrote its eval")
				}
			},
		},
		{
			name:  "node register defaults status and eligibility",
			apply: regNode,
			check: func(t *testing.T, s *StateStore, idx uint64) {
				n := getNode(t, s, "n1")
				if n.Status != api.NodeStatusReady || n.Eligibility != api.NodeEligible || n.CreateIndex != idx || n.ModifyIndex != idx {
					t.Fatalf("node: %+v", n)
				}
				if byName, _ := s.NodeByName(nil, "host-n1"); byName != n {
					t.Fatalf("NodeByName = %v", byName)
				}
			},
		},
		{
			name:  "node re-register keeps the operator's drain and eligibility",
			setup: []entry{regNode, {NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(true)}}},
			apply: entry{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1"), Evals: []*api.Evaluation{testEval("e3", "web")}}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				n := getNode(t, s, "n1")
				if !n.Drain || n.Eligibility != api.NodeIneligible || n.CreateIndex != 1 || n.ModifyIndex != idx {
					t.Fatalf("node: %+v", n)
				}
				if getEval(t, s, "e3") == nil {
					t.Fatal("eval not written")
				}
			},
		},
		{
			name:  "node status update",
			setup: []entry{regNode},
			apply: entry{NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "n1", Status: api.NodeStatusDown, UpdatedAt: 12345,
				Evals: []*api.Evaluation{testEval("e4", "web")}}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				n := getNode(t, s, "n1")
				if n.Status != api.NodeStatusDown || n.StatusUpdatedAt != 12345 || n.ModifyIndex != idx || n.CreateIndex != 1 {
					t.Fatalf("node: %+v", n)
				}
				if n.Resources.CPU != 16000 || n.Labels["rack"] != "r1" {
					t.Fatalf("status update lost other fields: %+v", n)
				}
				if getEval(t, s, "e4") == nil {
					t.Fatal("eval not written")
				}
			},
		},
		{
			name:    "node status update of an unknown node",
			apply:   entry{NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "nx", Status: api.NodeStatusDown}},
			wantErr: ErrNodeNotFound,
		},
		{
			name:  "node eligibility",
			setup: []entry{regNode},
			apply: entry{NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Eligibility: api.NodeIneligible}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				n := getNode(t, s, "n1")
				if n.Eligibility != api.NodeIneligible || n.Drain || n.ModifyIndex != idx {
					t.Fatalf("node: %+v", n)
				}
			},
		},
		{
			name:  "node drain makes it ineligible",
			setup: []entry{regNode},
			apply: entry{NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(true)}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if n := getNode(t, s, "n1"); !n.Drain || n.Eligibility != api.NodeIneligible {
					t.Fatalf("node: %+v", n)
				}
			},
		},
		{
			name:  "node undrain and mark eligible",
			setup: []entry{regNode, {NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(true)}}},
			apply: entry{NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(false), Eligibility: api.NodeEligible}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if n := getNode(t, s, "n1"); n.Drain || n.Eligibility != api.NodeEligible {
					t.Fatalf("node: %+v", n)
				}
			},
		},
		{
			name:    "node eligibility of an unknown node",
			apply:   entry{NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "nx", Drain: ptr(true)}},
			wantErr: ErrNodeNotFound,
		},
		{
			name:  "node deregister",
			setup: []entry{regNode},
			apply: entry{NodeDeregisterRequestType, &NodeDeregisterRequest{NodeID: "n1"}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				if getNode(t, s, "n1") != nil || s.Index(TableNodes) != idx {
					t.Fatal("node still stored")
				}
			},
		},
		{
			name:    "node deregister of an unknown node",
			apply:   entry{NodeDeregisterRequestType, &NodeDeregisterRequest{NodeID: "nx"}},
			wantErr: ErrNodeNotFound,
		},
		{
			name:  "plan apply creates allocations",
			setup: []entry{regJob, regNode},
			apply: entry{PlanApplyRequestType, &PlanApplyRequest{Allocs: allocs("a1", "a2"), EvalID: "e1",
				Evals: []*api.Evaluation{{ID: "e1", JobID: "web", Status: api.EvalStatusComplete}}}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				for _, id := range []string{"a1", "a2"} {
					a := getAlloc(t, s, id)
					if a.CreateIndex != idx || a.ModifyIndex != idx || a.ClientStatus != api.AllocClientPending ||
						a.DesiredStatus != api.AllocDesiredRun || a.EvalID != "e1" {
						t.Fatalf("alloc %s: %+v", id, a)
					}
					if a.Job == nil || a.Job.ID != "web" || a.Job.CreateIndex != 1 || a.Job.Groups[0].Tasks[0].Image != "nginx:1.27" {
						t.Fatalf("alloc %s job: %+v", id, a.Job)
					}
				}
				a1, a2 := getAlloc(t, s, "a1"), getAlloc(t, s, "a2")
				if a1.Job != a2.Job || a1.Job != getJob(t, s, "web") {
					t.Fatal("allocations of one job version should share the stored job object")
				}
				e := getEval(t, s, "e1")
				if e.Status != api.EvalStatusComplete || e.CreateIndex != 1 || e.ModifyIndex != idx {
					t.Fatalf("eval: %+v", e)
				}
				byNode, _ := s.AllocsByNode(nil, "n1")
				byJob, _ := s.AllocsByJob(nil, "web")
				if len(byNode) != 2 || len(byJob) != 2 || byNode[0].ID != "a1" {
					t.Fatalf("by node %d, by job %d", len(byNode), len(byJob))
				}
				if s.Index(TableAllocs) != idx {
					t.Fatalf("allocs index %d", s.Index(TableAllocs))
				}
			},
		},
		{
			name: "plan apply modifies an allocation and keeps its client fields",
			setup: []entry{regJob, plan,
				{AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{running}}}},
			apply: entry{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{stopA1}, EvalID: "e9"}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				a := getAlloc(t, s, "a1")
				if a.CreateIndex != 2 || a.ModifyIndex != idx || a.DesiredStatus != api.AllocDesiredStop ||
					a.DesiredDescription != "job stopped" {
					t.Fatalf("alloc: %+v", a)
				}
				if a.ClientStatus != api.AllocClientRunning || a.ClientDescription != "started" || a.TaskStates["nginx"].Pid != 42 {
					t.Fatalf("client fields lost: %+v", a)
				}
				if a.EvalID != "e9" {
					t.Fatalf("EvalID = %q, want the plan's e9", a.EvalID)
				}
			},
		},
		{
			name: "plan apply may set client fields (lost)",
			setup: []entry{regJob, plan,
				{AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{running}}}},
			apply: entry{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{lostA1}}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				a := getAlloc(t, s, "a1")
				if a.ClientStatus != api.AllocClientLost || a.ClientDescription != "node down" {
					t.Fatalf("alloc: %+v", a)
				}
			},
		},
		{
			name:    "plan apply with an allocation without ID is refused",
			setup:   []entry{regJob},
			apply:   entry{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{{JobID: "web"}}}},
			wantErr: ErrInvalidRequest,
		},
		{
			name:  "alloc client update changes only client fields",
			setup: []entry{regJob, plan},
			apply: entry{AllocClientUpdateRequestType, &AllocClientUpdateRequest{
				Allocs: []*api.Allocation{
					{ID: "a1", ClientStatus: api.AllocClientFailed, ClientDescription: "exit 1",
						TaskStates:    map[string]*api.TaskState{"nginx": {State: api.TaskStateDead, Failed: true, ExitCode: 1}},
						DesiredStatus: api.AllocDesiredStop, NodeID: "elsewhere", JobID: "other"},
					{ID: "unknown", ClientStatus: api.AllocClientRunning},
				},
				Evals: []*api.Evaluation{testEval("e5", "web")},
			}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				a := getAlloc(t, s, "a1")
				if a.ClientStatus != api.AllocClientFailed || a.ClientDescription != "exit 1" || a.TaskStates["nginx"].ExitCode != 1 {
					t.Fatalf("client fields not applied: %+v", a)
				}
				if a.DesiredStatus != api.AllocDesiredRun || a.NodeID != "n1" || a.JobID != "web" || a.Job == nil ||
					a.CreateIndex != 2 || a.ModifyIndex != idx || a.Resources.CPU != 500 {
					t.Fatalf("non-client fields changed: %+v", a)
				}
				if getAlloc(t, s, "unknown") != nil {
					t.Fatal("update for an unknown allocation created it")
				}
				if a2 := getAlloc(t, s, "a2"); a2.ModifyIndex != 2 {
					t.Fatalf("untouched alloc modified: %+v", a2)
				}
				if getEval(t, s, "e5") == nil {
					t.Fatal("eval not written")
				}
			},
		},
		{
			name:  "eval upsert keeps CreateIndex",
			setup: []entry{regJob},
			apply: entry{EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{
				{ID: "e1", JobID: "web", Status: api.EvalStatusFailed, FailedTGAllocs: map[string]string{"web": "no node fits"}},
				testEval("e6", "web"),
			}}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				e := getEval(t, s, "e1")
				if e.Status != api.EvalStatusFailed || e.CreateIndex != 1 || e.ModifyIndex != idx || e.FailedTGAllocs["web"] != "no node fits" {
					t.Fatalf("eval: %+v", e)
				}
				if e6 := getEval(t, s, "e6"); e6.CreateIndex != idx {
					t.Fatalf("eval e6: %+v", e6)
				}
				byJob, _ := s.EvalsByJob(nil, "web")
				if len(byJob) != 2 {
					t.Fatalf("EvalsByJob = %d", len(byJob))
				}
			},
		},
		{
			name:  "scheduler config",
			apply: entry{ConfigRequestType, &SchedulerConfig{PreemptionEnabled: true, Algorithm: AlgorithmSpread}},
			check: func(t *testing.T, s *StateStore, idx uint64) {
				c := s.SchedulerConfig()
				if !c.PreemptionEnabled || c.Algorithm != AlgorithmSpread || c.ModifyIndex != idx {
					t.Fatalf("config: %+v", c)
				}
				if s.Index(TableSchedulerConfig) != idx {
					t.Fatal("config index not recorded")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(testLogger(t))
			for i, e := range tc.setup {
				mustApply(t, f, uint64(i+1), e.typ, e.req)
			}
			idx := uint64(len(tc.setup) + 1)
			before := persist(t, f)
			err := f.ApplyEntry(idx, tc.apply.typ, tc.apply.req)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("apply: err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if after := persist(t, f); string(after) != string(before) {
					t.Fatalf("a refused entry changed the state:\nbefore %s\nafter  %s", before, after)
				}
			}
			if tc.check != nil {
				tc.check(t, f.State(), idx)
			}
		})
	}
}

// TestFSMNeverModifiesStoredObjects holds pointers from the store across
// writes and checks they still show the old values.
func TestFSMNeverModifiesStoredObjects(t *testing.T) {
	f := NewFSM(testLogger(t))
	s := f.State()
	job := testJob("web", 1)
	mustApply(t, f, 1, JobRegisterRequestType, &JobRegisterRequest{Job: job})
	mustApply(t, f, 2, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
	mustApply(t, f, 3, PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", job, "n1")}})
	mustApply(t, f, 4, EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{testEval("e1", "web")}})
	oldJob, oldNode, oldAlloc, oldEval := getJob(t, s, "web"), getNode(t, s, "n1"), getAlloc(t, s, "a1"), getEval(t, s, "e1")
	snap := s.Snapshot()

	mustApply(t, f, 5, JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web"})
	mustApply(t, f, 6, NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "n1", Status: api.NodeStatusDown})
	mustApply(t, f, 7, NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(true)})
	mustApply(t, f, 8, AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{{ID: "a1", ClientStatus: api.AllocClientRunning}}})
	mustApply(t, f, 9, EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{{ID: "e1", Status: api.EvalStatusComplete}}})

	if oldJob.Stop || oldJob.ModifyIndex != 1 {
		t.Errorf("stored job changed in place: %+v", oldJob)
	}
	if oldNode.Status != api.NodeStatusReady || oldNode.Drain || oldNode.ModifyIndex != 2 {
		t.Errorf("stored node changed in place: %+v", oldNode)
	}
	if oldAlloc.ClientStatus != api.AllocClientPending || oldAlloc.ModifyIndex != 3 {
		t.Errorf("stored alloc changed in place: %+v", oldAlloc)
	}
	if oldEval.Status != api.EvalStatusPending || oldEval.ModifyIndex != 4 {
		t.Errorf("stored eval changed in place: %+v", oldEval)
	}
	// The snapshot still shows the old state, the store the new one.
	if n, _ := snap.NodeByID(nil, "n1"); n.Status != api.NodeStatusReady {
		t.Errorf("snapshot saw a later write: %+v", n)
	}
	if snap.LatestIndex() != 4 || s.LatestIndex() != 9 {
		t.Errorf("snapshot index %d, store index %d", snap.LatestIndex(), s.LatestIndex())
	}
	if n := getNode(t, s, "n1"); n.Status != api.NodeStatusDown || !n.Drain {
		t.Errorf("store node: %+v", n)
	}
}

func TestFSMPanicsOnUndecodableEntry(t *testing.T) {
	tests := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"bad json", append([]byte{byte(JobRegisterRequestType)}, "{not json"...)},
		{"unknown type", append([]byte{200}, "{}"...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(testLogger(t))
			defer func() {
				if recover() == nil {
					t.Fatal("Apply did not panic")
				}
			}()
			f.Apply(rawLog(7, tc.data))
		})
	}
}
