package placement

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

func gpuJob(name string, count int, req api.GPURequest) *api.Job {
	j := mkJob(name, count, 100, 128)
	r := req
	j.Groups[0].Tasks[0].Resources.GPUs = &r
	return j
}

func TestScheduleGPUMatching(t *testing.T) {
	nodes := []*api.Node{
		mkNode("a100", 64000, 262144, withGPUs("NVIDIA A100-SXM4-40GB", 8, 40960)),
		mkNode("h100", 64000, 262144, withGPUs("NVIDIA H100 80GB HBM3", 8, 81559)),
		mkNode("cpu", 64000, 262144),
	}
	tests := []struct {
		name string
		req  api.GPURequest
		want string // node, or "" for failure
		fail string
	}{
		{name: "any gpu", req: api.GPURequest{Count: 2}, want: "a100"},
		{name: "exact model", req: api.GPURequest{Count: 1, Model: "NVIDIA H100 80GB HBM3"}, want: "h100"},
		{name: "model regexp", req: api.GPURequest{Count: 1, Model: "H100"}, want: "h100"},
		{name: "anchored regexp", req: api.GPURequest{Count: 1, Model: "^NVIDIA A100-SXM4-(40|80)GB$"}, want: "a100"},
		{name: "min memory", req: api.GPURequest{Count: 1, MinMemoryMiB: 80000}, want: "h100"},
		{name: "model mismatch", req: api.GPURequest{Count: 1, Model: "B200"},
			fail: `1 of 1 copies unplaced: 2 nodes: gpu: no device matches model "B200"; 1 node: gpu: node has no GPUs`},
		{name: "min memory mismatch", req: api.GPURequest{Count: 1, Model: "A100", MinMemoryMiB: 81920},
			fail: `1 of 1 copies unplaced: 1 node: gpu: no device has min_memory_mib 81920; 1 node: gpu: no device matches model "A100"; 1 node: gpu: node has no GPUs`},
		{name: "too many", req: api.GPURequest{Count: 9},
			fail: "1 of 1 copies unplaced: 2 nodes: gpu: node has fewer than 9 matching devices; 1 node: gpu: node has no GPUs"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := schedule(t, newFakeState(nodes), gpuJob("j", 1, tc.req), Options{})
			placed := allPlaced(p)
			if tc.want == "" {
				if len(placed) != 0 || p.FailedGroups["g"] != tc.fail {
					t.Fatalf("placed %v failed %q, want failure %q", placedNodes(p), p.FailedGroups["g"], tc.fail)
				}
				return
			}
			if len(placed) != 1 || placed[0].NodeID != tc.want {
				t.Fatalf("placed %v (failed %v), want on %s", placedNodes(p), p.FailedGroups, tc.want)
			}
			a := placed[0]
			if len(a.GPUs) != tc.req.Count || a.Resources.GPUs == nil || a.Resources.GPUs.Count != tc.req.Count {
				t.Errorf("alloc GPUs %v resources %+v, want %d devices", a.GPUs, a.Resources.GPUs, tc.req.Count)
			}
		})
	}
}

// nvlinkNode has GPUs 0-1 and 2-3 linked in pairs and 4-7 linked all to all,
// GPUs 0-3 on NUMA node 0 and 4-7 on NUMA node 1.
func nvlinkNode(id string) *api.Node {
	n := mkNode(id, 64000, 262144, withGPUs("H100", 8, 81920))
	link := func(i, j int) {
		n.Resources.GPUs[i].NVLinkPeers = append(n.Resources.GPUs[i].NVLinkPeers, n.Resources.GPUs[j].UUID)
	}
	link(0, 1)
	link(2, 3)
	for i := 4; i < 8; i++ {
		for j := 4; j < 8; j++ {
			if i != j {
				link(i, j)
			}
		}
	}
	for i := range n.Resources.GPUs {
		n.Resources.GPUs[i].NUMANode = i / 4
	}
	return n
}

