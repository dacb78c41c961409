package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// testLogger routes logs to t.Log; BERTH_TEST_LOG=debug|info shows more
// than warnings.
func testLogger(t *testing.T) *slog.Logger {
	lvl := slog.LevelWarn
	switch os.Getenv("BERTH_TEST_LOG") {
	case "debug":
		lvl = slog.LevelDebug
	case "info":
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: lvl}))
}

func testConfig(t *testing.T, name string) Config {
	return Config{
		NodeName:        name,
		DataDir:         t.TempDir(),
		BindAddr:        "127.0.0.1",
		BootstrapExpect: 1,
		Logger:          testLogger(t).With("srv", name),
		HeartbeatTTL:    time.Second,
	}
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	return s
}

func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", within, what)
}

func client(t *testing.T, s *Server) *api.Client {
	c, err := api.NewClient("http://" + s.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.SetHTTPClient(&http.Client{Timeout: 30 * time.Second})
	return c
}

// startLeader starts a single server and waits until it leads and its
// leader loops run.
func startLeader(t *testing.T, mutate func(*Config)) (*Server, *api.Client) {
	cfg := testConfig(t, "s1")
	if mutate != nil {
		mutate(&cfg)
	}
	s := startServer(t, cfg)
	waitUntil(t, 10*time.Second, "leadership", func() bool {
		s.leaderMu.Lock()
		defer s.leaderMu.Unlock()
		return s.leading
	})
	return s, client(t, s)
}

func simNode(id string, cpu, mem int) *api.Node {
	return &api.Node{ID: id, Name: "name-" + id, Attributes: map[string]string{"kernel.name": "linux"},
		Resources: api.NodeResources{CPU: cpu, MemoryMB: mem}}
}

// heartbeater keeps nodes alive until stopped, as an agent would.
type heartbeater struct {
	mu      sync.Mutex
	silent  map[string]bool
	stop    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup
}

func heartbeat(t *testing.T, c *api.Client, every time.Duration, ids ...string) *heartbeater {
	h := &heartbeater{silent: map[string]bool{}, stop: make(chan struct{})}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-tk.C:
			}
			for _, id := range ids {
				h.mu.Lock()
				silent := h.silent[id]
				h.mu.Unlock()
				if !silent {
					_, _ = c.Nodes().Heartbeat(id)
				}
			}
		}
	}()
	t.Cleanup(h.Stop)
	return h
}

func (h *heartbeater) Silence(id string) { h.mu.Lock(); h.silent[id] = true; h.mu.Unlock() }
func (h *heartbeater) Stop()             { h.stopped.Do(func() { close(h.stop); h.wg.Wait() }) }

func registerNodes(t *testing.T, c *api.Client, nodes ...*api.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, err := c.Nodes().Register(n); err != nil {
			t.Fatalf("register %s: %v", n.ID, err)
		}
	}
}

func simpleJob(name string, count, cpu, mem int) *api.Job {
	return &api.Job{Name: name, Groups: []*api.Group{{Name: "g", Count: count, Tasks: []*api.Task{{
		Name: "t", Image: "busybox:latest", Command: []string{"sleep", "1000"},
		Resources: api.Resources{CPU: cpu, MemoryMB: mem}}}}}}
}

func liveAllocs(allocs []*api.Allocation) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range allocs {
		if a.DesiredStatus == api.AllocDesiredRun && !a.Terminal() {
			out = append(out, a)
		}
	}
	return out
}

func jobAllocs(t *testing.T, c *api.Client, job string) []*api.Allocation {
	t.Helper()
	allocs, _, err := c.Jobs().Allocations(job, nil)
	if err != nil {
		t.Fatalf("allocations of %s: %v", job, err)
	}
	return allocs
}

func waitLive(t *testing.T, c *api.Client, job string, n int) []*api.Allocation {
	t.Helper()
	var live []*api.Allocation
	waitUntil(t, 10*time.Second, fmt.Sprintf("%d live allocations of %s", n, job), func() bool {
		live = liveAllocs(jobAllocs(t, c, job))
		return len(live) == n
	})
	return live
}

