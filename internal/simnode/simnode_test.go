package simnode

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// fakeServer records registrations, heartbeats and allocation reports, and
// places one pending allocation on every node.
type fakeServer struct {
	mu         sync.Mutex
	registered map[string]*api.Node
	beats      map[string]int
	reports    map[string]string // alloc ID → client status
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set(api.HeaderIndex, "10")
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case r.Method == "POST" && r.URL.Path == "/v1/nodes/register":
		var req api.NodeRegisterRequest
		json.NewDecoder(r.Body).Decode(&req)
		f.registered[req.Node.ID] = req.Node
		json.NewEncoder(w).Encode(api.NodeRegisterResponse{HeartbeatTTL: api.Duration(200 * time.Millisecond)})
	case r.Method == "PUT" && len(parts) == 4 && parts[3] == "heartbeat":
		f.beats[parts[2]]++
		json.NewEncoder(w).Encode(api.NodeRegisterResponse{HeartbeatTTL: api.Duration(200 * time.Millisecond)})
	case r.Method == "GET" && len(parts) == 4 && parts[3] == "allocations":
		id := "alloc-" + parts[2]
		a := &api.Allocation{ID: id, NodeID: parts[2], Group: "g", DesiredStatus: api.AllocDesiredRun,
			ClientStatus: f.reports[id], Job: &api.Job{Groups: []*api.Group{{Name: "g", Tasks: []*api.Task{{Name: "t"}}}}}}
		if r.URL.Query().Get("index") != "" {
			// Nothing changes after the first read: hold the blocking query.
			f.mu.Unlock()
			select {
			case <-r.Context().Done():
			case <-time.After(100 * time.Millisecond):
			}
			f.mu.Lock()
		}
		json.NewEncoder(w).Encode([]*api.Allocation{a})
	case r.Method == "PUT" && r.URL.Path == "/v1/allocations/status":
		var req api.AllocUpdateRequest
		json.NewDecoder(r.Body).Decode(&req)
		for _, a := range req.Allocs {
			if a.TaskStates["t"] == nil || a.TaskStates["t"].State != api.TaskStateRunning {
				w.WriteHeader(400)
				json.NewEncoder(w).Encode(api.Error{Error: "task state missing"})
				return
			}
			f.reports[a.ID] = a.ClientStatus
		}
		json.NewEncoder(w).Encode(api.WriteResponse{Index: 11})
	default:
		w.WriteHeader(404)
		json.NewEncoder(w).Encode(api.Error{Error: "no route " + r.URL.Path})
	}
}

func TestFleet(t *testing.T) {
	fake := &fakeServer{registered: map[string]*api.Node{}, beats: map[string]int{}, reports: map[string]string{}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	cl, _ := api.NewClient(srv.URL)
	fleet, err := Start(context.Background(), Config{Client: cl, Count: 3, Ack: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()
	nodes := fleet.Nodes()
	if len(nodes) != 3 || nodes[0].Name != "sim-0" || nodes[0].Resources.CPU == 0 {
		t.Fatalf("nodes = %+v", nodes)
	}
	fake.mu.Lock()
	if len(fake.registered) != 3 {
		t.Fatalf("%d nodes registered, want 3", len(fake.registered))
	}
	fake.mu.Unlock()

	silent := nodes[0].ID
	if !fleet.Silence(silent) {
		t.Fatal("Silence of a live node returned false")
	}
	fake.mu.Lock()
	before := fake.beats[silent]
	fake.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for {
		fake.mu.Lock()
		beatsOK := fake.beats[nodes[1].ID] >= 3 && fake.beats[nodes[2].ID] >= 3
		acked := fake.reports["alloc-"+nodes[1].ID] == api.AllocClientRunning && fake.reports["alloc-"+nodes[2].ID] == api.AllocClientRunning
		after := fake.beats[silent]
		fake.mu.Unlock()
		if beatsOK && acked {
			if after != before {
				t.Fatalf("silenced node kept beating: %d → %d", before, after)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("beats %v, reports %v", fake.beats, fake.reports)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fleet.Acked() < 2 {
		t.Fatalf("Acked() = %d", fleet.Acked())
	}
}

func TestRealisticMix(t *testing.T) {
	gpuNodes, gpus := 0, 0
	for i := 0; i < 1000; i++ {
		r := Realistic(i)
		if r.CPU <= 0 || r.MemoryMB <= 0 {
			t.Fatalf("node %d has no capacity: %+v", i, r)
		}
		if len(r.GPUs) > 0 {
			gpuNodes++
			gpus += len(r.GPUs)
		}
	}
	if gpuNodes != 100 || gpus != 800 {
		t.Fatalf("%d GPU nodes with %d GPUs per 1000, want 100 and 800", gpuNodes, gpus)
	}
}

func TestStartNeedsClient(t *testing.T) {
	if _, err := Start(context.Background(), Config{Count: 1}); err != ErrNoClient {
		t.Fatalf("err = %v", err)
	}
}