func TestScheduleGPUTopology(t *testing.T) {
	uuids := func(id string, idx ...int) []string {
		var out []string
		for _, i := range idx {
			out = append(out, fmt.Sprintf("GPU-%s-%d", id, i))
		}
		return out
	}
	tests := []struct {
		name string
		used []int // devices already held
		req  api.GPURequest
		want []int
		fail string
	}{
		{name: "nvlink 4 picks the linked quad", req: api.GPURequest{Count: 4, Topology: "nvlink"}, want: []int{4, 5, 6, 7}},
		{name: "nvlink 2 picks the first pair", req: api.GPURequest{Count: 2, Topology: "nvlink"}, want: []int{0, 1}},
		{name: "nvlink 2 skips a broken pair", used: []int{0}, req: api.GPURequest{Count: 2, Topology: "nvlink"}, want: []int{2, 3}},
		{name: "nvlink 4 impossible", used: []int{4}, req: api.GPURequest{Count: 4, Topology: "nvlink"},
			fail: "gpu: no 4 free devices that are all NVLink peers"},
		{name: "numa best fit", used: []int{0}, req: api.GPURequest{Count: 2}, want: []int{1, 2}},
		{name: "numa fits on emptier node when needed", used: []int{0, 1, 2}, req: api.GPURequest{Count: 2}, want: []int{4, 5}},
		{name: "across numa as last resort", used: []int{0, 1, 4, 5, 6}, req: api.GPURequest{Count: 3}, want: []int{2, 3, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := nvlinkNode("n")
			other := gpuJob("other", 1, api.GPURequest{Count: len(tc.used)})
			var allocs []*api.Allocation
			if len(tc.used) > 0 {
				a := existing("held", other, "g", 0, n)
				a.GPUs = uuids("n", tc.used...)
				allocs = append(allocs, a)
			}
			p := schedule(t, newFakeState([]*api.Node{n}, allocs...), gpuJob("j", 1, tc.req), Options{})
			placed := allPlaced(p)
			if tc.fail != "" {
				if len(placed) != 0 || !strings.Contains(p.FailedGroups["g"], tc.fail) {
					t.Fatalf("placed %v failed %q, want %q", placed, p.FailedGroups["g"], tc.fail)
				}
				return
			}
			if len(placed) != 1 {
				t.Fatalf("not placed: %v", p.FailedGroups)
			}
			if got := placed[0].GPUs; !reflect.DeepEqual(got, uuids("n", tc.want...)) {
				t.Errorf("GPUs %v, want %v", got, uuids("n", tc.want...))
			}
		})
	}
}

func TestScheduleGPUBestFit(t *testing.T) {
	// Node "partly" has 4 of 8 GPUs in use, node "whole" none.
	partly, whole := mkNode("partly", 64000, 262144, withGPUs("H100", 8, 81920)), mkNode("whole", 64000, 262144, withGPUs("H100", 8, 81920))
	held := existing("held", gpuJob("other", 1, api.GPURequest{Count: 4}), "g", 0, partly)
	held.GPUs = []string{"GPU-partly-0", "GPU-partly-1", "GPU-partly-2", "GPU-partly-3"}
	st := newFakeState([]*api.Node{whole, partly}, held)
	// Four 1-GPU jobs fill the partly used node first.
	for i := 0; i < 4; i++ {
		p := schedule(t, st, gpuJob(fmt.Sprintf("small%d", i), 1, api.GPURequest{Count: 1}), Options{})
		if got := placedNodes(p); got["partly"] != 1 {
			t.Fatalf("1-GPU job %d placed %v, want on the partly used node", i, got)
		}
		st.apply(p)
	}
	// The whole node is still free for an 8-GPU job.
	p := schedule(t, st, gpuJob("big", 1, api.GPURequest{Count: 8}), Options{})
	if got := placedNodes(p); got["whole"] != 1 {
		t.Fatalf("8-GPU job placed %v (failed %v), want on the whole node", got, p.FailedGroups)
	}
	// The first-fit baseline would have put the first small job on "partly"
	// too only by luck of ID order; with IDs swapped it splits the whole node.
	a, b := mkNode("a", 64000, 262144, withGPUs("H100", 8, 81920)), mkNode("b", 64000, 262144, withGPUs("H100", 8, 81920))
	heldB := existing("held", gpuJob("other", 1, api.GPURequest{Count: 4}), "g", 0, b)
	heldB.GPUs = []string{"GPU-b-0", "GPU-b-1", "GPU-b-2", "GPU-b-3"}
	ff := schedule(t, newFakeState([]*api.Node{a, b}, heldB), gpuJob("s", 1, api.GPURequest{Count: 1}), Options{firstFit: true})
	bf := schedule(t, newFakeState([]*api.Node{a, b}, heldB), gpuJob("s", 1, api.GPURequest{Count: 1}), Options{})
	if placedNodes(ff)["a"] != 1 || placedNodes(bf)["b"] != 1 {
		t.Errorf("first fit %v (want a), best fit %v (want b)", placedNodes(ff), placedNodes(bf))
	}
}

