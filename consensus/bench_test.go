package consensus

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

const (
	benchNodes    = 5000
	benchPlanSize = 100
)

// uuidLike returns a 36-character ID shaped like the UUIDs servers use.
func uuidLike(prefix byte, n int) string {
	return fmt.Sprintf("%c%07x-0000-4000-8000-%012x", prefix, n>>16, n)
}

// benchPlan builds a plan of benchPlanSize new allocations of job, spread
// over the benchmark's nodes, as the plan applier would submit it.
func benchPlan(job *api.Job, seq *int) *PlanApplyRequest {
	req := &PlanApplyRequest{EvalID: uuidLike('e', *seq), Allocs: make([]*api.Allocation, benchPlanSize)}
	for i := range req.Allocs {
		*seq++
		a := testAlloc(uuidLike('a', *seq), job, uuidLike('n', *seq%benchNodes))
		a.Name = fmt.Sprintf("%s.web[%d]", job.ID, *seq)
		a.Index = *seq
		a.EvalID = req.EvalID
		req.Allocs[i] = a
	}
	req.Evals = []*api.Evaluation{{ID: req.EvalID, JobID: job.ID, Type: job.Type, Priority: job.Priority,
		TriggeredBy: api.EvalTriggerJobRegister, Status: api.EvalStatusComplete}}
	return req
}

// benchLeader opens a single bootstrapped server on a real disk with one
// registered job, and returns the job as stored (what placement embeds).
func benchLeader(b *testing.B) (*Node, *api.Job) {
	// Error level: a lone server's first election warns, and benchmark
	// logs are always printed.
	n, err := Open(Config{NodeID: "bench", DataDir: b.TempDir(), BindAddr: "127.0.0.1:0", Bootstrap: true,
		Logger: testLoggerAt(b, slog.LevelError)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !n.IsLeader() {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := n.Apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob("bench", 100000)}, 5*time.Second); err != nil {
		b.Fatal(err)
	}
	job, _ := n.State().JobByID(nil, "bench")
	return n, job
}

// BenchmarkApplyPlan commits plans of 100 allocations one after another
// through Raft on disk, as a plan applier that waits for each commit does.
func BenchmarkApplyPlan(b *testing.B) {
	n, job := benchLeader(b)
	seq := 0
	plans := make([]*PlanApplyRequest, b.N)
	for i := range plans {
		plans[i] = benchPlan(job, &seq)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := n.Apply(PlanApplyRequestType, plans[i], 10*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPlanSize)/time.Since(start).Seconds(), "allocs/s")
}

// BenchmarkApplyPlanPipelined keeps 4 plans in flight, so Raft batches
// several entries into one disk write, as a pipelining plan applier would.
func BenchmarkApplyPlanPipelined(b *testing.B) {
	n, job := benchLeader(b)
	seq := 0
	plans := make(chan *PlanApplyRequest, b.N)
	for range b.N {
		plans <- benchPlan(job, &seq)
	}
	close(plans)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for p := range plans {
				if _, err := n.Apply(PlanApplyRequestType, p, 10*time.Second); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N*benchPlanSize)/time.Since(start).Seconds(), "allocs/s")
}

// BenchmarkFSMApplyPlan is the FSM's share of a plan: decode and insert,
// without Raft or the disk.
func BenchmarkFSMApplyPlan(b *testing.B) {
	f := NewFSM(nil)
	if err := f.ApplyEntry(1, JobRegisterRequestType, &JobRegisterRequest{Job: testJob("bench", 100000)}); err != nil {
		b.Fatal(err)
	}
	job, _ := f.State().JobByID(nil, "bench")
	seq := 0
	entries := make([][]byte, b.N)
	for i := range entries {
		data, err := encodeEntry(PlanApplyRequestType, benchPlan(job, &seq))
		if err != nil {
			b.Fatal(err)
		}
		entries[i] = data
	}
	b.SetBytes(int64(len(entries[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if resp := f.Apply(rawLog(uint64(i+2), entries[i])); resp != nil {
			b.Fatal(resp)
		}
	}
	b.ReportMetric(float64(b.N*benchPlanSize)/time.Since(start).Seconds(), "allocs/s")
}

// benchState builds the scheduling benchmark's end state: 5,000 nodes and
// 100,000 allocations of 1,000 jobs.
func benchState(b *testing.B) *FSM {
	f := NewFSM(nil)
	idx := uint64(0)
	apply := func(t MessageType, req any) {
		idx++
		if err := f.ApplyEntry(idx, t, req); err != nil {
			b.Fatal(err)
		}
	}
	for i := range benchNodes {
		apply(NodeRegisterRequestType, &NodeRegisterRequest{Node: testNode(uuidLike('n', i))})
	}
	seq := 0
	for j := range 1000 {
		apply(JobRegisterRequestType, &JobRegisterRequest{Job: testJob(fmt.Sprintf("job-%04d", j), 100)})
		job, _ := f.State().JobByID(nil, fmt.Sprintf("job-%04d", j))
		apply(PlanApplyRequestType, benchPlan(job, &seq))
	}
	return f
}

// BenchmarkSnapshotReads measures what one placement pass reads from a
// snapshot of the 100k-allocation state: every node, and the allocations
// of each node.
func BenchmarkSnapshotReads(b *testing.B) {
	f := benchState(b)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		snap := f.State().Snapshot()
		total := 0
		for _, n := range snap.Nodes() {
			total += len(snap.AllocsByNode(n.ID))
		}
		if total != 100000 {
			b.Fatalf("read %d allocations", total)
		}
	}
}

// BenchmarkPersist measures writing a snapshot of the 100k-allocation state.
func BenchmarkPersist(b *testing.B) {
	f := benchState(b)
	b.ReportAllocs()
	b.ResetTimer()
	var size int
	for range b.N {
		size = len(persist(b, f))
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB")
}
