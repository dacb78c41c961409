package agent

import (
	"context"
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

// An image's HEALTHCHECK (Docker's semantics): the agent runs the probe
// inside the running container every Interval; a probe that exits 0 makes
// the task "healthy", Retries failures in a row (failures during
// StartPeriod do not count) make it "unhealthy"; until then it is
// "starting". The status is the task's Health in the allocation.

// Health statuses, as in TaskState.Health.
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Docker's defaults for a HEALTHCHECK that leaves them out.
const (
	defaultHealthInterval = 30 * time.Second
	defaultHealthTimeout  = 30 * time.Second
	defaultHealthRetries  = 3
)

// healthProbe is a parsed HEALTHCHECK.
type healthProbe struct {
	args        []string
	interval    time.Duration
	timeout     time.Duration
	startPeriod time.Duration
	retries     int
}

// parseHealth turns an image config's Healthcheck into a probe; nil when
// there is none or it is disabled (NONE).
func parseHealth(h *v1.HealthConfig) *healthProbe {
	if h == nil || len(h.Test) == 0 {
		return nil
	}
	p := &healthProbe{interval: h.Interval, timeout: h.Timeout, startPeriod: h.StartPeriod, retries: h.Retries}
	switch h.Test[0] {
	case "CMD":
		p.args = h.Test[1:]
	case "CMD-SHELL":
		if len(h.Test) < 2 {
			return nil
		}
		p.args = []string{"/bin/sh", "-c", h.Test[1]}
	default: // "NONE", or a test we do not know
		return nil
	}
	if len(p.args) == 0 {
		return nil
	}
	if p.interval <= 0 {
		p.interval = defaultHealthInterval
	}
	if p.timeout <= 0 {
		p.timeout = defaultHealthTimeout
	}
	if p.retries <= 0 {
		p.retries = defaultHealthRetries
	}
	return p
}

// healthState is the pure part: probe results in, status out. Time is
// an argument (the probe's start relative to the container's).
type healthState struct {
	status   string
	failures int
}

// observe records one probe result; sinceStart is how long the
// container had run when the probe started. It reports whether the
// status changed.
func (h *healthState) observe(p *healthProbe, ok bool, sinceStart time.Duration) bool {
	old := h.status
	switch {
	case ok:
		h.status, h.failures = HealthHealthy, 0
	case sinceStart < p.startPeriod:
		// Failures while the program starts up do not count.
	default:
		h.failures++
		if h.failures >= p.retries {
			h.status = HealthUnhealthy
		}
	}
	if h.status == "" {
		h.status = HealthStarting
	}
	return h.status != old
}

// watchHealth runs the HEALTHCHECK of the container id's image (if it
// has one) until the returned stop is called, reporting the task's
// health as it changes.
func (r *allocRunner) watchHealth(task, id string) (stop func()) {
	info, err := r.a.eng.Info(id)
	if err != nil || info.ImageID == "" {
		return func() {}
	}
	cfg, err := r.a.eng.Images.ConfigFile(info.ImageID)
	if err != nil {
		return func() {}
	}
	p := parseHealth(cfg.Config.Healthcheck)
	if p == nil {
		return func() {}
	}
	started := time.Now()
	if info.StartedAt > 0 {
		started = time.Unix(0, info.StartedAt)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var st healthState
		st.observe(p, false, 0) // "starting"
		r.setHealth(task, st.status)
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			probeStart := time.Now()
			pctx, pcancel := context.WithTimeout(ctx, p.timeout)
			code, err := r.a.eng.Containers.Exec(pctx, id, &container.Process{Args: p.args}, nil, io.Discard, io.Discard)
			pcancel()
			if ctx.Err() != nil {
				return
			}
			if st.observe(p, err == nil && code == 0, probeStart.Sub(started)) {
				r.log.Info("container health changed", "task", task, "health", st.status)
				r.setHealth(task, st.status)
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// setHealth records a task's health and reports the allocation.
func (r *allocRunner) setHealth(task, health string) {
	r.mu.Lock()
	ts, ok := r.tasks[task]
	if !ok || ts.State != api.TaskStateRunning {
		r.mu.Unlock()
		return
	}
	c := *ts
	c.Health = health
	r.tasks[task] = &c
	status, desc := r.clientStatusLocked(&c)
	up := &api.Allocation{ID: r.id, ClientStatus: status, ClientDescription: desc, TaskStates: copyTasks(r.tasks)}
	r.mu.Unlock()
	r.persist()
	r.a.reportAlloc(up)
}
