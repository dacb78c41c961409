package scheduler

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/scheduler/placement"
)

// maxPlanAttempts bounds how often a worker re-plans on fresh state after
// the plan applier refused part of its plan.
const maxPlanAttempts = 5

// newID returns a random (version 4) UUID.
func newID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("scheduler: no randomness for IDs: %v", err))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// runWorker takes evaluations from the broker until ctx ends (leadership
// lost). A worker that fails for a transient reason (a Raft write failed)
// nacks, so the evaluation is delivered again.
func (s *Server) runWorker(ctx context.Context, id int) {
	log := s.log.With("worker", id)
	for {
		eval, token, err := s.broker.Dequeue(ctx)
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, ErrBrokerDisabled) {
				log.Error("dequeue failed", "err", err)
			}
			return
		}
		began := time.Now()
		err = s.processEval(ctx, eval, token)
		s.metrics.evalTime.Observe(time.Since(began).Seconds())
		if err != nil {
			log.Warn("evaluation not finished; it will be delivered again", "eval", eval.ID, "job", eval.JobID, "err", err)
			_ = s.broker.Nack(eval.ID, token)
			if ctx.Err() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // do not spin on a persistent Raft error
			continue
		}
		_ = s.broker.Ack(eval.ID, token)
		// Capacity that appeared while this eval was planned on an older
		// snapshot would otherwise not retry it.
		if s.blocked.Stale() {
			s.unblock(0)
		}
	}
}

// schedule calls the pure placement algorithm and turns a panic into an
// error, so that one bad job fails its evaluation instead of the server.
func schedule(st placement.State, eval *api.Evaluation, job *api.Job, opts placement.Options) (plan *placement.Plan, err error) {
	defer func() {
		if r := recover(); r != nil {
			plan, err = nil, fmt.Errorf("%w: panic while scheduling: %v", placement.ErrInternal, r)
		}
	}()
	return placement.Schedule(st, eval, job, opts)
}

// processEval reconciles the evaluation's job: plan on a snapshot, submit
// to the plan applier, and re-plan on fresh state while the applier
// refuses nodes, at most maxPlanAttempts times. It returns an error only
// when the evaluation should be retried (nack).
func (s *Server) processEval(ctx context.Context, eval *api.Evaluation, token string) error {
	start := time.Now()
	var lastRefusal string
	var snapIndex uint64
	for attempt := 1; attempt <= maxPlanAttempts; attempt++ {
		// Still working on it: keep the broker from redelivering it to
		// another worker.
		_ = s.broker.Touch(eval.ID, token, time.Now())
		var snap *consensus.StateSnapshot
		extra := s.applier.overlay(func() { snap = s.raft.State().Snapshot() })
		snapIndex = snap.LatestIndex()
		job, err := snap.JobByID(nil, eval.JobID)
		if err != nil {
			return err
		}
		sc := snap.SchedulerConfig()
		opts := placement.Options{
			Algorithm:         sc.Algorithm,
			PreemptionEnabled: s.cfg.PreemptionEnabled || sc.PreemptionEnabled,
			NewID:             newID,
			Now:               time.Now().UnixNano(),
			Cache:             s.usage, // state store lists are never changed in place
		}
		var view placement.State = snap
		if len(extra) > 0 {
			view = &plannerView{StateSnapshot: snap, extra: extra}
		}
		s.planning.Enter(eval.Priority, jobCost(job))
		plan, err := schedule(view, eval, job, opts)
		s.planning.Leave()
		if err != nil {
			s.log.Error("scheduling failed", "eval", eval.ID, "job", eval.JobID, "err", err)
			return s.finishEval(eval, api.EvalStatusFailed, err.Error(), nil, snapIndex)
		}
		update := evalOutcome(eval, plan)
		if plan.IsNoOp() {
			return s.finishEval(eval, update.Status, update.StatusDescription, update.FailedTGAllocs, snapIndex)
		}
		res := s.applier.Submit(ctx, plan, []*api.Evaluation{update})
		if res.Err != nil {
			return res.Err
		}
		s.metrics.addPlacements(res.Placed)
		if len(res.Refused) == 0 {
			s.afterEval(update, snapIndex)
			s.metrics.evals.WithLabelValues(update.Status).Inc()
			s.log.Debug("evaluation done", "eval", eval.ID, "job", eval.JobID, "status", update.Status,
				"placed", res.Placed, "attempts", attempt, "took", time.Since(start))
			return nil
		}
		lastRefusal = describeRefusals(res.Refused)
		s.log.Info("plan partly refused; planning again on fresh state", "eval", eval.ID, "job", eval.JobID,
			"attempt", attempt, "refused", lastRefusal)
	}
	desc := fmt.Sprintf("plan refused %d times; last: %s", maxPlanAttempts, lastRefusal)
	return s.finishEval(eval, api.EvalStatusBlocked, desc, nil, snapIndex)
}

