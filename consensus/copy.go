package consensus

import (
	"maps"
	"slices"

	"github.com/berth-dev/berth/api"
)

// Objects read from the state store are shared by every reader and must not
// be changed in place. These helpers give a caller its own copy to change.
// They are hand-written rather than JSON round trips because the scheduler
// copies allocations on its hot path.

// CopyJob returns a deep copy of j (nil for nil).
func CopyJob(j *api.Job) *api.Job {
	if j == nil {
		return nil
	}
	c := *j
	c.Datacenters = slices.Clone(j.Datacenters)
	c.Constraints = slices.Clone(j.Constraints)
	c.Affinities = slices.Clone(j.Affinities)
	c.Spreads = slices.Clone(j.Spreads)
	c.Meta = maps.Clone(j.Meta)
	if j.Groups != nil {
		c.Groups = make([]*api.Group, len(j.Groups))
		for i, g := range j.Groups {
			c.Groups[i] = copyGroup(g)
		}
	}
	return &c
}

func copyGroup(g *api.Group) *api.Group {
	if g == nil {
		return nil
	}
	c := *g
	c.Constraints = slices.Clone(g.Constraints)
	c.Affinities = slices.Clone(g.Affinities)
	c.Spreads = slices.Clone(g.Spreads)
	if g.Restart != nil {
		r := *g.Restart
		c.Restart = &r
	}
	if g.Tasks != nil {
		c.Tasks = make([]*api.Task, len(g.Tasks))
		for i, t := range g.Tasks {
			c.Tasks[i] = copyTask(t)
		}
	}
	return &c
}

func copyTask(t *api.Task) *api.Task {
	if t == nil {
		return nil
	}
	c := *t
	c.Command = slices.Clone(t.Command)
	c.Entrypoint = slices.Clone(t.Entrypoint)
	c.Env = maps.Clone(t.Env)
	c.Labels = maps.Clone(t.Labels)
	c.Resources = copyResources(t.Resources)
	c.Ports = slices.Clone(t.Ports)
	c.Volumes = slices.Clone(t.Volumes)
	c.CapAdd = slices.Clone(t.CapAdd)
	c.CapDrop = slices.Clone(t.CapDrop)
	return &c
}

func copyResources(r api.Resources) api.Resources {
	if r.GPUs != nil {
		g := *r.GPUs
		r.GPUs = &g
	}
	return r
}

// CopyAlloc returns a copy of a (nil for nil) whose slices, maps and task
// states are its own. The Job pointer is shared, not copied: an allocation's
// job is immutable, so replace the pointer (with CopyJob) rather than change
// what it points to.
func CopyAlloc(a *api.Allocation) *api.Allocation {
	if a == nil {
		return nil
	}
	c := *a
	c.Resources = copyResources(a.Resources)
	c.GPUs = slices.Clone(a.GPUs)
	c.Ports = slices.Clone(a.Ports)
	c.TaskStates = copyTaskStates(a.TaskStates)
	return &c
}

func copyTaskStates(m map[string]*api.TaskState) map[string]*api.TaskState {
	if m == nil {
		return nil
	}
	c := make(map[string]*api.TaskState, len(m))
	for k, v := range m {
		if v != nil {
			s := *v
			v = &s
		}
		c[k] = v
	}
	return c
}

// CopyNode returns a deep copy of n (nil for nil).
func CopyNode(n *api.Node) *api.Node {
	if n == nil {
		return nil
	}
	c := *n
	c.Attributes = maps.Clone(n.Attributes)
	c.Labels = maps.Clone(n.Labels)
	if n.Resources.GPUs != nil {
		c.Resources.GPUs = make([]api.GPUDevice, len(n.Resources.GPUs))
		for i, g := range n.Resources.GPUs {
			g.NVLinkPeers = slices.Clone(g.NVLinkPeers)
			c.Resources.GPUs[i] = g
		}
	}
	return &c
}

// CopyEval returns a deep copy of e (nil for nil).
func CopyEval(e *api.Evaluation) *api.Evaluation {
	if e == nil {
		return nil
	}
	c := *e
	c.FailedTGAllocs = maps.Clone(e.FailedTGAllocs)
	return &c
}
