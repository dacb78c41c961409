package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

// ContainerID is the ID of the container that runs task in alloc. It is
// derived, not stored, so every party (agent, CLI, a restarted agent)
// computes the same one.
func ContainerID(allocID, task string) string {
	sum := sha256.Sum256([]byte(allocID + "/" + task))
	return hex.EncodeToString(sum[:])
}

// allocRunner runs one allocation's tasks and reports their state. Its
// methods are called from the agent's watch loop goroutine; each task runs
// in its own goroutine.
type allocRunner struct {
	a   *Agent
	id  string // the allocation's ID; never changes
	log *slog.Logger

	mu      sync.Mutex
	alloc   *api.Allocation
	tasks   map[string]*api.TaskState
	stopped bool // desired status is no longer run: never restart

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newAllocRunner(a *Agent, la *localAlloc) *allocRunner {
	ctx, cancel := context.WithCancel(a.ctx)
	r := &allocRunner{
		a: a, id: la.Alloc.ID, alloc: la.Alloc, tasks: la.Tasks, ctx: ctx, cancel: cancel,
		log: a.log.With("alloc", la.Alloc.ID, "job", la.Alloc.JobID),
	}
	if r.tasks == nil {
		r.tasks = map[string]*api.TaskState{}
	}
	return r
}

// current is the latest version of the allocation.
func (r *allocRunner) current() *api.Allocation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.alloc
}

func (r *allocRunner) group() *api.Group { return groupOf(r.current()) }

func groupOf(alloc *api.Allocation) *api.Group {
	if alloc.Job == nil {
		return nil
	}
	for _, g := range alloc.Job.Groups {
		if g.Name == alloc.Group {
			return g
		}
	}
	return nil
}

// run starts a goroutine per task.
func (r *allocRunner) run() {
	g := r.group()
	if g == nil {
		r.setTask("", &api.TaskState{State: api.TaskStateDead, Failed: true, Message: "allocation has no group " + r.current().Group})
		return
	}
	for _, t := range g.Tasks {
		r.wg.Add(1)
		go func(t *api.Task) {
			defer r.wg.Done()
			r.runTask(t)
		}(t)
	}
}

// update takes a newer version of the allocation from the server.
func (r *allocRunner) update(alloc *api.Allocation) {
	r.mu.Lock()
	r.alloc = alloc
	stop := alloc.DesiredStatus != api.AllocDesiredRun && !r.stopped
	if stop {
		r.stopped = true
	}
	r.mu.Unlock()
	r.persist()
	if stop {
		r.log.Info("stopping allocation", "reason", alloc.DesiredDescription)
		go r.stopTasks()
	}
}

func (r *allocRunner) stopTasks() {
	g := r.group()
	if g == nil {
		return
	}
	for _, t := range g.Tasks {
		id := ContainerID(r.id, t.Name)
		if err := r.a.eng.Stop(id, -1); err != nil && !errors.Is(err, container.ErrNotFound) {
			r.log.Warn("stop container", "task", t.Name, "err", err)
		}
	}
}

// destroy stops and removes every container of the allocation; the server
// no longer knows it.
func (r *allocRunner) destroy() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.stopTasks()
	r.cancel()
	r.wg.Wait()
	if g := r.group(); g != nil {
		for _, t := range g.Tasks {
			id := ContainerID(r.id, t.Name)
			if err := r.a.eng.Remove(id, true); err != nil && !errors.Is(err, container.ErrNotFound) {
				r.log.Warn("remove container", "task", t.Name, "err", err)
			}
		}
	}
	if err := r.a.state.deleteAlloc(r.id); err != nil {
		r.log.Warn("forget allocation", "err", err)
	}
}

// shutdown stops watching without touching the containers (agent restart).
func (r *allocRunner) shutdown() {
	r.cancel()
	r.wg.Wait()
}

func (r *allocRunner) isStopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.stopped
}

func (r *allocRunner) taskState(name string) *api.TaskState {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ts, ok := r.tasks[name]; ok {
		c := *ts
		return &c
	}
	return &api.TaskState{State: api.TaskStatePending}
}