// checkNoOvercommit asserts invariant 2 on the server's state.
func checkNoOvercommit(t *testing.T, s *Server) {
	t.Helper()
	st := s.raft.State()
	nodes, _ := st.Nodes(nil)
	for _, n := range nodes {
		allocs, _ := st.AllocsByNode(nil, n.ID)
		cpu, mem := 0, 0
		for _, a := range allocs {
			if a.Terminal() {
				continue
			}
			cpu += a.Resources.CPU
			mem += a.Resources.MemoryMB
		}
		if cpu > n.Resources.CPU || mem > n.Resources.MemoryMB {
			t.Fatalf("node %s overcommitted: cpu %d/%d memory %d/%d", n.ID, cpu, n.Resources.CPU, mem, n.Resources.MemoryMB)
		}
	}
}

func rawRequest(t *testing.T, s *Server, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestSingleServerPlacesJob(t *testing.T) {
	s, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192), simNode("n2", 4000, 8192), simNode("n3", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1", "n2", "n3")

	resp, err := c.Jobs().Register(simpleJob("web", 5, 1000, 1024))
	if err != nil {
		t.Fatal(err)
	}
	if resp.EvalID == "" || resp.Index == 0 {
		t.Fatalf("register response %+v", resp)
	}
	live := waitLive(t, c, "web", 5)
	for _, a := range live {
		if a.NodeID == "" || a.Job == nil || a.CreateTime == 0 {
			t.Fatalf("allocation missing fields: %+v", a)
		}
	}
	checkNoOvercommit(t, s)
	ev, _, err := c.Evaluations().Info(resp.EvalID, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "eval complete", func() bool {
		ev, _, _ = c.Evaluations().Info(resp.EvalID, nil)
		return ev.Status == api.EvalStatusComplete
	})
	job, _, err := c.Jobs().Info("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	if job.SubmitTime == 0 || job.Status != api.JobStatusPending {
		t.Fatalf("job = status %q submit %d, want pending with a submit time", job.Status, job.SubmitTime)
	}
	// Agents report running: the job is running.
	var upd []*api.Allocation
	for _, a := range live {
		upd = append(upd, &api.Allocation{ID: a.ID, ClientStatus: api.AllocClientRunning})
	}
	if _, err := c.Allocations().UpdateStatus(upd); err != nil {
		t.Fatal(err)
	}
	job, _, _ = c.Jobs().Info("web", nil)
	if job.Status != api.JobStatusRunning {
		t.Fatalf("job status %q, want running", job.Status)
	}

	// Stop: every allocation is told to stop, and the job reads dead once
	// the agents report them complete.
	if _, err := c.Jobs().Deregister("web", false); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "allocations desired stop", func() bool {
		for _, a := range jobAllocs(t, c, "web") {
			if a.DesiredStatus == api.AllocDesiredRun {
				return false
			}
		}
		return true
	})
	upd = upd[:0]
	for _, a := range live {
		upd = append(upd, &api.Allocation{ID: a.ID, ClientStatus: api.AllocClientComplete})
	}
	if _, err := c.Allocations().UpdateStatus(upd); err != nil {
		t.Fatal(err)
	}
	job, _, _ = c.Jobs().Info("web", nil)
	if !job.Stop || job.Status != api.JobStatusDead {
		t.Fatalf("stopped job: stop=%v status=%q, want dead", job.Stop, job.Status)
	}
	if _, err := c.Jobs().Deregister("web", true); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Jobs().Info("web", nil); !isStatus(err, 404) {
		t.Fatalf("purged job: %v, want 404", err)
	}
	if _, err := c.Jobs().Deregister("nope", false); !isStatus(err, 404) {
		t.Fatalf("stop of unknown job: %v, want 404", err)
	}
}

func isStatus(err error, code int) bool {
	se, ok := err.(*api.StatusError)
	return ok && se.Code == code
}

