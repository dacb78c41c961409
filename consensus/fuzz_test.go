package consensus

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// FuzzRestore feeds arbitrary bytes to Restore: a damaged snapshot must give
// an error and leave the state as it was, never panic.
func FuzzRestore(f *testing.F) {
	fsm := NewFSM(nil)
	job := testJob("web", 2)
	for i, e := range []entry{
		{JobRegisterRequestType, &JobRegisterRequest{Job: job, Eval: testEval("e1", "web")}},
		{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")}},
		{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", job, "n1"), testAlloc("a2", job, "n1")}}},
		{ConfigRequestType, &SchedulerConfig{Algorithm: AlgorithmSpread}},
	} {
		if err := fsm.ApplyEntry(uint64(i+1), e.typ, e.req); err != nil {
			f.Fatal(err)
		}
	}
	f.Add(persist(f, fsm))
	f.Add([]byte(`{"t":"alloc","k":1,"v":{"id":"a"}}`))
	f.Add([]byte(`{"t":"alloc_job","k":1,"v":{"id":"j"}}` + "\n" + `{"t":"alloc","k":1,"v":{"id":"a"}}`))
	f.Add([]byte(`{"t":"index","v":{"Key":""}}`))
	f.Add([]byte(`{"t":"node","v":null}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := NewFSM(nil)
		if err := g.ApplyEntry(1, NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("keep")}); err != nil {
			t.Fatal(err)
		}
		if err := g.Restore(readCloser(data)); err != nil {
			if n, _ := g.State().NodeByID(nil, "keep"); n == nil {
				t.Fatal("a failed restore changed the state")
			}
			return
		}
		// What was restored persists and restores again to the same bytes.
		out := persist(t, g)
		h := NewFSM(nil)
		if err := h.Restore(readCloser(out)); err != nil {
			t.Fatalf("re-restoring a persisted snapshot: %v", err)
		}
		if again := persist(t, h); string(again) != string(out) {
			t.Fatalf("persist is not stable:\n%s", firstDiff(out, again))
		}
	})
}

// FuzzFSMApply feeds arbitrary entries to Apply. Apply may refuse them or
// panic on purpose (an undecodable entry), but never crash with a runtime
// error such as a nil dereference.
func FuzzFSMApply(f *testing.F) {
	for _, e := range []entry{
		{JobRegisterRequestType, &JobRegisterRequest{Job: testJob("web", 1), Eval: testEval("e1", "web")}},
		{JobDeregisterRequestType, &JobDeregisterRequest{JobID: "web", Purge: true}},
		{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")}},
		{NodeUpdateStatusRequestType, &NodeUpdateStatusRequest{NodeID: "n1", Status: "down"}},
		{NodeUpdateEligibilityRequestType, &NodeUpdateEligibilityRequest{NodeID: "n1", Drain: ptr(true)}},
		{EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{testEval("e2", "web")}}},
		{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", testJob("web", 1), "n1")}}},
		{AllocClientUpdateRequestType, &AllocClientUpdateRequest{Allocs: []*api.Allocation{{ID: "a1", ClientStatus: "running"}}}},
		{NodeDeregisterRequestType, &NodeDeregisterRequest{NodeID: "n1"}},
		{ConfigRequestType, &SchedulerConfig{PreemptionEnabled: true}},
	} {
		data, err := encodeEntry(e.typ, e.req)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte{byte(PlanApplyRequestType), 'n', 'u', 'l', 'l'})
	f.Add([]byte(`{"evals":[null]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM(nil)
		setup := []entry{
			{JobRegisterRequestType, &JobRegisterRequest{Job: testJob("web", 1)}},
			{NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")}},
			{PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{testAlloc("a1", testJob("web", 1), "n1")}}},
		}
		for i, e := range setup {
			if err := fsm.ApplyEntry(uint64(i+1), e.typ, e.req); err != nil {
				t.Fatal(err)
			}
		}
		defer func() {
			r := recover()
			if r == nil {
				return
			}
			if _, isRuntime := r.(runtime.Error); isRuntime || !strings.HasPrefix(fmt.Sprint(r), "consensus: ") {
				t.Fatalf("Apply crashed: %v", r)
			}
		}()
		if resp := fsm.Apply(rawLog(10, data)); resp != nil {
			if _, ok := resp.(error); !ok {
				t.Fatalf("Apply returned %T, want an error or nil", resp)
			}
		}
	})
}
