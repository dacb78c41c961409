package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorder is a fake server that records each request and answers from a
// table keyed by "METHOD path".
type recorder struct {
	mu       sync.Mutex
	requests []recorded
	answers  map[string]answer
}

type recorded struct {
	Method, Path, Query string
	Body                []byte
}

type answer struct {
	code  int
	index uint64
	body  any
	raw   string
}

func newRecorder(t *testing.T, answers map[string]answer) (*recorder, *Client) {
	t.Helper()
	r := &recorder{answers: answers}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return r, c
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, recorded{req.Method, req.URL.Path, req.URL.RawQuery, b})
	a, ok := r.answers[req.Method+" "+req.URL.Path]
	r.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(Error{Error: "no route " + req.URL.Path})
		return
	}
	if a.index > 0 {
		w.Header().Set(HeaderIndex, itoa(a.index))
	}
	if a.code == 0 {
		a.code = http.StatusOK
	}
	w.WriteHeader(a.code)
	if a.raw != "" {
		_, _ = io.WriteString(w, a.raw)
		return
	}
	_ = json.NewEncoder(w).Encode(a.body)
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

func (r *recorder) last(t *testing.T) recorded {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		t.Fatal("no request reached the server")
	}
	return r.requests[len(r.requests)-1]
}

func TestNewClientAddress(t *testing.T) {
	tests := []struct {
		name, in, env, want string
		wantErr             bool
	}{
		{name: "default", want: DefaultAddr},
		{name: "env", env: "http://10.0.0.1:1234", want: "http://10.0.0.1:1234"},
		{name: "explicit beats env", in: "http://a:1", env: "http://b:2", want: "http://a:1"},
		{name: "host:port", in: "127.0.0.1:9999", want: "http://127.0.0.1:9999"},
		{name: "no port", in: "http://example.org", want: "http://example.org:9470"},
		{name: "trailing slash", in: "http://h:1/", want: "http://h:1"},
		{name: "https", in: "https://h:443", want: "https://h:443"},
		{name: "bad scheme", in: "ftp://h:1", wantErr: true},
		{name: "no host", in: "http://", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvAddr, tt.env)
			c, err := NewClient(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadAddress) {
					t.Fatalf("NewClient(%q) err = %v, want ErrBadAddress", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Address() != tt.want {
				t.Fatalf("Address() = %q, want %q", c.Address(), tt.want)
			}
		})
	}
}

