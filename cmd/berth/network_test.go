package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/berth-dev/berth/api"
)

// fakeNetworkNode is one ready node whose agent keeps networks in memory,
// behind the server's agent proxy routes.
type fakeNetworkNode struct {
	mu   sync.Mutex
	nets map[string]api.Network
	reqs []string
}

func (f *fakeNetworkNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	reply := func(code int, v any) {
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	if r.URL.Path == "/v1/nodes" {
		reply(200, []*api.Node{{ID: "node-id-1", Name: "n1", Status: "ready", Eligibility: "eligible"}})
		return
	}
	_, rest, ok := strings.Cut(r.URL.Path, "/agent/networks")
	if !ok {
		reply(404, api.Error{Error: "not found: " + r.URL.Path})
		return
	}
	f.reqs = append(f.reqs, r.Method+" "+rest)
	name := strings.TrimPrefix(rest, "/")
	switch {
	case r.Method == "GET" && rest == "":
		out := []api.Network{{Name: "bridge", Driver: "bridge", Subnet: "10.88.0.0/24", Gateway: "10.88.0.1", Builtin: true, Containers: []string{"a"}}}
		for _, n := range f.nets {
			out = append(out, n)
		}
		reply(200, out)
	case r.Method == "POST" && rest == "":
		var req api.NetworkCreateRequest
		json.NewDecoder(r.Body).Decode(&req)
		if _, dup := f.nets[req.Name]; dup {
			reply(409, api.Error{Error: "network: a network with that name already exists"})
			return
		}
		n := api.Network{Name: req.Name, Driver: "bridge", Subnet: req.Subnet, Gateway: "10.89.3.1", DNS: true, Containers: []string{}}
		f.nets[req.Name] = n
		reply(200, n)
	case r.Method == "POST" && rest == "/prune":
		var names []string
		for n := range f.nets {
			names = append(names, n)
		}
		f.nets = map[string]api.Network{}
		reply(200, api.PruneReport{Networks: names})
	case r.Method == "GET":
		n, ok := f.nets[name]
		if !ok {
			reply(404, api.Error{Error: "network: no such network: " + name})
			return
		}
		reply(200, n)
	case r.Method == "DELETE":
		if _, ok := f.nets[name]; !ok {
			reply(404, api.Error{Error: "network: no such network: " + name})
			return
		}
		delete(f.nets, name)
		w.WriteHeader(204)
	}
}

func TestNetworkCommands(t *testing.T) {
	f := &fakeNetworkNode{nets: map[string]api.Network{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	steps := []struct {
		name    string
		args    []string
		wantOut []string
		wantErr bool
	}{
		{name: "create", args: []string{"network", "create", "--subnet", "10.89.3.0/24", "front"}, wantOut: []string{"front"}},
		{name: "create duplicate", args: []string{"network", "create", "front"}, wantOut: []string{"already exists"}, wantErr: true},
		{name: "bad subnet is refused before any request", args: []string{"network", "create", "--subnet", "10.0.0.0/33", "x"}, wantErr: true},
		{name: "reserved name", args: []string{"network", "create", "host"}, wantErr: true},
		{name: "ls", args: []string{"network", "ls"}, wantOut: []string{"NAME", "bridge", "10.88.0.0/24", "front", "10.89.3.0/24"}},
		{name: "ls quiet", args: []string{"network", "ls", "-q"}, wantOut: []string{"bridge\nfront\n"}},
		{name: "inspect", args: []string{"network", "inspect", "front"}, wantOut: []string{`"subnet": "10.89.3.0/24"`, `"dns": true`}},
		{name: "inspect unknown", args: []string{"network", "inspect", "nope"}, wantErr: true},
		{name: "rm", args: []string{"network", "rm", "front"}, wantOut: []string{"front"}},
		{name: "rm unknown", args: []string{"network", "rm", "front"}, wantOut: []string{"no such network"}, wantErr: true},
		{name: "create another", args: []string{"network", "create", "back"}, wantOut: []string{"back"}},
		{name: "prune runs", args: []string{"network", "prune", "-f"}, wantOut: []string{"Deleted Networks:", "back"}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			out, err := runCLI(t, srv.URL, s.args...)
			if (err != nil) != s.wantErr {
				t.Fatalf("berth %v: err %v, output:\n%s", s.args, err, out)
			}
			for _, w := range s.wantOut {
				if !strings.Contains(out, w) {
					t.Fatalf("berth %v: output lacks %q:\n%s", s.args, w, out)
				}
			}
		})
	}
	for _, r := range f.reqs {
		if strings.Contains(r, "10.0.0.0/33") {
			t.Fatalf("a bad subnet reached the agent: %v", f.reqs)
		}
	}
}
