package placement

import (
	"fmt"
	"sort"
	"testing"

	"github.com/berth-dev/berth/api"
)

// fakeState is a static, in-memory State. apply commits a plan the way the
// FSM would, so tests can run several evaluations in a row.
type fakeState struct {
	nodes  []*api.Node
	allocs map[string]*api.Allocation
	byNode map[string]map[string]*api.Allocation
	byJob  map[string]map[string]*api.Allocation
	index  uint64
}

var _ State = (*fakeState)(nil)

func newFakeState(nodes []*api.Node, allocs ...*api.Allocation) *fakeState {
	f := &fakeState{nodes: nodes, allocs: map[string]*api.Allocation{}, index: 100,
		byNode: map[string]map[string]*api.Allocation{}, byJob: map[string]map[string]*api.Allocation{}}
	for _, a := range allocs {
		f.put(a)
	}
	return f
}

func (f *fakeState) put(a *api.Allocation) {
	f.allocs[a.ID] = a
	for _, idx := range []struct {
		m   map[string]map[string]*api.Allocation
		key string
	}{{f.byNode, a.NodeID}, {f.byJob, a.JobID}} {
		if idx.m[idx.key] == nil {
			idx.m[idx.key] = map[string]*api.Allocation{}
		}
		idx.m[idx.key][a.ID] = a
	}
}

func sortedAllocs(m map[string]*api.Allocation) []*api.Allocation {
	out := make([]*api.Allocation, 0, len(m))
	for _, a := range m {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeState) Nodes() []*api.Node {
	out := append([]*api.Node(nil), f.nodes...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeState) sorted(keep func(*api.Allocation) bool) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range f.allocs {
		if keep(a) {
			out = append(out, a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (f *fakeState) AllocsByNode(id string) []*api.Allocation { return sortedAllocs(f.byNode[id]) }

func (f *fakeState) AllocsByJob(id string) []*api.Allocation { return sortedAllocs(f.byJob[id]) }

func (f *fakeState) node(id string) *api.Node {
	for _, n := range f.nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// apply commits a plan: new allocations are inserted, stopped and evicted
// copies replace the stored ones.
func (f *fakeState) apply(p *Plan) {
	f.index++
	for _, m := range []map[string][]*api.Allocation{p.NodeUpdate, p.NodePreemptions, p.NodeAllocation} {
		for _, as := range m {
			for _, a := range as {
				cp := *a
				if old := f.allocs[a.ID]; old != nil {
					cp.CreateIndex = old.CreateIndex
				} else {
					cp.CreateIndex = f.index
				}
				cp.ModifyIndex = f.index
				f.put(&cp)
			}
		}
	}
}

// removeJob drops a job's allocations, as the garbage collector would.
func (f *fakeState) removeJob(jobID string) {
	for id, a := range f.byJob[jobID] {
		delete(f.allocs, id)
		delete(f.byNode[a.NodeID], id)
	}
	delete(f.byJob, jobID)
}

// setClient sets the client status of every live alloc matching keep.
func (f *fakeState) setClient(status string, keep func(*api.Allocation) bool) {
	for _, a := range f.allocs {
		if live(a) && keep(a) {
			cp := *a
			cp.ClientStatus = status
			f.put(&cp)
		}
	}
}

func (f *fakeState) liveAllocs(jobID string) []*api.Allocation {
	var out []*api.Allocation
	for _, a := range f.AllocsByJob(jobID) {
		if live(a) {
			out = append(out, a)
		}
	}
	return out
}

type nodeOpt func(*api.Node)

func withLabel(k, v string) nodeOpt {
	return func(n *api.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

func withAttr(k, v string) nodeOpt {
	return func(n *api.Node) {
		if n.Attributes == nil {
			n.Attributes = map[string]string{}
		}
		n.Attributes[k] = v
	}
}

func withDC(dc string) nodeOpt { return func(n *api.Node) { n.Datacenter = dc } }

func withGPUs(model string, count, memMiB int) nodeOpt {
	return func(n *api.Node) {
		for i := 0; i < count; i++ {
			n.Resources.GPUs = append(n.Resources.GPUs, api.GPUDevice{
				UUID: fmt.Sprintf("GPU-%s-%d", n.ID, i), Index: i, Model: model, MemoryMiB: memMiB,
				Healthy: true, NUMANode: i * 2 / max(count, 1),
			})
		}
	}
}

func mkNode(id string, cpu, mem int, opts ...nodeOpt) *api.Node {
	n := &api.Node{ID: id, Name: "name-" + id, Datacenter: "dc1", Status: api.NodeStatusReady,
		Eligibility: api.NodeEligible, Resources: api.NodeResources{CPU: cpu, MemoryMB: mem}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func mkJob(name string, count, cpu, mem int) *api.Job {
	j := &api.Job{Name: name, Groups: []*api.Group{{Name: "g", Count: count, Tasks: []*api.Task{{
		Name: "t", Image: "busybox", Resources: api.Resources{CPU: cpu, MemoryMB: mem},
	}}}}}
	Canonicalize(j)
	j.Version = 1
	j.JobModifyIndex = 1
	return j
}

func evalFor(job *api.Job) *api.Evaluation {
	return &api.Evaluation{ID: "eval-" + job.ID, JobID: job.ID, Type: job.Type, Priority: job.Priority, TriggeredBy: api.EvalTriggerJobRegister}
}

func counterIDs(prefix string) func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("%s-%04d", prefix, n)
	}
}

// existing makes a running allocation of job on node.
func existing(id string, job *api.Job, group string, index int, node *api.Node) *api.Allocation {
	var g *api.Group
	for _, x := range job.Groups {
		if x.Name == group {
			g = x
		}
	}
	return &api.Allocation{
		ID: id, Name: fmt.Sprintf("%s.%s[%d]", job.ID, group, index), JobID: job.ID, Job: job, Group: group, Index: index,
		NodeID: node.ID, NodeName: node.Name, Resources: newGroupAsk(g).resources(),
		DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning, CreateIndex: 10,
	}
}

// scheduleCalls makes allocation IDs unique across the evaluations of a test.
var scheduleCalls int

// schedule runs one evaluation and fails the test on error.
func schedule(t testing.TB, st State, job *api.Job, opts Options) *Plan {
	t.Helper()
	if opts.NewID == nil {
		scheduleCalls++
		opts.NewID = counterIDs(fmt.Sprintf("%s-%d", job.ID, scheduleCalls))
	}
	p, err := Schedule(st, evalFor(job), job, opts)
	if err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	return p
}

// placedNodes returns node ID → count of new allocations.
func placedNodes(p *Plan) map[string]int {
	out := map[string]int{}
	for n, as := range p.NodeAllocation {
		out[n] += len(as)
	}
	return out
}

func allPlaced(p *Plan) []*api.Allocation {
	var out []*api.Allocation
	for _, as := range p.NodeAllocation {
		out = append(out, as...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func allStopped(p *Plan) []*api.Allocation {
	var out []*api.Allocation
	for _, as := range p.NodeUpdate {
		out = append(out, as...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
