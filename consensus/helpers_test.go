package consensus

import (
	"bytes"
	"fmt"
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
)

// tWriter sends log lines to t.Log until the test ends; raft goroutines
// that outlive a test (they should not, but a failing test may leave some)
// then write nowhere instead of panicking.
type tWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *tWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

// testLogger routes logs to t.Log. Call it before opening nodes, so its
// cleanup (which silences it) runs after theirs.
func testLogger(t testing.TB) *slog.Logger { return testLoggerAt(t, slog.LevelInfo) }

func testLoggerAt(t testing.TB, level slog.Level) *slog.Logger {
	w := &tWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

func testJob(id string, count int) *api.Job {
	return &api.Job{
		ID: id, Name: id, Type: api.JobTypeService, Priority: 50,
		Datacenters: []string{"dc1"},
		Meta:        map[string]string{"team": "a", "tier": "web", "zone": "z1"},
		Groups: []*api.Group{{
			Name: "web", Count: count,
			Restart: &api.RestartPolicy{Attempts: 2, Mode: api.RestartModeFail},
			Tasks: []*api.Task{{
				Name: "nginx", Image: "nginx:1.27", Command: []string{"nginx", "-g", "daemon off;"},
				Env:       map[string]string{"A": "1", "B": "2", "C": "3"},
				Resources: api.Resources{CPU: 500, MemoryMB: 256},
				Ports:     []api.Port{{Name: "http", To: 80}},
			}},
		}},
		SubmitTime: 1700000000000000000,
	}
}

func testNode(id string) *api.Node {
	return &api.Node{
		ID: id, Name: "host-" + id, Datacenter: "dc1", HTTPAddr: "10.0.0.1:9473",
		Attributes: map[string]string{"kernel.name": "linux", "cpu.cores": "16"},
		Labels:     map[string]string{"rack": "r1"},
		Resources: api.NodeResources{CPU: 16000, MemoryMB: 65536, GPUs: []api.GPUDevice{
			{UUID: "GPU-" + id, Model: "H100", MemoryMiB: 81920, Healthy: true, NVLinkPeers: []string{"GPU-x"}},
		}},
	}
}

func testAlloc(id string, job *api.Job, nodeID string) *api.Allocation {
	return &api.Allocation{
		ID: id, Name: fmt.Sprintf("%s.web[0]", job.ID), JobID: job.ID, Job: job, Group: "web",
		NodeID: nodeID, NodeName: "host-" + nodeID,
		Resources:     api.Resources{CPU: 500, MemoryMB: 256},
		Ports:         []api.AllocPort{{Label: "http", Value: 23000, To: 80}},
		DesiredStatus: api.AllocDesiredRun, CreateTime: 1700000000000000001,
	}
}

func testEval(id, jobID string) *api.Evaluation {
	return &api.Evaluation{
		ID: id, JobID: jobID, Type: api.JobTypeService, Priority: 50,
		TriggeredBy: api.EvalTriggerJobRegister, Status: api.EvalStatusPending,
	}
}

// memSink is a raft.SnapshotSink over a buffer.
type memSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// persist returns the snapshot bytes of f's current state.
func persist(t testing.TB, f *FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatalf("persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Fatalf("persist left the sink closed=%v cancelled=%v", sink.closed, sink.cancelled)
	}
	return sink.Bytes()
}

func mustApply(t testing.TB, f *FSM, index uint64, typ MessageType, req any) {
	t.Helper()
	if err := f.ApplyEntry(index, typ, req); err != nil {
		t.Fatalf("apply %s at %d: %v", typ, index, err)
	}
}

func getJob(t testing.TB, s *StateStore, id string) *api.Job {
	t.Helper()
	j, err := s.JobByID(nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func getNode(t testing.TB, s *StateStore, id string) *api.Node {
	t.Helper()
	n, err := s.NodeByID(nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func getAlloc(t testing.TB, s *StateStore, id string) *api.Allocation {
	t.Helper()
	a, err := s.AllocByID(nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func getEval(t testing.TB, s *StateStore, id string) *api.Evaluation {
	t.Helper()
	e, err := s.EvalByID(nil, id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func rawLog(index uint64, data []byte) *raft.Log {
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}