func TestScheduleGang(t *testing.T) {
	var nodes []*api.Node
	for i := 0; i < 3; i++ {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%d", i), 64000, 262144, withGPUs("H100", 8, 81920)))
	}
	tests := []struct {
		name   string
		count  int
		gang   bool
		placed int
		fail   string
	}{
		{name: "gang fits", count: 3, gang: true, placed: 3},
		{name: "gang too big places nothing", count: 4, gang: true, placed: 0, fail: "gang of 4 copies not placed, none of them: 3 nodes: gpu: not enough free healthy devices"},
		{name: "no gang places what fits", count: 4, gang: false, placed: 3, fail: "1 of 4 copies unplaced: 3 nodes: gpu: not enough free healthy devices"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			job := gpuJob("train", tc.count, api.GPURequest{Count: 8})
			job.Groups[0].Gang = tc.gang
			p := schedule(t, newFakeState(nodes), job, Options{})
			if got := len(allPlaced(p)); got != tc.placed {
				t.Fatalf("placed %d, want %d", got, tc.placed)
			}
			if p.FailedGroups["g"] != tc.fail {
				t.Errorf("failed %q, want %q", p.FailedGroups["g"], tc.fail)
			}
			if tc.placed == 0 && !p.IsNoOp() {
				t.Errorf("a failed gang left a non-empty plan: %v", p.NodeAllocation)
			}
		})
	}
}

func TestScheduleGPUNoDoubleAssignment(t *testing.T) {
	n := mkNode("n", 64000, 262144, withGPUs("H100", 8, 81920))
	n.Resources.GPUs[5].Healthy = false
	st := newFakeState([]*api.Node{n})
	// One plan with several copies, then more jobs against the applied state.
	p := schedule(t, st, gpuJob("a", 3, api.GPURequest{Count: 1}), Options{})
	st.apply(p)
	for _, name := range []string{"b", "c", "d", "e"} {
		st.apply(schedule(t, st, gpuJob(name, 1, api.GPURequest{Count: 1}), Options{}))
	}
	seen := map[string]string{}
	var all []*api.Allocation
	for _, a := range st.sorted(func(*api.Allocation) bool { return true }) {
		all = append(all, a)
		for _, g := range a.GPUs {
			if other, dup := seen[g]; dup {
				t.Fatalf("GPU %s held by %s and %s", g, other, a.ID)
			}
			if g == "GPU-n-5" {
				t.Fatalf("unhealthy GPU assigned to %s", a.ID)
			}
			seen[g] = a.ID
		}
	}
	if len(seen) != 7 {
		t.Fatalf("%d GPUs assigned, want all 7 healthy ones", len(seen))
	}
	if ok, reason := Fits(n, all); !ok {
		t.Fatalf("Fits refused the scheduler's own result: %s", reason)
	}
	p = schedule(t, st, gpuJob("f", 1, api.GPURequest{Count: 1}), Options{})
	if !strings.Contains(p.FailedGroups["g"], "gpu: not enough free healthy devices") {
		t.Errorf("eighth job: %v", p.FailedGroups)
	}
}