func TestBlockingQueryWakesOnPlacement(t *testing.T) {
	_, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	allocs, meta, err := c.Nodes().Allocations("n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 0 || meta.LastIndex == 0 {
		t.Fatalf("fresh node: %d allocs, index %d", len(allocs), meta.LastIndex)
	}
	type result struct {
		allocs []*api.Allocation
		index  uint64
		took   time.Duration
		err    error
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		a, m, err := c.Nodes().Allocations("n1", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 20 * time.Second})
		r := result{allocs: a, took: time.Since(start), err: err}
		if m != nil {
			r.index = m.LastIndex
		}
		done <- r
	}()
	select {
	case r := <-done:
		t.Fatalf("blocking query returned before anything changed: %+v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := c.Jobs().Register(simpleJob("b", 2, 100, 64)); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.allocs) != 2 || r.index <= meta.LastIndex || r.took > 10*time.Second {
		t.Fatalf("woke with %d allocs, index %d (was %d) after %s", len(r.allocs), r.index, meta.LastIndex, r.took)
	}
	// A wait that expires returns the unchanged result.
	start := time.Now()
	a, m, err := c.Nodes().Allocations("n1", &api.QueryOptions{WaitIndex: r.index, WaitTime: 200 * time.Millisecond})
	if err != nil || len(a) != 2 || m.LastIndex != r.index || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("expired wait: %d allocs, index %d, err %v, after %s", len(a), m.LastIndex, err, time.Since(start))
	}

	// Purging the job deletes its allocations; an agent blocked on its
	// node's list must wake and see them gone (it then removes the
	// containers).
	go func() {
		start := time.Now()
		a, m, err := c.Nodes().Allocations("n1", &api.QueryOptions{WaitIndex: r.index, WaitTime: 20 * time.Second})
		res := result{allocs: a, took: time.Since(start), err: err}
		if m != nil {
			res.index = m.LastIndex
		}
		done <- res
	}()
	time.Sleep(200 * time.Millisecond)
	if _, err := c.Jobs().Deregister("b", true); err != nil {
		t.Fatal(err)
	}
	p := <-done
	if p.err != nil || len(p.allocs) != 0 || p.index <= r.index || p.took > 10*time.Second {
		t.Fatalf("after purge: %d allocs, index %d (was %d), err %v, after %s", len(p.allocs), p.index, r.index, p.err, p.took)
	}
}

