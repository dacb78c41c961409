package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berth-dev/berth/api"
)

// fakeServer answers the client routes the CLI uses with fixed data. The
// evaluation stays pending for the first evalPolls reads, as a real one
// does while the scheduler works.
type fakeServer struct {
	failed     map[string]string
	evalReads  atomic.Int32
	evalPolls  int32
	registered atomic.Pointer[api.Job]
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderIndex, "42")
	reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	alloc := &api.Allocation{ID: "0123456789abcdef", Name: "web.web[0]", JobID: "web", NodeID: "node-id-1", NodeName: "n1",
		DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning, EvalID: "eval-1",
		Resources: api.Resources{CPU: 500, MemoryMB: 256}}
	switch r.Method + " " + r.URL.Path {
	case "POST /v1/jobs":
		var req api.JobRegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			reply(api.Error{Error: err.Error()})
			return
		}
		f.registered.Store(req.Job)
		reply(api.JobRegisterResponse{EvalID: "eval-1", Index: 40})
	case "GET /v1/evaluations/eval-1":
		ev := &api.Evaluation{ID: "eval-1", JobID: "web", Status: api.EvalStatusComplete, FailedTGAllocs: f.failed}
		if f.evalReads.Add(1) <= f.evalPolls {
			ev.Status = api.EvalStatusPending
		}
		reply(ev)
	case "GET /v1/jobs":
		reply([]*api.Job{{ID: "web", Name: "web", Type: "service", Priority: 50, Status: "running", Groups: []*api.Group{{Name: "web", Count: 1}}}})
	case "GET /v1/jobs/web":
		reply(&api.Job{ID: "web", Name: "web", Type: "service", Priority: 50, Status: "running", Groups: []*api.Group{{Name: "web", Count: 1}}})
	case "GET /v1/jobs/web/allocations", "GET /v1/nodes/node-id-1/allocations":
		reply([]*api.Allocation{alloc})
	case "GET /v1/nodes":
		reply([]*api.Node{{ID: "node-id-1", Name: "n1", Datacenter: "dc1", Status: "ready", Eligibility: "eligible",
			Resources: api.NodeResources{CPU: 16000, MemoryMB: 65536, GPUs: []api.GPUDevice{{Model: "H100"}, {Model: "H100"}}}}})
	case "GET /v1/nodes/n1":
		reply(&api.Node{ID: "node-id-1", Name: "n1", Status: "ready", Resources: api.NodeResources{CPU: 16000, MemoryMB: 65536}})
	case "POST /v1/nodes/node-id-1/eligibility", "POST /v1/nodes/node-id-1/drain":
		reply(api.WriteResponse{Index: 43})
	case "GET /v1/operator/raft/peers":
		reply([]api.RaftPeer{{ID: "s1", Address: "127.0.0.1:9471", Leader: true, Voter: true}})
	case "GET /v1/members":
		reply([]api.Member{{Name: "s1", Addr: "127.0.0.1:9472", Role: "server", Status: "alive", Leader: true}})
	default:
		w.WriteHeader(404)
		reply(api.Error{Error: "not found: " + r.URL.Path})
	}
}

