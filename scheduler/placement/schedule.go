package placement

import (
	"fmt"
	"sort"

	"github.com/berth-dev/berth/api"
)

// Schedule reconciles one job with the cluster and returns the plan: it
// places missing copies, stops copies of a stopped or removed job (job nil
// or Stop set) and copies beyond the count, replaces copies whose task
// spec changed, copies lost on down nodes, copies on draining nodes and
// failed copies, and for system jobs keeps one copy on every eligible
// node. It reads st, never writes it, and is deterministic: the same
// inputs (and the same NewID sequence) give the same plan.
func Schedule(st State, eval *api.Evaluation, job *api.Job, opts Options) (plan *Plan, err error) {
	if eval == nil {
		return nil, ErrNoEvaluation
	}
	if job != nil && eval.JobID != "" && job.ID != eval.JobID {
		return nil, fmt.Errorf("%w: evaluation %s is for job %q, got job %q", ErrJobMismatch, eval.ID, eval.JobID, job.ID)
	}
	defer func() {
		if r := recover(); r != nil {
			plan, err = nil, fmt.Errorf("%w: evaluation %s of job %q: %v", ErrInternal, eval.ID, eval.JobID, r)
		}
	}()
	jobID := eval.JobID
	if jobID == "" && job != nil {
		jobID = job.ID
	}
	plan = newPlan(eval.ID, job)
	c := newEvalContext(st, eval, job, plan, opts)
	allocs := append([]*api.Allocation(nil), st.AllocsByJob(jobID)...)
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].ID < allocs[j].ID })

	if job == nil || job.Stop {
		desc := "job stopped"
		if job == nil {
			desc = "job removed"
		}
		for _, a := range allocs {
			if live(a) {
				c.stop(a, desc, "")
			}
		}
		return plan, nil
	}
	switch job.Type {
	case "", api.JobTypeService, api.JobTypeBatch:
		c.loadNodes()
		c.countJobAllocs(allocs)
		r := newReconciler(c, allocs)
		c.placeGeneric(r.generic(allocs))
	case api.JobTypeSystem:
		c.loadNodes()
		c.countJobAllocs(allocs)
		stacks := map[string]*stack{}
		for _, g := range job.Groups {
			if g != nil {
				stacks[g.Name] = newStack(c, g, &singleIterator{})
			}
		}
		r := newReconciler(c, allocs)
		c.placeSystem(r.system(allocs, stacks), stacks)
	default:
		return nil, fmt.Errorf("%w: job %q has type %q", ErrUnknownJobType, job.ID, job.Type)
	}
	c.tidy()
	return plan, nil
}

// placeGeneric places service and batch copies, group by group. Once one
// copy of a group fails, the rest of the group would fail the same way and
// are counted without trying. A gang group places all its copies or none.
func (c *evalContext) placeGeneric(reqs []placeReq) {
	for start := 0; start < len(reqs); {
		g := reqs[start].group
		end := start
		for end < len(reqs) && reqs[end].group == g {
			end++
		}
		group := reqs[start:end]
		start = end

		s := newStack(c, g, c.source)
		if s.all {
			s.prefilter(c.source.offset)
		}
		mark := len(c.undo)
		failed, reason := 0, ""
		for _, p := range group {
			if failed > 0 {
				failed++
				continue
			}
			opt := s.selectNode(p.avoid)
			if opt == nil && c.opts.PreemptionEnabled {
				opt = c.preemptFor(s)
			}
			if opt != nil {
				if why := c.commit(s, p, opt); why != "" {
					opt = nil
					s.metrics.filter(why)
				}
			}
			if opt == nil {
				failed++
				reason = s.metrics.String()
				if g.Gang {
					break
				}
				continue
			}
		}
		if failed == 0 {
			continue
		}
		if g.Gang {
			c.rollback(mark)
			c.plan.FailedGroups[g.Name] = fmt.Sprintf("gang of %d copies not placed, none of them: %s", len(group), reason)
		} else {
			c.plan.FailedGroups[g.Name] = fmt.Sprintf("%d of %d copies unplaced: %s", failed, len(group), reason)
		}
	}
}

// placeSystem places system copies, each on its own node.
func (c *evalContext) placeSystem(reqs []placeReq, stacks map[string]*stack) {
	failed := map[string]int{}
	why := map[string]*placementMetrics{}
	for _, p := range reqs {
		s := stacks[p.group.Name]
		s.setSource(&singleIterator{node: p.node})
		opt := s.selectNode("")
		if opt == nil && c.opts.PreemptionEnabled {
			opt = c.preemptFor(s)
		}
		if opt != nil {
			if reason := c.commit(s, p, opt); reason != "" {
				opt = nil
				s.metrics.filter(reason)
			}
		}
		if opt == nil {
			failed[p.group.Name]++
			if why[p.group.Name] == nil {
				why[p.group.Name] = newMetrics()
			}
			why[p.group.Name].merge(s.metrics)
		}
	}
	for name, n := range failed {
		unit := "nodes"
		if n == 1 {
			unit = "node"
		}
		c.plan.FailedGroups[name] = fmt.Sprintf("%d eligible %s could not run a copy: %s", n, unit, why[name])
	}
}

// commit turns a chosen node into a new allocation in the plan, evicting
// first what preemption chose, and picks its devices and ports. It
// returns a reason if the copy does not fit after all (a bug: check and
// fit disagree).
func (c *evalContext) commit(s *stack, p placeReq, opt *rankedNode) string {
	job := c.job
	if opt.fit == nil {
		fit, reason := c.usageOf(opt.node).fit(s.ask)
		if reason != "" {
			return reason
		}
		opt.fit = fit
	}
	a := &api.Allocation{
		ID:            c.newID(),
		Name:          fmt.Sprintf("%s.%s[%d]", job.ID, p.group.Name, p.index),
		JobID:         job.ID,
		Job:           job,
		Group:         p.group.Name,
		Index:         p.index,
		NodeID:        opt.node.ID,
		NodeName:      opt.node.Name,
		EvalID:        c.eval.ID,
		Resources:     s.ask.resources(),
		GPUs:          opt.fit.gpus,
		Ports:         opt.fit.ports,
		DesiredStatus: api.AllocDesiredRun,
		ClientStatus:  api.AllocClientPending,
		CreateTime:    c.opts.Now,
	}
	if p.previous != nil {
		a.PreviousAllocation = p.previous.ID
	}
	for _, v := range opt.preempt {
		c.evict(v, a)
	}
	c.usageOf(opt.node) // make sure the node's usage exists before adding
	c.place(a, s)
	return ""
}