func TestHTTPIndexHeaderAndErrors(t *testing.T) {
	s, c := startLeader(t, nil)
	registerNodes(t, c, simNode("abc123", 1000, 1000))
	tests := []struct {
		name, method, path, body string
		code                     int
		errHas                   string
	}{
		{"jobs", "GET", "/v1/jobs", "", 200, ""},
		{"unknown job", "GET", "/v1/jobs/nope", "", 404, "nope"},
		{"unknown alloc", "GET", "/v1/allocations/nope", "", 404, "nope"},
		{"unknown eval", "GET", "/v1/evaluations/nope", "", 404, "nope"},
		{"node by name", "GET", "/v1/nodes/name-abc123", "", 200, ""},
		{"node by prefix", "GET", "/v1/nodes/abc", "", 200, ""},
		{"unknown node", "GET", "/v1/nodes/zzz", "", 404, "zzz"},
		{"bad index", "GET", "/v1/jobs?index=x", "", 400, "index"},
		{"bad wait", "GET", "/v1/jobs?index=1&wait=soon", "", 400, "wait"},
		{"leader", "GET", "/v1/status/leader", "", 200, ""},
		{"peers", "GET", "/v1/operator/raft/peers", "", 200, ""},
		{"members", "GET", "/v1/members", "", 200, ""},
		{"health", "GET", "/v1/agent/health", "", 200, ""},
		{"metrics", "GET", "/v1/metrics", "", 200, ""},
		{"node without id", "POST", "/v1/nodes/register", `{"node":{"name":"x"}}`, 400, "node.id"},
		{"node name taken", "POST", "/v1/nodes/register", `{"node":{"id":"other","name":"name-abc123"}}`, 409, "node.name"},
		{"heartbeat unknown node", "PUT", "/v1/nodes/zzz/heartbeat", "", 404, "register"},
		{"alloc status bad", "PUT", "/v1/allocations/status", `{"allocs":[{"id":"a","client_status":"dancing"}]}`, 400, "client_status"},
		{"remove unknown peer", "DELETE", "/v1/operator/raft/peers?id=zzz", "", 404, "zzz"},
		{"remove peer without id", "DELETE", "/v1/operator/raft/peers", "", 400, "id"},
		{"drain bad body", "POST", "/v1/nodes/abc123/drain", `{"enable":"yes"}`, 400, "enable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := rawRequest(t, s, tc.method, tc.path, tc.body)
			if code != tc.code {
				t.Fatalf("status %d, want %d: %s", code, tc.code, body)
			}
			if hdr.Get(api.HeaderIndex) == "" {
				t.Fatalf("no %s header", api.HeaderIndex)
			}
			if tc.errHas != "" {
				var e api.Error
				if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.errHas) {
					t.Fatalf("error body %q does not mention %q", body, tc.errHas)
				}
			}
		})
	}
	_, _, body := rawRequest(t, s, "GET", "/v1/metrics", "")
	for _, m := range []string{"berth_raft_leader 1", "berth_plan_apply_seconds", "berth_evals_total", "berth_heartbeats_total"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

func TestBadJobsAreRefused(t *testing.T) {
	s, c := startLeader(t, nil)
	if _, err := c.Jobs().Register(simpleJob("good", 1, 100, 64)); err != nil {
		t.Fatal(err)
	}
	before, _, _ := c.Jobs().Info("good", nil)
	task := func(extra string) string {
		return `{"job":{"name":"good","groups":[{"name":"g","count":1,"tasks":[{"name":"t","image":"busybox"` + extra + `}]}]}}`
	}
	tests := []struct {
		name, body, field string
	}{
		{"unknown field", `{"job":{"name":"good","colour":"red","groups":[]}}`, "colour"},
		{"unknown task field", task(`,"imagee":"x"`), "imagee"},
		{"negative memory", task(`,"resources":{"memory":-5}`), "memory"},
		{"negative cpu", task(`,"resources":{"cpu":-1}`), "cpu"},
		{"empty image", `{"job":{"name":"good","groups":[{"name":"g","tasks":[{"name":"t","image":""}]}]}}`, "image"},
		{"bad operator", `{"job":{"name":"good","constraints":[{"attribute":"${node.label.rack}","operator":"~~","value":"r1"}],"groups":[{"name":"g","tasks":[{"name":"t","image":"busybox"}]}]}}`, "operator"},
		{"count out of range", `{"job":{"name":"good","groups":[{"name":"g","count":-1,"tasks":[{"name":"t","image":"busybox"}]}]}}`, "count"},
		{"huge count", `{"job":{"name":"good","groups":[{"name":"g","count":100000000,"tasks":[{"name":"t","image":"busybox"}]}]}}`, "count"},
		{"wrong type", `{"job":{"name":"good","groups":[{"name":"g","count":"three","tasks":[]}]}}`, "count"},
		{"no job", `{}`, "job"},
		{"not json", `{"job":`, "body"},
		{"trailing data", `{"job":{"name":"x","groups":[]}} {}`, "after"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := rawRequest(t, s, "POST", "/v1/jobs", tc.body)
			if code != 400 {
				t.Fatalf("status %d, want 400: %s", code, body)
			}
			if hdr.Get(api.HeaderIndex) == "" {
				t.Fatal("no index header on error")
			}
			var e api.Error
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Error, tc.field) {
				t.Fatalf("error %q does not name %q", body, tc.field)
			}
		})
	}
	after, _, _ := c.Jobs().Info("good", nil)
	if after.ModifyIndex != before.ModifyIndex || after.Version != before.Version {
		t.Fatalf("stored job changed by refused submissions: %+v -> %+v", before, after)
	}
	jobs, _, _ := c.Jobs().List(nil)
	if len(jobs) != 1 {
		t.Fatalf("%d jobs stored, want 1", len(jobs))
	}
	// The dry run validates the same way and writes nothing.
	code, _, body := rawRequest(t, s, "POST", "/v1/jobs/good/plan", task(`,"resources":{"memory":-5}`))
	if code != 400 || !strings.Contains(body, "memory") {
		t.Fatalf("plan of bad job: %d %s", code, body)
	}
}