func TestClientRoutes(t *testing.T) {
	job := &Job{ID: "web", Name: "web", Groups: []*Group{{Name: "web", Count: 2}}}
	node := &Node{ID: "n1", Name: "node-1"}
	alloc := &Allocation{ID: "a1", JobID: "web", NodeID: "n1"}
	r, c := newRecorder(t, map[string]answer{
		"POST /v1/jobs":                  {body: JobRegisterResponse{EvalID: "e1", Index: 7}},
		"POST /v1/jobs/web/plan":         {body: JobPlanResponse{Placements: map[string]int{"web": 2}}},
		"GET /v1/jobs":                   {index: 9, body: []*Job{job}},
		"GET /v1/jobs/web":               {index: 9, body: job},
		"GET /v1/jobs/web/allocations":   {index: 11, body: []*Allocation{alloc}},
		"DELETE /v1/jobs/web":            {body: JobDeregisterResponse{EvalID: "e2", Index: 12}},
		"POST /v1/nodes/register":        {body: NodeRegisterResponse{HeartbeatTTL: Duration(2 * time.Second), Index: 3}},
		"PUT /v1/nodes/n1/heartbeat":     {body: NodeRegisterResponse{HeartbeatTTL: Duration(2 * time.Second)}},
		"GET /v1/nodes":                  {index: 3, body: []*Node{node}},
		"GET /v1/nodes/node-1":           {index: 3, body: node},
		"GET /v1/nodes/n1/allocations":   {index: 11, body: []*Allocation{alloc}},
		"POST /v1/nodes/n1/drain":        {body: WriteResponse{Index: 13}},
		"POST /v1/nodes/n1/eligibility":  {body: WriteResponse{Index: 14}},
		"GET /v1/allocations":            {index: 11, body: []*Allocation{alloc}},
		"GET /v1/allocations/a1":         {index: 11, body: alloc},
		"PUT /v1/allocations/status":     {body: WriteResponse{Index: 15}},
		"GET /v1/evaluations":            {body: []*Evaluation{{ID: "e1"}}},
		"GET /v1/evaluations/e1":         {body: &Evaluation{ID: "e1", Status: EvalStatusComplete}},
		"GET /v1/status/leader":          {body: "127.0.0.1:9471"},
		"GET /v1/status/peers":           {body: []string{"127.0.0.1:9471"}},
		"GET /v1/operator/raft/peers":    {body: []RaftPeer{{ID: "s1", Leader: true, Voter: true}}},
		"DELETE /v1/operator/raft/peers": {body: WriteResponse{Index: 16}},
		"GET /v1/members":                {body: []Member{{Name: "s1", Role: "server"}}},
		"GET /v1/agent/health":           {body: Health{OK: true, Role: "server"}},
		"DELETE /v1/jobs/empty":          {code: 204, raw: " "},
	})

	t.Run("register", func(t *testing.T) {
		resp, err := c.Jobs().Register(job)
		if err != nil || resp.EvalID != "e1" || resp.Index != 7 {
			t.Fatalf("Register = %+v, %v", resp, err)
		}
		var body JobRegisterRequest
		if err := json.Unmarshal(r.last(t).Body, &body); err != nil || body.Job.Name != "web" {
			t.Fatalf("server got body %s (%v)", r.last(t).Body, err)
		}
	})
	t.Run("plan", func(t *testing.T) {
		resp, err := c.Jobs().Plan(&Job{Name: "web"})
		if err != nil || resp.Placements["web"] != 2 {
			t.Fatalf("Plan = %+v, %v", resp, err)
		}
	})
	t.Run("list with meta", func(t *testing.T) {
		jobs, meta, err := c.Jobs().List(nil)
		if err != nil || len(jobs) != 1 || meta.LastIndex != 9 {
			t.Fatalf("List = %v, %+v, %v", jobs, meta, err)
		}
	})
	t.Run("blocking query options", func(t *testing.T) {
		_, meta, err := c.Jobs().Allocations("web", &QueryOptions{WaitIndex: 10, WaitTime: 5 * time.Second})
		if err != nil || meta.LastIndex != 11 {
			t.Fatalf("Allocations = %+v, %v", meta, err)
		}
		if q := r.last(t).Query; q != "index=10&wait=5s" {
			t.Fatalf("query = %q, want index=10&wait=5s", q)
		}
	})
	t.Run("info", func(t *testing.T) {
		j, _, err := c.Jobs().Info("web", nil)
		if err != nil || j.ID != "web" {
			t.Fatalf("Info = %+v, %v", j, err)
		}
	})
	t.Run("deregister purge", func(t *testing.T) {
		if _, err := c.Jobs().Deregister("web", true); err != nil {
			t.Fatal(err)
		}
		if q := r.last(t).Query; q != "purge=true" {
			t.Fatalf("query = %q", q)
		}
	})
	t.Run("empty answer", func(t *testing.T) {
		resp, err := c.Jobs().Deregister("empty", false)
		if err != nil || resp.Index != 0 {
			t.Fatalf("Deregister with an empty answer = %+v, %v", resp, err)
		}
	})
	t.Run("nodes", func(t *testing.T) {
		if resp, err := c.Nodes().Register(node); err != nil || time.Duration(resp.HeartbeatTTL) != 2*time.Second {
			t.Fatalf("Register = %+v, %v", resp, err)
		}
		if _, err := c.Nodes().Heartbeat("n1"); err != nil {
			t.Fatal(err)
		}
		if len(r.last(t).Body) != 0 {
			t.Fatalf("heartbeat sent a body: %s", r.last(t).Body)
		}
		if ns, _, err := c.Nodes().List(nil); err != nil || len(ns) != 1 {
			t.Fatalf("List = %v, %v", ns, err)
		}
		if n, _, err := c.Nodes().Info("node-1", nil); err != nil || n.ID != "n1" {
			t.Fatalf("Info = %v, %v", n, err)
		}
		if as, _, err := c.Nodes().Allocations("n1", nil); err != nil || len(as) != 1 {
			t.Fatalf("Allocations = %v, %v", as, err)
		}
		if _, err := c.Nodes().Drain("n1", true); err != nil {
			t.Fatal(err)
		}
		if b := string(r.last(t).Body); !strings.Contains(b, `"enable":true`) {
			t.Fatalf("drain body %s", b)
		}
		if _, err := c.Nodes().Eligibility("n1", false); err != nil {
			t.Fatal(err)
		}
		if b := string(r.last(t).Body); !strings.Contains(b, `"eligible":false`) {
			t.Fatalf("eligibility body %s", b)
		}
	})
	t.Run("allocations and evals", func(t *testing.T) {
		if as, _, err := c.Allocations().List(nil); err != nil || len(as) != 1 {
			t.Fatalf("List = %v, %v", as, err)
		}
		if a, _, err := c.Allocations().Info("a1", nil); err != nil || a.NodeID != "n1" {
			t.Fatalf("Info = %v, %v", a, err)
		}
		if w, err := c.Allocations().UpdateStatus([]*Allocation{{ID: "a1", ClientStatus: AllocClientRunning}}); err != nil || w.Index != 15 {
			t.Fatalf("UpdateStatus = %v, %v", w, err)
		}
		if es, _, err := c.Evaluations().List(nil); err != nil || len(es) != 1 {
			t.Fatalf("Evals = %v, %v", es, err)
		}
		if e, _, err := c.Evaluations().Info("e1", nil); err != nil || e.Status != EvalStatusComplete {
			t.Fatalf("Eval = %v, %v", e, err)
		}
	})
	t.Run("status and operator", func(t *testing.T) {
		if l, err := c.Status().Leader(); err != nil || l != "127.0.0.1:9471" {
			t.Fatalf("Leader = %q, %v", l, err)
		}
		if p, err := c.Status().Peers(); err != nil || len(p) != 1 {
			t.Fatalf("Peers = %v, %v", p, err)
		}
		if p, err := c.Operator().RaftPeers(); err != nil || !p[0].Leader {
			t.Fatalf("RaftPeers = %v, %v", p, err)
		}
		if _, err := c.Operator().RemoveRaftPeer("s 2"); err != nil {
			t.Fatal(err)
		}
		if q := r.last(t).Query; q != "id=s+2" {
			t.Fatalf("query = %q", q)
		}
		if m, err := c.Members(); err != nil || m[0].Role != "server" {
			t.Fatalf("Members = %v, %v", m, err)
		}
		if h, err := c.Health(); err != nil || !h.OK {
			t.Fatalf("Health = %v, %v", h, err)
		}
	})
}