func describeRefusals(refused map[string]string) string {
	ids := make([]string, 0, len(refused))
	for id := range refused {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = "node " + id + ": " + refused[id]
	}
	return strings.Join(parts, "; ")
}

// evalOutcome is the evaluation's new state after plan commits: complete,
// or blocked with the reasons when some copies could not be placed.
func evalOutcome(eval *api.Evaluation, plan *placement.Plan) *api.Evaluation {
	e := consensus.CopyEval(eval)
	e.Status = api.EvalStatusComplete
	e.StatusDescription = ""
	e.FailedTGAllocs = nil
	if len(plan.FailedGroups) > 0 {
		e.Status = api.EvalStatusBlocked
		e.FailedTGAllocs = make(map[string]string, len(plan.FailedGroups))
		groups := make([]string, 0, len(plan.FailedGroups))
		for g, why := range plan.FailedGroups {
			e.FailedTGAllocs[g] = why
			groups = append(groups, g)
		}
		sort.Strings(groups)
		parts := make([]string, len(groups))
		for i, g := range groups {
			parts[i] = g + ": " + plan.FailedGroups[g]
		}
		e.StatusDescription = "not all copies placed; waiting for capacity: " + strings.Join(parts, "; ")
	}
	return e
}

// finishEval writes the evaluation's final status on its own (nothing to
// place, or a failure).
func (s *Server) finishEval(eval *api.Evaluation, status, desc string, failed map[string]string, snapIndex uint64) error {
	e := consensus.CopyEval(eval)
	e.Status, e.StatusDescription, e.FailedTGAllocs = status, desc, failed
	if _, err := s.raft.Apply(consensus.EvalUpdateRequestType, &consensus.EvalUpdateRequest{Evals: []*api.Evaluation{e}}, applyTimeout); err != nil {
		return fmt.Errorf("write evaluation %s status %s: %w", eval.ID, status, err)
	}
	s.metrics.evals.WithLabelValues(status).Inc()
	s.afterEval(e, snapIndex)
	return nil
}

// afterEval keeps the blocked set in step with the evaluation's outcome. A
// blocked evaluation supersedes an older blocked one of the same job; a
// complete one clears the job's blocked one. Superseded evaluations are
// marked complete so they are not restored by a later leader.
func (s *Server) afterEval(e *api.Evaluation, snapIndex uint64) {
	var old *api.Evaluation
	if e.Status == api.EvalStatusBlocked {
		old = s.blocked.Block(e, snapIndex, time.Now())
	} else if b := s.blocked.Remove(e.JobID); b != nil && b.ID != e.ID {
		old = b
	}
	if old == nil {
		return
	}
	done := consensus.CopyEval(old)
	done.Status = api.EvalStatusComplete
	done.StatusDescription = "superseded by evaluation " + e.ID
	if _, err := s.raft.Apply(consensus.EvalUpdateRequestType, &consensus.EvalUpdateRequest{Evals: []*api.Evaluation{done}}, applyTimeout); err != nil {
		s.log.Warn("could not mark superseded evaluation complete", "eval", old.ID, "err", err)
	}
}