func (r *allocRunner) setTask(name string, ts *api.TaskState) {
	r.mu.Lock()
	if name != "" {
		r.tasks[name] = ts
	}
	status, desc := r.clientStatusLocked(ts)
	up := &api.Allocation{ID: r.id, ClientStatus: status, ClientDescription: desc, TaskStates: copyTasks(r.tasks)}
	r.mu.Unlock()
	r.persist()
	r.a.reportAlloc(up)
}

// clientStatusLocked derives the allocation's status from its tasks.
func (r *allocRunner) clientStatusLocked(last *api.TaskState) (string, string) {
	g := groupOf(r.alloc)
	if g == nil {
		return api.AllocClientFailed, last.Message
	}
	running, dead, failed := 0, 0, 0
	desc := ""
	for _, t := range g.Tasks {
		ts, ok := r.tasks[t.Name]
		if !ok {
			continue
		}
		switch ts.State {
		case api.TaskStateRunning:
			running++
		case api.TaskStateDead:
			dead++
			if ts.Failed {
				failed++
				if desc == "" {
					desc = fmt.Sprintf("task %s: %s", t.Name, ts.Message)
				}
			}
		}
	}
	switch {
	case dead == len(g.Tasks) && failed > 0:
		return api.AllocClientFailed, desc
	case dead == len(g.Tasks):
		return api.AllocClientComplete, "all tasks exited successfully"
	case running > 0:
		return api.AllocClientRunning, ""
	}
	return api.AllocClientPending, ""
}

func copyTasks(m map[string]*api.TaskState) map[string]*api.TaskState {
	out := make(map[string]*api.TaskState, len(m))
	for k, v := range m {
		c := *v
		out[k] = &c
	}
	return out
}

func (r *allocRunner) persist() {
	r.mu.Lock()
	la := &localAlloc{Alloc: r.alloc, Tasks: copyTasks(r.tasks)}
	r.mu.Unlock()
	if err := r.a.state.putAlloc(la); err != nil {
		r.log.Error("persist allocation state", "err", err)
	}
}

// runTask runs one task to completion, restarting it as its group's
// restart policy says. A container that already exists (an agent restart)
// is re-attached, not recreated.
func (r *allocRunner) runTask(t *api.Task) {
	id := ContainerID(r.id, t.Name)
	log := r.log.With("task", t.Name, "container", id[:12])
	ts := r.taskState(t.Name)
	if ts.State == api.TaskStateDead {
		if _, err := r.a.eng.Info(id); err == nil || ts.Failed {
			// Finished before; nothing to re-attach to. The last agent
			// may have died before its report reached a server, so the
			// final state is sent again (reports are idempotent).
			r.setTask(t.Name, ts)
			return
		}
	}
	policy := r.restartPolicy()
	var restartTimes []time.Time
	for {
		info, err := r.a.eng.Info(id)
		switch {
		case err == nil && info.State == api.ContainerCreated:
			if err := r.a.eng.Start(id); err != nil {
				r.failTask(t.Name, ts, err)
				return
			}
		case err == nil:
			// Running, or exited while the agent was away: re-attach.
			if info.State == api.ContainerRunning {
				log.Info("re-attached to running container", "pid", info.Pid)
			}
		case errors.Is(err, container.ErrNotFound):
			if r.isStopped() {
				return
			}
			req := r.taskRequest(id, t)
			_, err := r.a.eng.Create(r.ctx, req)
			if errors.Is(err, container.ErrExists) {
				// An older container of the same job still holds the name
				// on this node (a replaced allocation): disambiguate.
				req.Name += "." + r.id[:8]
				_, err = r.a.eng.Create(r.ctx, req)
			}
			if err != nil {
				r.failTask(t.Name, ts, err)
				return
			}
			if err := r.a.eng.Start(id); err != nil {
				_ = r.a.eng.Remove(id, true)
				r.failTask(t.Name, ts, err)
				return
			}
		default:
			r.failTask(t.Name, ts, err)
			return
		}
		if r.isStopped() {
			// A stop that arrived while the container was being created
			// found nothing to stop; the allocation is no longer wanted.
			if err := r.a.eng.Stop(id, -1); err != nil && !errors.Is(err, container.ErrNotRunning) {
				log.Warn("stop container started after its allocation was stopped", "err", err)
			}
		}
		if info, err := r.a.eng.Info(id); err == nil && info.State == api.ContainerRunning {
			ts.State, ts.ContainerID, ts.Pid = api.TaskStateRunning, id, info.Pid
			ts.StartedAt, ts.FinishedAt, ts.Message = info.StartedAt, 0, ""
			r.setTask(t.Name, ts)
		} else if err == nil && info.StartedAt > 0 {
			// It ran and has exited already (a quick program): it did
			// start, which the report below must say.
			ts.StartedAt = info.StartedAt
		}
		stopHealth := r.watchHealth(t.Name, id)
		st, err := r.a.eng.Wait(r.ctx, id)
		stopHealth()
		if err != nil {
			if r.ctx.Err() != nil {
				return // agent shutting down: leave the container to its shim
			}
			r.failTask(t.Name, ts, err)
			return
		}
		ts.ExitCode, ts.Signal, ts.OOMKilled = st.Code, st.Signal, st.OOMKilled
		ts.FinishedAt = st.FinishedAt.UnixNano()
		ts.ContainerID = id
		ts.Pid = 0
		failed := st.Code != 0
		log.Info("container exited", "exit_code", st.Code, "oom_killed", st.OOMKilled)

		now := time.Now()
		if r.isStopped() || !r.shouldRestart(policy, failed, now, &restartTimes) {
			ts.State, ts.Failed = api.TaskStateDead, failed && !r.isStopped()
			ts.Message = exitMessage(st)
			r.setTask(t.Name, ts)
			return
		}
		ts.Restarts++
		ts.State = api.TaskStatePending
		ts.Message = fmt.Sprintf("%s; restarting in %s", exitMessage(st), time.Duration(policy.Delay))
		r.setTask(t.Name, ts)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(time.Duration(policy.Delay)):
		}
		if err := r.a.eng.Remove(id, true); err != nil && !errors.Is(err, container.ErrNotFound) {
			r.failTask(t.Name, ts, err)
			return
		}
	}
}