func TestClientStatusErrors(t *testing.T) {
	_, c := newRecorder(t, map[string]answer{
		"POST /v1/jobs":     {code: 400, body: Error{Error: `groups[0].count: must be between 0 and 10000`}},
		"GET /v1/jobs/gone": {code: 404, body: Error{Error: `job "gone" not found`}},
		"GET /v1/jobs/html": {code: 502, raw: "<html>bad gateway</html>"},
		"GET /v1/jobs/text": {code: 503, raw: "no leader\n"},
	})
	tests := []struct {
		name     string
		call     func() error
		code     int
		message  string
		notFound bool
	}{
		{"json error", func() error { _, err := c.Jobs().Register(&Job{Name: "x"}); return err },
			400, "groups[0].count: must be between 0 and 10000", false},
		{"not found", func() error { _, _, err := c.Jobs().Info("gone", nil); return err },
			404, `job "gone" not found`, true},
		{"html body", func() error { _, _, err := c.Jobs().Info("html", nil); return err },
			502, "GET /v1/jobs/html: Bad Gateway", false},
		{"plain text body", func() error { _, _, err := c.Jobs().Info("text", nil); return err },
			503, "no leader", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *StatusError", err, err)
			}
			if se.Code != tt.code || se.Message != tt.message {
				t.Fatalf("StatusError = %d %q, want %d %q", se.Code, se.Message, tt.code, tt.message)
			}
			if IsNotFound(err) != tt.notFound {
				t.Fatalf("IsNotFound = %v", !tt.notFound)
			}
			if !strings.Contains(err.Error(), tt.message) {
				t.Fatalf("Error() = %q lacks the message", err.Error())
			}
		})
	}
}

func TestClientUnreachable(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c, err := NewClient(addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Jobs().List(nil)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
	msg := err.Error()
	for _, want := range []string{addr, "berth dev", "BERTH_ADDR"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not mention %q", msg, want)
		}
	}
}

func TestClientContextCancelsBlockingQuery(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, _ := NewClient(srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, _, err := c.WithContext(ctx).Nodes().Allocations("n1", &QueryOptions{WaitIndex: 5, WaitTime: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Fatalf("a cancelled query is not an unreachable server: %v", err)
	}
}