func migNode(id string) *api.Node {
	n := mkNode(id, 64000, 262144)
	n.Resources.GPUs = []api.GPUDevice{
		{UUID: "GPU-parent", Index: 0, Model: "A100", MemoryMiB: 40960, Healthy: true},
		{UUID: "GPU-whole", Index: 1, Model: "A100", MemoryMiB: 40960, Healthy: true},
	}
	for i := 0; i < 3; i++ {
		n.Resources.GPUs = append(n.Resources.GPUs, api.GPUDevice{UUID: fmt.Sprintf("MIG-%d", i), Index: 0, Model: "A100", MemoryMiB: 9856,
			Healthy: true, MIGProfile: "1g.10gb", ParentUUID: "GPU-parent"})
	}
	return n
}

func TestScheduleMIG(t *testing.T) {
	n := migNode("n")
	st := newFakeState([]*api.Node{n})
	p := schedule(t, st, gpuJob("mig", 3, api.GPURequest{Count: 1, MIGProfile: "1g.10gb"}), Options{})
	var got []string
	for _, a := range allPlaced(p) {
		got = append(got, a.GPUs...)
	}
	if !reflect.DeepEqual(got, []string{"MIG-0", "MIG-1", "MIG-2"}) {
		t.Fatalf("MIG copies got %v", got)
	}
	st.apply(p)
	// A whole-GPU ask gets the GPU that is not split, never the MIG parent.
	p = schedule(t, st, gpuJob("whole", 2, api.GPURequest{Count: 1}), Options{})
	placed := allPlaced(p)
	if len(placed) != 1 || !reflect.DeepEqual(placed[0].GPUs, []string{"GPU-whole"}) {
		t.Fatalf("whole-GPU copies %v", placed)
	}
	if !strings.Contains(p.FailedGroups["g"], "gpu: not enough free healthy devices") {
		t.Errorf("second whole-GPU copy: %v", p.FailedGroups)
	}
	p = schedule(t, st, gpuJob("prof", 1, api.GPURequest{Count: 1, MIGProfile: "3g.20gb"}), Options{})
	if !strings.Contains(p.FailedGroups["g"], `gpu: no MIG instance with profile "3g.20gb"`) {
		t.Errorf("unknown profile: %v", p.FailedGroups)
	}
}

func TestSchedulePreemption(t *testing.T) {
	low := mkJob("low", 1, 1000, 1000)
	low.Priority = 20
	lowBig := mkJob("lowbig", 1, 2000, 2000)
	lowBig.Priority = 30
	mid := mkJob("mid", 1, 1000, 1000)
	mid.Priority = 45
	build := func() (*fakeState, *api.Node) {
		n := mkNode("n", 4000, 4000)
		return newFakeState([]*api.Node{n},
			existing("l1", low, "g", 0, n), existing("l2", mid, "g", 0, n), existing("big", lowBig, "g", 0, n)), n
	}
	tests := []struct {
		name     string
		enabled  bool
		priority int
		cpu      int
		evicted  []string
	}{
		{name: "disabled", enabled: false, priority: 50, cpu: 2000},
		{name: "smallest set is one large alloc", enabled: true, priority: 50, cpu: 2000, evicted: []string{"big"}},
		{name: "needs two", enabled: true, priority: 50, cpu: 3000, evicted: []string{"l1", "big"}},
		{name: "priority gap too small", enabled: true, priority: 39, cpu: 1000, evicted: []string{"l1"}},
		{name: "nothing low enough", enabled: true, priority: 25, cpu: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, _ := build()
			job := mkJob("high", 1, tc.cpu, 500)
			job.Priority = tc.priority
			p := schedule(t, st, job, Options{PreemptionEnabled: tc.enabled})
			var evicted []string
			for _, a := range p.NodePreemptions["n"] {
				evicted = append(evicted, a.ID)
				if a.DesiredStatus != api.AllocDesiredEvict || !strings.Contains(a.DesiredDescription, "preempted by") {
					t.Errorf("eviction %s: %q %q", a.ID, a.DesiredStatus, a.DesiredDescription)
				}
			}
			if !reflect.DeepEqual(evicted, tc.evicted) {
				t.Fatalf("evicted %v, want %v (failed %v)", evicted, tc.evicted, p.FailedGroups)
			}
			if len(tc.evicted) > 0 && len(allPlaced(p)) != 1 {
				t.Fatalf("not placed after preemption: %v", p.FailedGroups)
			}
			if len(tc.evicted) == 0 && !strings.Contains(p.FailedGroups["g"], "cpu exhausted") {
				t.Errorf("failed %v, want cpu exhausted", p.FailedGroups)
			}
		})
	}
}

