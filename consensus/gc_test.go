package consensus

import (
	"bytes"
	"errors"
	"io"
	"sort"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// gcScenario builds, from index 1, a state with:
//
//	web   service, running:      alloc web-run (running), web-old (failed), eval web-e1 complete
//	gone  service, stopped:      alloc gone-a (complete), eval gone-e1 complete
//	batch batch, every alloc done: alloc batch-a (complete), eval batch-e1 complete
//	live  batch, still running:  alloc live-a (running), eval live-e1 complete
//	block service, blocked eval: eval block-e1 blocked
//
// and returns the next free index.
func gcScenario(t *testing.T, f *FSM) uint64 {
	t.Helper()
	idx := uint64(1)
	next := func() uint64 { idx++; return idx - 1 }
	mustApply(t, f, next(), NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode("n1")})
	jobs := map[string]*api.Job{}
	for _, j := range []struct{ id, typ string }{{"web", api.JobTypeService}, {"gone", api.JobTypeService},
		{"batch", api.JobTypeBatch}, {"live", api.JobTypeBatch}, {"block", api.JobTypeService}} {
		job := testJob(j.id, 1)
		job.Type = j.typ
		jobs[j.id] = job
		mustApply(t, f, next(), JobRegisterRequestType, &JobRegisterRequest{Job: job, Eval: testEval(j.id+"-e1", j.id)})
	}
	alloc := func(id, job, client string) *api.Allocation {
		a := testAlloc(id, jobs[job], "n1")
		a.ClientStatus = client
		return a
	}
	done := func(id, job, status string) *api.Evaluation {
		e := testEval(id, job)
		e.Status = status
		return e
	}
	mustApply(t, f, next(), PlanApplyRequestType, &PlanApplyRequest{
		Allocs: []*api.Allocation{alloc("web-run", "web", api.AllocClientRunning), alloc("web-old", "web", api.AllocClientFailed)},
		Evals:  []*api.Evaluation{done("web-e1", "web", api.EvalStatusComplete)}})
	mustApply(t, f, next(), PlanApplyRequestType, &PlanApplyRequest{
		Allocs: []*api.Allocation{alloc("gone-a", "gone", api.AllocClientRunning)}})
	mustApply(t, f, next(), JobDeregisterRequestType, &JobDeregisterRequest{JobID: "gone", Eval: done("gone-e2", "gone", api.EvalStatusPending)})
	gone := alloc("gone-a", "gone", api.AllocClientComplete)
	gone.DesiredStatus = api.AllocDesiredStop
	mustApply(t, f, next(), PlanApplyRequestType, &PlanApplyRequest{Allocs: []*api.Allocation{gone},
		Evals: []*api.Evaluation{done("gone-e1", "gone", api.EvalStatusComplete), done("gone-e2", "gone", api.EvalStatusComplete)}})
	mustApply(t, f, next(), PlanApplyRequestType, &PlanApplyRequest{
		Allocs: []*api.Allocation{alloc("batch-a", "batch", api.AllocClientComplete), alloc("live-a", "live", api.AllocClientRunning)},
		Evals:  []*api.Evaluation{done("batch-e1", "batch", api.EvalStatusComplete), done("live-e1", "live", api.EvalStatusComplete)}})
	mustApply(t, f, next(), EvalUpdateRequestType, &EvalUpdateRequest{Evals: []*api.Evaluation{done("block-e1", "block", api.EvalStatusBlocked)}})
	return idx
}

func ids[T any](t *testing.T, list []T, err error, id func(T) string) []string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(list))
	for _, x := range list {
		out = append(out, id(x))
	}
	sort.Strings(out)
	return out
}