// runCLI runs the command line against addr and returns stdout and the
// error the root command would print.
func runCLI(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	t.Setenv(api.EnvAddr, addr)
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func writeJobFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "web.yaml")
	spec := "name: web\ngroups:\n- name: web\n  count: 1\n  tasks:\n  - name: t\n    image: busybox\n    resources: {cpu: 500, memory: 256}\n"
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLIAgainstFakeServer(t *testing.T) {
	file := writeJobFile(t)
	tests := []struct {
		name    string
		fake    *fakeServer
		args    []string
		want    []string // substrings of stdout
		wantErr string   // substring of the error, "" for success
	}{
		{name: "job run waits for placement", fake: &fakeServer{evalPolls: 2}, args: []string{"job", "run", file},
			want: []string{`Job "web" registered`, "Placed 1 allocation(s)", "01234567", "web.web[0]", "n1", "running"}},
		{name: "job run detached", fake: &fakeServer{evalPolls: 100}, args: []string{"job", "run", "-d", file},
			want: []string{`Job "web" registered (evaluation eval-1, index 40)`}},
		{name: "job run placement failure", fake: &fakeServer{failed: map[string]string{"web": "no node fits: memory exhausted on 3 nodes"}},
			args: []string{"job", "run", file}, wantErr: `job "web": placement failed: group "web": no node fits: memory exhausted on 3 nodes`},
		{name: "job run bad file", fake: &fakeServer{}, args: []string{"job", "run", "/nonexistent.yaml"}, wantErr: "no such file"},
		{name: "job ls", fake: &fakeServer{}, args: []string{"job", "ls"},
			want: []string{"ID", "TYPE", "PRIORITY", "web", "service", "50", "running"}},
		{name: "job status", fake: &fakeServer{}, args: []string{"job", "status", "web"},
			want: []string{"ID", "= web", "Allocations", "web.web[0]"}},
		{name: "job status missing", fake: &fakeServer{}, args: []string{"job", "status", "nope"}, wantErr: `job "nope": not found: /v1/jobs/nope (HTTP 404)`},
		{name: "node ls", fake: &fakeServer{}, args: []string{"node", "ls"},
			want: []string{"NAME", "n1", "ready", "eligible", "16", "64GiB", "2×H100"}},
		{name: "node inspect", fake: &fakeServer{}, args: []string{"node", "inspect", "n1"},
			want: []string{"node-id-1", "0.5 / 16 cores allocated", "web.web[0]"}},
		{name: "node eligibility", fake: &fakeServer{}, args: []string{"node", "eligibility", "n1", "--disable"},
			want: []string{`Node "n1" (node-id-) is now ineligible (index 43)`}},
		{name: "node eligibility needs a flag", fake: &fakeServer{}, args: []string{"node", "eligibility", "n1"},
			wantErr: "exactly one of --enable or --disable"},
		{name: "node drain", fake: &fakeServer{}, args: []string{"node", "drain", "n1"}, want: []string{"drain enabled"}},
		{name: "raft peers", fake: &fakeServer{}, args: []string{"operator", "raft", "list-peers"},
			want: []string{"s1", "127.0.0.1:9471", "leader"}},
		{name: "bad format", fake: &fakeServer{}, args: []string{"job", "ls", "--format", "xml"}, wantErr: `invalid --format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.fake)
			defer srv.Close()
			out, err := runCLI(t, srv.URL, tt.args...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q\noutput:\n%s", err, tt.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("err = %v\noutput:\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCLIJSONOutputParses(t *testing.T) {
	srv := httptest.NewServer(&fakeServer{})
	defer srv.Close()
	file := writeJobFile(t)
	tests := []struct {
		name string
		args []string
		into any
	}{
		{"job ls", []string{"job", "ls", "--format", "json"}, &[]*api.Job{}},
		{"job status", []string{"job", "status", "web", "--format", "json"}, &jobStatusResult{}},
		{"job run", []string{"job", "run", file, "--format", "json"}, &jobRunResult{}},
		{"node ls", []string{"node", "ls", "--format", "json"}, &[]*api.Node{}},
		{"node inspect", []string{"node", "inspect", "n1", "--format", "json"}, &nodeInspectResult{}},
		{"members", []string{"server", "members", "--format", "json"}, &[]api.Member{}},
		{"raft peers", []string{"operator", "raft", "list-peers", "--format", "json"}, &[]api.RaftPeer{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runCLI(t, srv.URL, tt.args...)
			if err != nil {
				t.Fatalf("err = %v\n%s", err, out)
			}
			dec := json.NewDecoder(strings.NewReader(out))
			dec.DisallowUnknownFields()
			if err := dec.Decode(tt.into); err != nil {
				t.Fatalf("output is not the expected JSON: %v\n%s", err, out)
			}
		})
	}
}

func TestCLIUnreachableServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	addr := srv.URL
	srv.Close()
	_, err := runCLI(t, addr, "job", "ls")
	if err == nil {
		t.Fatal("job ls against a closed port succeeded")
	}
	for _, w := range []string{strings.TrimPrefix(addr, "http://"), "berth dev", "BERTH_ADDR"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("error is not one line: %q", err)
	}
}
