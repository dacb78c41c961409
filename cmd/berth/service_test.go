package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

func TestFormatPorts(t *testing.T) {
	tests := []struct {
		name     string
		ports    []api.AllocPort
		nodeAddr string
		want     string
	}{
		{name: "none", want: ""},
		{name: "node address fills an empty host IP", nodeAddr: "10.0.0.5",
			ports: []api.AllocPort{{Value: 8080, To: 80, Protocol: "tcp"}}, want: "10.0.0.5:8080->80/tcp"},
		{name: "wildcard host IP takes the node address", nodeAddr: "10.0.0.5",
			ports: []api.AllocPort{{HostIP: "0.0.0.0", Value: 8080, To: 80}}, want: "10.0.0.5:8080->80/tcp"},
		{name: "a bound host IP is kept", nodeAddr: "10.0.0.5",
			ports: []api.AllocPort{{HostIP: "127.0.0.1", Value: 18080, To: 80, Protocol: "tcp"}}, want: "127.0.0.1:18080->80/tcp"},
		{name: "several, udp, joined", nodeAddr: "10.0.0.5",
			ports: []api.AllocPort{{Value: 8080, To: 80}, {Value: 5353, To: 53, Protocol: "UDP"}},
			want:  "10.0.0.5:8080->80/tcp, 10.0.0.5:5353->53/udp"},
		{name: "ipv6 node address is bracketed", nodeAddr: "fd00::5",
			ports: []api.AllocPort{{Value: 8080, To: 80}}, want: "[fd00::5]:8080->80/tcp"},
		{name: "unknown node address", ports: []api.AllocPort{{Value: 8080, To: 80}}, want: "0.0.0.0:8080->80/tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatPorts(tt.ports, tt.nodeAddr); got != tt.want {
				t.Errorf("formatPorts = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNodeIP(t *testing.T) {
	tests := []struct {
		name string
		node *api.Node
		want string
	}{
		{name: "nil node", want: ""},
		{name: "attribute", node: &api.Node{HTTPAddr: "127.0.0.1:9473", Attributes: map[string]string{nodeIPAttr: "10.0.0.5"}}, want: "10.0.0.5"},
		{name: "agent address without the attribute", node: &api.Node{HTTPAddr: "10.0.0.6:9473"}, want: "10.0.0.6"},
		{name: "wildcard attribute falls back to the agent address", node: &api.Node{HTTPAddr: "10.0.0.7:9473",
			Attributes: map[string]string{nodeIPAttr: "0.0.0.0"}}, want: "10.0.0.7"},
		{name: "wildcard everywhere", node: &api.Node{HTTPAddr: "[::]:9473"}, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nodeIP(tt.node); got != tt.want {
				t.Errorf("nodeIP = %q, want %q", got, tt.want)
			}
		})
	}
}

// serviceFake is a cluster of two nodes: the service "web" runs two
// allocations (one per node) and has a stopped third one; "adhoc" is a
// batch job with a published port (as `berth run -d -p` makes); "cron"
// publishes nothing and "old" is stopped, so neither is listed.
type serviceFake struct{}

func (serviceFake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(api.HeaderIndex, "7")
	reply := func(v any) { _ = json.NewEncoder(w).Encode(v) }
	web := &api.Job{ID: "web", Name: "web", Type: api.JobTypeService, Status: "running",
		Groups: []*api.Group{{Name: "front", Count: 2, Tasks: []*api.Task{{Name: "httpd", Image: "busybox", Command: []string{"httpd", "-f"}}}}}}
	cron := &api.Job{ID: "cron", Name: "cron", Type: "batch", Groups: []*api.Group{{Name: "c", Count: 1}}}
	adhoc := &api.Job{ID: "adhoc", Name: "adhoc", Type: "batch", Groups: []*api.Group{{Name: "adhoc", Count: 1}}}
	old := &api.Job{ID: "old", Name: "old", Type: api.JobTypeService, Stop: true, Groups: []*api.Group{{Name: "o", Count: 1}}}
	running := func(id, node, name string, ports ...api.AllocPort) *api.Allocation {
		return &api.Allocation{ID: id, Name: "web.front[0]", JobID: "web", Job: web, Group: "front", NodeID: node, NodeName: name,
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning, Ports: ports, CreateIndex: 5,
			TaskStates: map[string]*api.TaskState{"httpd": {State: api.TaskStateRunning}}}
	}
	webAllocs := []*api.Allocation{
		running("aaaaaaaa-1111", "node-1", "n1", api.AllocPort{Label: "http", Value: 8080, To: 80, Protocol: "tcp"},
			api.AllocPort{Label: "dns", Value: 5353, To: 53, Protocol: "udp"}),
		running("bbbbbbbb-2222", "node-2", "n2", api.AllocPort{Label: "http", HostIP: "0.0.0.0", Value: 8080, To: 80}),
		{ID: "cccccccc-3333", JobID: "web", Group: "front", NodeID: "node-2", DesiredStatus: api.AllocDesiredStop,
			ClientStatus: api.AllocClientComplete, Ports: []api.AllocPort{{Value: 9090, To: 80}}},
	}
	switch r.Method + " " + r.URL.Path {
	case "GET /v1/jobs":
		reply([]*api.Job{cron, old, adhoc, web})
	case "GET /v1/jobs/web":
		reply(web)
	case "GET /v1/jobs/cron":
		reply(cron)
	case "GET /v1/jobs/web/allocations":
		reply(webAllocs)
	case "GET /v1/jobs/adhoc/allocations":
		reply([]*api.Allocation{{ID: "eeeeeeee-5555", JobID: "adhoc", Group: "adhoc", DesiredStatus: api.AllocDesiredRun,
			ClientStatus: api.AllocClientRunning, NodeID: "node-2", Ports: []api.AllocPort{{Value: 7171, To: 71}}}})
	case "GET /v1/jobs/cron/allocations":
		reply([]*api.Allocation{{ID: "ffffffff", JobID: "cron", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning, NodeID: "node-1"}})
	case "GET /v1/jobs/old/allocations":
		reply([]*api.Allocation{{ID: "dddddddd", JobID: "old", DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning,
			NodeID: "node-1", Ports: []api.AllocPort{{Value: 7070, To: 70}}}})
	case "GET /v1/allocations":
		reply(webAllocs)
	case "GET /v1/nodes":
		reply([]*api.Node{
			{ID: "node-1", Name: "n1", HTTPAddr: "10.0.0.5:9473", Attributes: map[string]string{nodeIPAttr: "10.0.0.5"}},
			{ID: "node-2", Name: "n2", HTTPAddr: "10.0.0.6:9473"},
		})
	default:
		w.WriteHeader(404)
		reply(api.Error{Error: "not found: " + r.URL.Path})
	}
}

func TestServiceLs(t *testing.T) {
	srv := httptest.NewServer(serviceFake{})
	defer srv.Close()
	tests := []struct {
		name    string
		args    []string
		want    []string
		notWant []string
		wantErr string
	}{
		{name: "all services", args: []string{"service", "ls"},
			want: []string{"JOB", "GROUP", "ALLOC", "NODE", "ENDPOINTS",
				"aaaaaaaa", "n1", "10.0.0.5:8080->80/tcp, 10.0.0.5:5353->53/udp", "bbbbbbbb", "n2", "10.0.0.6:8080->80/tcp",
				"adhoc", "eeeeeeee", "10.0.0.6:7171->71/tcp"},
			notWant: []string{"cccccccc", "9090", "7070", "cron", "old"}},
		{name: "named", args: []string{"service", "ls", "web"}, want: []string{"10.0.0.6:8080->80/tcp"}, notWant: []string{"9090", "adhoc"}},
		{name: "a job that publishes nothing", args: []string{"service", "ls", "cron"}, want: []string{"ENDPOINTS"}, notWant: []string{"cron"}},
		{name: "missing", args: []string{"service", "ls", "nope"}, wantErr: `service "nope"`},
		{name: "ps shows ports", args: []string{"ps"},
			want: []string{"PORTS", "10.0.0.5:8080->80/tcp, 10.0.0.5:5353->53/udp", "10.0.0.6:8080->80/tcp"}, notWant: []string{"9090"}},
		{name: "ps -a shows a stopped one's ports", args: []string{"ps", "-a"}, want: []string{"10.0.0.6:9090->80/tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
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
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestServiceLsJSON(t *testing.T) {
	srv := httptest.NewServer(serviceFake{})
	defer srv.Close()
	out, err := runCLI(t, srv.URL, "service", "ls", "web", "--format", "json")
	if err != nil {
		t.Fatalf("err = %v\n%s", err, out)
	}
	var got []serviceEndpoint
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("output is not a list of endpoints: %v\n%s", err, out)
	}
	want := []serviceEndpoint{
		{Job: "web", Group: "front", Alloc: "aaaaaaaa-1111", Node: "n1", Address: "10.0.0.5", Port: 8080, To: 80, Protocol: "tcp"},
		{Job: "web", Group: "front", Alloc: "aaaaaaaa-1111", Node: "n1", Address: "10.0.0.5", Port: 5353, To: 53, Protocol: "udp"},
		{Job: "web", Group: "front", Alloc: "bbbbbbbb-2222", Node: "n2", Address: "10.0.0.6", Port: 8080, To: 80, Protocol: "tcp"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints =\n%+v\nwant\n%+v", got, want)
	}
	// The wire keys are the documented ones.
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) == 0 {
		t.Fatalf("decode: %v", err)
	}
	for _, k := range []string{"job", "group", "alloc", "node", "address", "port", "to", "protocol"} {
		if _, ok := raw[0][k]; !ok {
			t.Errorf("endpoint JSON lacks %q: %v", k, raw[0])
		}
	}
}

func TestInspectShowsNodePorts(t *testing.T) {
	srv := httptest.NewServer(serviceFake{})
	defer srv.Close()
	out, err := runCLI(t, srv.URL, "inspect", "bbbbbbbb")
	if err != nil {
		t.Fatalf("err = %v\n%s", err, out)
	}
	var got []ctrInspect
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 {
		t.Fatalf("inspect output: %v\n%s", err, out)
	}
	if want := []string{"10.0.0.6:8080->80/tcp"}; !reflect.DeepEqual(got[0].Ports, want) {
		t.Errorf("ports = %q, want %q", got[0].Ports, want)
	}
}