func stateIDs(t *testing.T, s *StateStore) (jobs, evals, allocs []string) {
	t.Helper()
	j, err := s.Jobs(nil)
	jobs = ids(t, j, err, func(j *api.Job) string { return j.ID })
	e, err := s.Evals(nil)
	evals = ids(t, e, err, func(e *api.Evaluation) string { return e.ID })
	a, err := s.Allocs(nil)
	allocs = ids(t, a, err, func(a *api.Allocation) string { return a.ID })
	return jobs, evals, allocs
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFSMGarbageCollection(t *testing.T) {
	const hour = int64(time.Hour)
	t0 := int64(1_800_000_000) * int64(time.Second)
	everythingLeft := struct{ jobs, evals, allocs []string }{
		[]string{"batch", "block", "gone", "live", "web"},
		[]string{"batch-e1", "block-e1", "gone-e1", "gone-e2", "live-e1", "web-e1"},
		[]string{"batch-a", "gone-a", "live-a", "web-old", "web-run"},
	}
	collected := struct{ jobs, evals, allocs []string }{
		// The dead batch job goes with its alloc and eval; the stopped
		// service job stays, without its finished alloc; the running
		// service job keeps its failed alloc (history the scheduler
		// reads); the blocked eval and everything live stay.
		[]string{"block", "gone", "live", "web"},
		[]string{"block-e1"},
		[]string{"live-a", "web-old", "web-run"},
	}
	tests := []struct {
		name string
		// earlier GC runs (now, threshold) before the one checked
		runs [][2]int64
		want struct{ jobs, evals, allocs []string }
	}{
		{"a first run knows no times: nothing is old yet", [][2]int64{{t0, hour}}, everythingLeft},
		{"a run within the threshold of the last one keeps everything", [][2]int64{{t0, hour}, {t0 + hour/2, hour}}, everythingLeft},
		{"a run a threshold after the last one collects", [][2]int64{{t0, hour}, {t0 + hour, hour}}, collected},
		{"threshold 0 collects everything finished at once", [][2]int64{{t0, 0}}, collected},
		{"a clock that went back records nothing new", [][2]int64{{t0, hour}, {t0 - hour, hour}, {t0 - hour/2, hour}}, everythingLeft},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFSM(testLogger(t))
			idx := gcScenario(t, f)
			for _, r := range tc.runs {
				mustApply(t, f, idx, GCRequestType, &GCRequest{Now: r[0], Threshold: r[1]})
				idx++
			}
			jobs, evals, allocs := stateIDs(t, f.State())
			if !sameStrings(jobs, tc.want.jobs) || !sameStrings(evals, tc.want.evals) || !sameStrings(allocs, tc.want.allocs) {
				t.Fatalf("left jobs %v evals %v allocs %v\nwant jobs %v evals %v allocs %v",
					jobs, evals, allocs, tc.want.jobs, tc.want.evals, tc.want.allocs)
			}
			// The node of the collected allocations was stamped, so its
			// agent's blocking query sees the change.
			if len(allocs) < len(everythingLeft.allocs) {
				if n := getNode(t, f.State(), "n1"); n.ModifyIndex != idx-1 {
					t.Fatalf("node ModifyIndex %d, want the GC entry's %d", n.ModifyIndex, idx-1)
				}
			}
		})
	}
}

func TestFSMGarbageCollectionRefusesBadRequests(t *testing.T) {
	f := NewFSM(nil)
	for _, req := range []*GCRequest{{Now: 0, Threshold: 1}, {Now: 5, Threshold: -1}} {
		if err := f.ApplyEntry(1, GCRequestType, req); !errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("gc %+v: got %v, want ErrInvalidRequest", req, err)
		}
	}
	if tt := f.State().Timetable(); len(tt) != 0 {
		t.Fatalf("a refused request recorded times: %v", tt)
	}
}

// TestFSMGarbageCollectionSnapshot checks that the time table survives a
// snapshot: a server restored from one collects exactly what a server
// that applied the whole log collects, and both write the same bytes.
func TestFSMGarbageCollectionSnapshot(t *testing.T) {
	t0 := int64(1_800_000_000) * int64(time.Second)
	hour := int64(time.Hour)
	a := NewFSM(nil)
	idx := gcScenario(t, a)
	mustApply(t, a, idx, GCRequestType, &GCRequest{Now: t0, Threshold: hour})
	idx++

	snap := persist(t, a)
	b := NewFSM(nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	if got, want := b.State().Timetable(), a.State().Timetable(); len(got) != 1 || got[0] != want[0] {
		t.Fatalf("restored time table %v, want %v", got, want)
	}
	for _, f := range []*FSM{a, b} {
		mustApply(t, f, idx, GCRequestType, &GCRequest{Now: t0 + hour, Threshold: hour})
	}
	ja, ea, aa := stateIDs(t, a.State())
	jb, eb, ab := stateIDs(t, b.State())
	if !sameStrings(ja, jb) || !sameStrings(ea, eb) || !sameStrings(aa, ab) || len(ea) != 1 {
		t.Fatalf("log: jobs %v evals %v allocs %v; restored: jobs %v evals %v allocs %v", ja, ea, aa, jb, eb, ab)
	}
	if !bytes.Equal(persist(t, a), persist(t, b)) {
		t.Fatal("the two servers' snapshots differ after the same GC entry")
	}
}

func TestTimetableIsBounded(t *testing.T) {
	f := NewFSM(nil)
	for i := 1; i <= maxTimetableRows+10; i++ {
		mustApply(t, f, uint64(i), GCRequestType, &GCRequest{Now: int64(i) * int64(time.Minute), Threshold: int64(time.Hour)})
	}
	tt := f.State().Timetable()
	if len(tt) != maxTimetableRows || tt[len(tt)-1].Index != maxTimetableRows+10 || tt[0].Index != 11 {
		t.Fatalf("time table has %d rows from %d to %d", len(tt), tt[0].Index, tt[len(tt)-1].Index)
	}
}