func exitMessage(st *container.ExitStatus) string {
	switch {
	case st.OOMKilled:
		return fmt.Sprintf("exited with code %d: killed by the kernel for exceeding its memory limit (OOM)", st.Code)
	case st.Signal != 0:
		return fmt.Sprintf("exited with code %d (signal %d)", st.Code, st.Signal)
	}
	return fmt.Sprintf("exited with code %d", st.Code)
}

func (r *allocRunner) failTask(name string, ts *api.TaskState, err error) {
	r.log.Warn("task failed", "task", name, "err", err)
	ts.State, ts.Failed, ts.Message = api.TaskStateDead, true, err.Error()
	if ts.FinishedAt == 0 {
		ts.FinishedAt = time.Now().UnixNano()
	}
	r.setTask(name, ts)
}

func (r *allocRunner) restartPolicy() api.RestartPolicy {
	if g := r.group(); g != nil && g.Restart != nil {
		return *g.Restart
	}
	return api.RestartPolicy{}
}

// shouldRestart applies a Nomad-style restart policy: at most Attempts
// restarts within Interval. A zero Interval counts restarts forever.
func (r *allocRunner) shouldRestart(p api.RestartPolicy, failed bool, now time.Time, history *[]time.Time) bool {
	if !failed && !p.OnSuccess {
		return false
	}
	if p.Attempts <= 0 {
		return false
	}
	if iv := time.Duration(p.Interval); iv > 0 {
		kept := (*history)[:0]
		for _, t := range *history {
			if now.Sub(t) < iv {
				kept = append(kept, t)
			}
		}
		*history = kept
	}
	if len(*history) >= p.Attempts {
		return false
	}
	*history = append(*history, now)
	return true
}

func (r *allocRunner) taskRequest(id string, t *api.Task) *engineTaskRequest {
	alloc := r.current()
	name := alloc.JobID
	if g := groupOf(alloc); g == nil || len(g.Tasks) > 1 || len(alloc.Job.Groups) > 1 || g.Count > 1 {
		name = fmt.Sprintf("%s.%s.%d.%s", alloc.JobID, alloc.Group, alloc.Index, t.Name)
	}
	return &engineTaskRequest{ID: id, Name: name, AllocID: r.id, Task: t, Ports: alloc.Ports, GPUs: alloc.GPUs}
}