func TestFits(t *testing.T) {
	n := migNode("n")
	n.Resources.CPU, n.Resources.MemoryMB = 1000, 1000
	mk := func(id string, cpu, mem int, gpus []string, ports ...int) *api.Allocation {
		a := &api.Allocation{ID: id, NodeID: "n", Resources: api.Resources{CPU: cpu, MemoryMB: mem}, GPUs: gpus,
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning}
		for _, p := range ports {
			a.Ports = append(a.Ports, api.AllocPort{Value: p, To: 80})
		}
		return a
	}
	stopped := mk("s", 900, 900, []string{"GPU-whole"}, 8080)
	stopped.DesiredStatus = api.AllocDesiredStop
	done := mk("d", 900, 900, []string{"GPU-whole"}, 8080)
	done.ClientStatus = api.AllocClientComplete
	tests := []struct {
		name   string
		node   *api.Node
		allocs []*api.Allocation
		reason string // "" means fits
	}{
		{name: "fits", node: n, allocs: []*api.Allocation{mk("a", 500, 500, []string{"GPU-whole"}, 8080), mk("b", 500, 500, []string{"MIG-0"}, 8081)}},
		{name: "stopped and finished allocs are ignored", node: n, allocs: []*api.Allocation{mk("a", 500, 500, []string{"GPU-whole"}, 8080), stopped, done}},
		{name: "cpu", node: n, allocs: []*api.Allocation{mk("a", 600, 100, nil), mk("b", 600, 100, nil)}, reason: "cpu exhausted: 1200 of 1000 millicores asked"},
		{name: "memory", node: n, allocs: []*api.Allocation{mk("a", 100, 1001, nil)}, reason: "memory exhausted: 1001 of 1000 MiB asked"},
		{name: "gpu missing", node: n, allocs: []*api.Allocation{mk("a", 1, 1, []string{"GPU-nope"})}, reason: "gpu GPU-nope of alloc a does not exist on node name-n"},
		{name: "gpu twice", node: n, allocs: []*api.Allocation{mk("a", 1, 1, []string{"MIG-1"}), mk("b", 1, 1, []string{"MIG-1"})}, reason: "gpu MIG-1 is assigned to both alloc a and alloc b"},
		{name: "mig parent then child", node: n, allocs: []*api.Allocation{mk("a", 1, 1, []string{"GPU-parent"}), mk("b", 1, 1, []string{"MIG-2"})}, reason: "overlaps alloc a, which holds the whole GPU"},
		{name: "mig child then parent", node: n, allocs: []*api.Allocation{mk("a", 1, 1, []string{"MIG-2"}), mk("b", 1, 1, []string{"GPU-parent"})}, reason: "is split into MIG instances and MIG-2 is held by alloc a"},
		{name: "port twice", node: n, allocs: []*api.Allocation{mk("a", 1, 1, nil, 8080), mk("b", 1, 1, nil, 8080)}, reason: "host port 8080/tcp is assigned to both alloc a and alloc b"},
		{name: "no node", node: nil, reason: "node does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := Fits(tc.node, tc.allocs)
			if tc.reason == "" {
				if !ok {
					t.Fatalf("Fits = false (%s), want true", reason)
				}
				return
			}
			if ok || !strings.Contains(reason, tc.reason) {
				t.Fatalf("Fits = %v %q, want false %q", ok, reason, tc.reason)
			}
		})
	}
}
