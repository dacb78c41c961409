package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-memdb"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/internal/gossip"
	"github.com/berth-dev/berth/scheduler/placement"
)

const (
	// maxBlockingWait caps ?wait= on blocking queries.
	maxBlockingWait = 5 * time.Minute
	// defaultBlockingWait applies when ?index= is given without ?wait=.
	defaultBlockingWait = 5 * time.Minute
	// maxBodyBytes bounds request bodies.
	maxBodyBytes = 16 << 20
	// headerForwarded marks a write a follower forwarded to the leader, so
	// it is never forwarded twice.
	headerForwarded = "X-Berth-Forwarded"
	// leaderWait is how long a follower waits for an election to finish
	// before it answers a write with 503.
	leaderWait = 5 * time.Second
)

func (s *Server) routes() *echo.Echo {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.httpError
	e.Use(s.recoverPanics, s.indexHeader, s.audit, s.enforce, s.secretsFeed) // audit.go, acl.go, secret.go

	v := e.Group("/v1")
	v.GET("/jobs", s.jobList)
	v.POST("/jobs", s.leaderOnly(s.jobRegister))
	v.GET("/jobs/:id", s.jobGet)
	v.DELETE("/jobs/:id", s.leaderOnly(s.jobDeregister))
	v.GET("/jobs/:id/allocations", s.jobAllocs)
	v.POST("/jobs/:id/plan", s.jobPlan)
	v.GET("/allocations", s.allocList)
	v.GET("/allocations/:id", s.allocGet)
	v.PUT("/allocations/status", s.leaderOnly(s.allocUpdate))
	v.GET("/evaluations", s.evalList)
	v.GET("/evaluations/:id", s.evalGet)
	v.GET("/nodes", s.nodeList)
	v.POST("/nodes/register", s.leaderOnly(s.nodeRegister))
	v.GET("/nodes/:id", s.nodeGet)
	v.PUT("/nodes/:id/heartbeat", s.leaderOnly(s.nodeHeartbeat))
	v.GET("/nodes/:id/allocations", s.nodeAllocs)
	v.POST("/nodes/:id/drain", s.leaderOnly(s.nodeDrain))
	v.POST("/nodes/:id/eligibility", s.leaderOnly(s.nodeEligibility))
	v.Any("/nodes/:id/agent/*", newAgentProxy(s.proxyNode, s.agentTransport))
	v.GET("/status/leader", s.statusLeader)
	v.GET("/status/peers", s.statusPeers)
	v.GET("/operator/raft/peers", s.raftPeers)
	v.DELETE("/operator/raft/peers", s.leaderOnly(s.raftRemovePeer))
	v.GET("/operator/scheduler/configuration", s.schedConfigGet)               // http_operator.go
	v.PUT("/operator/scheduler/configuration", s.leaderOnly(s.schedConfigPut)) // http_operator.go
	v.PUT("/system/gc", s.leaderOnly(s.systemGC))                              // gc.go
	v.GET("/members", s.members)
	v.GET("/metrics", echo.WrapHandler(promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{})))
	v.GET("/agent/health", s.health)
	s.keyringRoutes(v)
	s.aclRoutes(v) // acl.go
	return e
}

// httpError writes every error as {"error": "..."} with a status code that
// fits it, and the X-Berth-Index header.
func (s *Server) httpError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	code, msg := http.StatusInternalServerError, err.Error()
	var he *echo.HTTPError
	switch {
	case errors.As(err, &he):
		code = he.Code
		msg = fmt.Sprint(he.Message)
		if he.Internal != nil && code >= 500 {
			msg += ": " + he.Internal.Error()
		}
	case errors.Is(err, placement.ErrInvalidJob), errors.Is(err, consensus.ErrInvalidRequest):
		code = http.StatusBadRequest
	case errors.Is(err, consensus.ErrJobNotFound), errors.Is(err, consensus.ErrNodeNotFound):
		code = http.StatusNotFound
	case errors.Is(err, consensus.ErrNotLeader), errors.Is(err, consensus.ErrLeadershipLost),
		errors.Is(err, consensus.ErrTimeout), errors.Is(err, consensus.ErrShutdown), errors.Is(err, ErrNoLeader):
		code = http.StatusServiceUnavailable
	}
	if code >= 500 && code != http.StatusServiceUnavailable {
		s.log.Error("HTTP request failed", "method", c.Request().Method, "path", c.Request().URL.Path, "err", err)
	}
	s.setIndex(c, 0)
	if c.Request().Method == http.MethodHead {
		_ = c.NoContent(code)
		return
	}
	_ = c.JSON(code, api.Error{Error: msg})
}

// recoverPanics turns a handler panic into a 500 instead of a dead
// connection; the panic is logged as the bug it is.
func (s *Server) recoverPanics(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				if r == http.ErrAbortHandler {
					panic(r)
				}
				s.log.Error("HTTP handler panicked", "method", c.Request().Method, "path", c.Request().URL.Path, "panic", r)
				err = echo.NewHTTPError(http.StatusInternalServerError, fmt.Sprintf("internal error: %v", r))
			}
		}()
		return next(c)
	}
}

// indexHeader gives every response an X-Berth-Index (handlers that know a
// more precise index overwrite it).
func (s *Server) indexHeader(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		s.setIndex(c, 0)
		return next(c)
	}
}

func badRequest(format string, args ...any) error {
	return echo.NewHTTPError(http.StatusBadRequest, fmt.Sprintf(format, args...))
}

func notFound(format string, args ...any) error {
	return echo.NewHTTPError(http.StatusNotFound, fmt.Sprintf(format, args...))
}

func conflict(format string, args ...any) error {
	return echo.NewHTTPError(http.StatusConflict, fmt.Sprintf(format, args...))
}

// setIndex sets X-Berth-Index; 0 means the newest state index.
func (s *Server) setIndex(c echo.Context, index uint64) {
	if index == 0 && s.raft != nil {
		index = s.raft.State().LatestIndex()
	}
	if index == 0 {
		index = 1
	}
	c.Response().Header().Set(api.HeaderIndex, strconv.FormatUint(index, 10))
}

func (s *Server) reply(c echo.Context, code int, index uint64, v any) error {
	s.setIndex(c, index)
	return c.JSON(code, v)
}

// decodeStrict reads a JSON body into v, refusing unknown fields and
// trailing data, so that a typo in a job spec is an error, not a silent
// default.
func decodeStrict(c echo.Context, v any) error {
	dec := json.NewDecoder(io.LimitReader(c.Request().Body, maxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("request body is empty; send a JSON object")
		}
		return badRequest("invalid request body: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return badRequest("invalid request body: unexpected data after the JSON object")
	}
	return nil
}

// leaderOnly runs a write on the leader; a follower forwards the request
// to the leader's HTTP address, learned from gossip metadata.
func (s *Server) leaderOnly(h echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.raft.IsLeader() {
			return h(c)
		}
		return s.forward(c)
	}
}

func (s *Server) leaderHTTPAddr() (string, error) {
	leader := s.raft.LeaderAddr()
	if leader == "" {
		return "", ErrNoLeader
	}
	for _, p := range s.pool.Peers() {
		if p.Meta.Role == gossip.RoleServer && p.Meta.RaftAddr == leader && p.Meta.HTTPAddr != "" {
			return p.Meta.HTTPAddr, nil
		}
	}
	return "", fmt.Errorf("%w: leader %s is not in the gossip pool yet", ErrNoLeader, leader)
}

func (s *Server) forward(c echo.Context) error {
	r := c.Request()
	if r.Header.Get(headerForwarded) != "" {
		return fmt.Errorf("%w: this server received a forwarded write but is not the leader", ErrNoLeader)
	}
	// During an election there is briefly no leader: wait a little for
	// one rather than failing the write at once.
	addr, err := s.leaderHTTPAddr()
	for deadline := time.Now().Add(leaderWait); err != nil && time.Now().Before(deadline); {
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-time.After(50 * time.Millisecond):
		}
		if s.raft.IsLeader() {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "this server just became the leader; retry the request")
		}
		addr, err = s.leaderHTTPAddr()
	}
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, "http://"+addr+r.URL.RequestURI(), r.Body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
	req.Header.Set(headerForwarded, s.cfg.NodeName)
	if tok := r.Header.Get("Authorization"); tok != "" { // the leader checks ACLs again
		req.Header.Set("Authorization", tok)
	}
	resp, err := s.fwd.Do(req)
	if err != nil {
		return fmt.Errorf("%w: forwarding to the leader at %s failed: %v", ErrNoLeader, addr, err)
	}
	defer resp.Body.Close()
	s.metrics.forwarded.Inc()
	for _, h := range []string{"Content-Type", api.HeaderIndex} {
		if v := resp.Header.Get(h); v != "" {
			c.Response().Header().Set(h, v)
		}
	}
	c.Response().WriteHeader(resp.StatusCode)
	_, err = io.Copy(c.Response(), resp.Body)
	return err
}

// blocking runs a read as a blocking query: with ?index=N it waits (up to
// ?wait=, at most 5m) until fn's index passes N. fn returns the index of
// what it read, the value to send, and an error.
//
// Reads are consistent by default: a follower forwards them to the leader
// (so a client reads its own writes whichever server it asks). With
// ?stale, or while no leader is known, the follower answers from its own
// state, which may lag by a few entries.
func (s *Server) blocking(c echo.Context, fn func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error)) error {
	_, stale := c.QueryParams()["stale"]
	if !stale && !s.raft.IsLeader() && c.Request().Header.Get(headerForwarded) == "" {
		if _, err := s.leaderHTTPAddr(); err == nil {
			return s.forward(c)
		}
	}
	if !stale && s.raft.IsLeader() {
		if err := s.waitLeaderReady(c.Request().Context()); err != nil {
			return err
		}
	}
	var minIndex uint64
	if v := c.QueryParam("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("index: %q is not a non-negative integer", v)
		}
		minIndex = n
	}
	wait := defaultBlockingWait
	if v := c.QueryParam("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return badRequest("wait: %q is not a duration such as 30s", v)
		}
		wait = d
	}
	if wait > maxBlockingWait {
		wait = maxBlockingWait
	}
	ctx := c.Request().Context()
	if minIndex > 0 {
		// A little jitter spreads the wake-ups of many agents.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, wait)
		defer cancel()
	}
	var (
		out   any
		index uint64
	)
	err := s.raft.State().BlockingQuery(ctx, minIndex, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, error) {
		i, o, err := fn(ws, st)
		index, out = i, o
		return i, err
	})
	if err != nil {
		return err
	}
	return s.reply(c, http.StatusOK, max(index, 1), out)
}

// --- jobs

// jobStatus derives a job's status from its allocations: dead once it is
// stopped or (batch) everything finished, running while a copy runs,
// pending otherwise.
func jobStatus(job *api.Job, allocs []*api.Allocation) string {
	live, running, finished := 0, 0, 0
	for _, a := range allocs {
		if a.Terminal() {
			finished++
			continue
		}
		live++
		if a.ClientStatus == api.AllocClientRunning {
			running++
		}
	}
	switch {
	case job.Stop && live == 0:
		return api.JobStatusDead
	case job.Stop:
		return api.JobStatusRunning // still stopping
	case running > 0:
		return api.JobStatusRunning
	case job.Type == api.JobTypeBatch && live == 0 && finished > 0:
		return api.JobStatusDead
	}
	return api.JobStatusPending
}

func withStatus(job *api.Job, allocs []*api.Allocation) *api.Job {
	j := *job
	j.Status = jobStatus(job, allocs)
	return &j
}

func maxAllocIndex(allocs []*api.Allocation) uint64 {
	var m uint64
	for _, a := range allocs {
		m = max(m, a.ModifyIndex)
	}
	return m
}

func (s *Server) jobList(c echo.Context) error {
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		jobs, err := st.Jobs(ws)
		if err != nil {
			return 0, nil, err
		}
		out := make([]*api.Job, 0, len(jobs))
		for _, j := range jobs {
			allocs, err := st.AllocsByJob(nil, j.ID)
			if err != nil {
				return 0, nil, err
			}
			out = append(out, redactJob(withStatus(j, allocs)))
		}
		idx := max(st.IndexWatch(ws, consensus.TableJobs), st.IndexWatch(ws, consensus.TableAllocs))
		return idx, out, nil
	})
}

func (s *Server) jobGet(c echo.Context) error {
	id := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		job, err := st.JobByID(ws, id)
		if err != nil {
			return 0, nil, err
		}
		if job == nil {
			return 0, nil, notFound("job %q not found", id)
		}
		allocs, err := st.AllocsByJob(ws, id)
		if err != nil {
			return 0, nil, err
		}
		return max(job.ModifyIndex, maxAllocIndex(allocs)), redactJob(withStatus(job, allocs)), nil
	})
}

func (s *Server) jobAllocs(c echo.Context) error {
	id := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		job, err := st.JobByID(ws, id)
		if err != nil {
			return 0, nil, err
		}
		allocs, err := st.AllocsByJob(ws, id)
		if err != nil {
			return 0, nil, err
		}
		if job == nil && len(allocs) == 0 {
			return 0, nil, notFound("job %q not found", id)
		}
		idx := maxAllocIndex(allocs)
		if job != nil {
			idx = max(idx, job.ModifyIndex)
		}
		return idx, redactAllocs(allocs), nil
	})
}

// readJob decodes, canonicalizes and validates a submitted job.
func readJob(c echo.Context) (*api.Job, error) {
	var req api.JobRegisterRequest
	if err := decodeStrict(c, &req); err != nil {
		return nil, err
	}
	if req.Job == nil {
		return nil, badRequest("job: is missing; send {\"job\": {...}}")
	}
	job := req.Job
	placement.Canonicalize(job)
	if err := placement.ValidateJob(job); err != nil {
		return nil, badRequest("invalid job: %v", err)
	}
	// Server-set fields are never taken from the client.
	job.Stop, job.Status, job.Version = false, "", 0
	job.CreateIndex, job.ModifyIndex, job.JobModifyIndex = 0, 0, 0
	return job, nil
}

func (s *Server) jobRegister(c echo.Context) error {
	job, err := readJob(c)
	if err != nil {
		return err
	}
	job.SubmitTime = time.Now().UnixNano()
	eval := newEval(job, job.ID, api.EvalTriggerJobRegister, "")
	idx, err := s.raft.Apply(consensus.JobRegisterRequestType, &consensus.JobRegisterRequest{Job: job, Eval: eval}, applyTimeout)
	if err != nil {
		return err
	}
	s.broker.Enqueue(eval)
	s.log.Info("job registered", "job", job.ID, "eval", eval.ID, "index", idx)
	return s.reply(c, http.StatusOK, idx, &api.JobRegisterResponse{EvalID: eval.ID, JobModifyIndex: idx, Index: idx})
}

func (s *Server) jobDeregister(c echo.Context) error {
	id := c.Param("id")
	purge := false
	if v := c.QueryParam("purge"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("purge: %q is not true or false", v)
		}
		purge = b
	}
	job, err := s.raft.State().JobByID(nil, id)
	if err != nil {
		return err
	}
	if job == nil {
		return notFound("job %q not found", id)
	}
	eval := newEval(job, id, api.EvalTriggerJobDeregister, "")
	idx, err := s.raft.Apply(consensus.JobDeregisterRequestType, &consensus.JobDeregisterRequest{JobID: id, Purge: purge, Eval: eval}, applyTimeout)
	if err != nil {
		return err
	}
	s.broker.Enqueue(eval)
	s.log.Info("job stopped", "job", id, "purge", purge, "eval", eval.ID)
	return s.reply(c, http.StatusOK, idx, &api.JobDeregisterResponse{EvalID: eval.ID, Index: idx})
}

// jobPlan is a dry run of a register: it schedules the job against the
// current state and reports what would change, writing nothing.
func (s *Server) jobPlan(c echo.Context) error {
	job, err := readJob(c)
	if err != nil {
		return err
	}
	if id := c.Param("id"); id != job.ID {
		return badRequest("name: job name %q does not match the URL's job %q", job.ID, id)
	}
	snap := s.raft.State().Snapshot()
	if old, _ := snap.JobByID(nil, job.ID); old != nil {
		job.Version = old.Version
	}
	eval := newEval(job, job.ID, api.EvalTriggerJobRegister, "")
	sc := snap.SchedulerConfig()
	n := 0
	plan, err := schedule(snap, eval, job, placement.Options{
		Algorithm: sc.Algorithm, PreemptionEnabled: s.cfg.PreemptionEnabled || sc.PreemptionEnabled,
		NewID: func() string { n++; return fmt.Sprintf("plan-%d", n) }, Now: time.Now().UnixNano(),
	})
	if err != nil {
		return err
	}
	out := &api.JobPlanResponse{Placements: map[string]int{}, Failed: plan.FailedGroups}
	nodeName := func(id string) string {
		if nd, _ := snap.NodeByID(nil, id); nd != nil && nd.Name != "" {
			return nd.Name
		}
		return id
	}
	for nodeID, allocs := range plan.NodeAllocation {
		for _, a := range allocs {
			out.Placements[a.Group]++
			if out.Nodes == nil {
				out.Nodes = map[string]int{}
			}
			out.Nodes[nodeName(nodeID)]++
		}
	}
	for _, set := range []map[string][]*api.Allocation{plan.NodeUpdate, plan.NodePreemptions} {
		for _, allocs := range set {
			for _, a := range allocs {
				if out.Stops == nil {
					out.Stops = map[string]int{}
				}
				out.Stops[a.Group]++
			}
		}
	}
	if len(out.Failed) == 0 {
		out.Failed = nil
	}
	return s.reply(c, http.StatusOK, snap.LatestIndex(), out)
}

// --- allocations and evaluations

func (s *Server) allocList(c echo.Context) error {
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		allocs, err := st.Allocs(ws)
		return st.IndexWatch(ws, consensus.TableAllocs), redactAllocs(allocs), err
	})
}

func (s *Server) allocGet(c echo.Context) error {
	id := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		a, err := st.AllocByID(ws, id)
		if err != nil {
			return 0, nil, err
		}
		if a == nil {
			return 0, nil, notFound("allocation %q not found", id)
		}
		return a.ModifyIndex, redactAlloc(a), nil
	})
}

var validClientStatus = map[string]bool{
	api.AllocClientPending: true, api.AllocClientRunning: true, api.AllocClientComplete: true,
	api.AllocClientFailed: true, api.AllocClientLost: true,
}

// allocUpdate takes agents' reports. An allocation that newly failed (its
// restart policy is exhausted) or was lost gets its job re-evaluated, so a
// replacement is placed; one that finished frees capacity, which retries
// blocked evaluations.
func (s *Server) allocUpdate(c echo.Context) error {
	var req api.AllocUpdateRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if len(req.Allocs) == 0 {
		return badRequest("allocs: is empty")
	}
	st := s.raft.State()
	updates := make([]*api.Allocation, 0, len(req.Allocs))
	var evals []*api.Evaluation
	evalFor := map[string]bool{}
	freed := false
	for i, a := range req.Allocs {
		if a == nil || a.ID == "" {
			return badRequest("allocs[%d].id: is required", i)
		}
		if a.ClientStatus != "" && !validClientStatus[a.ClientStatus] {
			return badRequest("allocs[%d].client_status: %q is not one of pending, running, complete, failed, lost", i, a.ClientStatus)
		}
		updates = append(updates, &api.Allocation{ID: a.ID, ClientStatus: a.ClientStatus,
			ClientDescription: a.ClientDescription, TaskStates: a.TaskStates})
		old, err := st.AllocByID(nil, a.ID)
		if err != nil {
			return err
		}
		if old != nil {
			// Only the node's own token reports its allocations.
			if ok, err := s.nodeBound(requestAuthz(c), old.NodeID); err != nil {
				return err
			} else if !ok {
				return errPermissionDenied
			}
		}
		if old == nil || old.Terminal() {
			continue
		}
		switch a.ClientStatus {
		case api.AllocClientComplete:
			freed = true
		case api.AllocClientFailed, api.AllocClientLost:
			freed = true
			if old.DesiredStatus == api.AllocDesiredRun && !evalFor[old.JobID] {
				if job, _ := st.JobByID(nil, old.JobID); job != nil && !job.Stop {
					evalFor[old.JobID] = true
					evals = append(evals, newEval(job, job.ID, api.EvalTriggerAllocFailure, old.NodeID))
				}
			}
		}
	}
	idx, err := s.raft.Apply(consensus.AllocClientUpdateRequestType, &consensus.AllocClientUpdateRequest{Allocs: updates, Evals: evals}, applyTimeout)
	if err != nil {
		return err
	}
	s.broker.Enqueue(evals...)
	if freed {
		s.unblock(idx)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

func (s *Server) evalList(c echo.Context) error {
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		evals, err := st.Evals(ws)
		if evals == nil {
			evals = []*api.Evaluation{}
		}
		return st.IndexWatch(ws, consensus.TableEvals), evals, err
	})
}

func (s *Server) evalGet(c echo.Context) error {
	id := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		e, err := st.EvalByID(ws, id)
		if err != nil {
			return 0, nil, err
		}
		if e == nil {
			return 0, nil, notFound("evaluation %q not found", id)
		}
		return e.ModifyIndex, e, nil
	})
}

// --- nodes

// findNode resolves a node by exact ID, then name, then unique ID prefix.
func findNode(st *consensus.StateStore, ws memdb.WatchSet, ref string) (*api.Node, error) {
	if ref == "" {
		return nil, badRequest("node: an ID, ID prefix or name is required")
	}
	if n, err := st.NodeByID(ws, ref); err != nil || n != nil {
		return n, err
	}
	if n, err := st.NodeByName(ws, ref); err != nil || n != nil {
		return n, err
	}
	nodes, err := st.Nodes(ws)
	if err != nil {
		return nil, err
	}
	var match []*api.Node
	for _, n := range nodes {
		if strings.HasPrefix(n.ID, ref) {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 0:
		return nil, notFound("node %q not found (give its ID, a unique ID prefix, or its name)", ref)
	case 1:
		return match[0], nil
	}
	return nil, badRequest("node: prefix %q matches %d nodes; give more of the ID", ref, len(match))
}

func (s *Server) lookupNode(ref string) (*api.Node, error) {
	return findNode(s.raft.State(), nil, ref)
}

// proxyNode resolves the node of an agent-proxy request. A follower's
// state trails the leader's by a few milliseconds, and the CLI finds nodes
// with consistent reads, which the leader answers: a node that registered
// a moment ago can be known to the CLI and not yet to this follower. So a
// follower that does not know the node asks the leader before it answers
// 404.
func (s *Server) proxyNode(r *http.Request, ref string) (*api.Node, error) {
	return s.nodeOrLeader(r.Context(), r.Header.Get("Authorization"), ref, s.lookupNode)
}

// nodeOrLeader resolves ref with local, and on a follower asks the leader
// when local does not know it, with the request's Authorization (the
// leader checks ACLs again). Any failure to reach the leader answers
// with local's error.
func (s *Server) nodeOrLeader(ctx context.Context, auth, ref string, local func(string) (*api.Node, error)) (*api.Node, error) {
	n, err := local(ref)
	var he *echo.HTTPError
	if err == nil || !errors.As(err, &he) || he.Code != http.StatusNotFound || s.raft.IsLeader() {
		return n, err
	}
	addr, lerr := s.leaderHTTPAddr()
	if lerr != nil {
		return nil, err
	}
	req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/nodes/"+url.PathEscape(ref), nil)
	if rerr != nil {
		return nil, err
	}
	req.Header.Set(headerForwarded, s.cfg.NodeName)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, rerr := s.fwd.Do(req)
	if rerr != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, err
	}
	var ln api.Node
	if derr := json.NewDecoder(io.LimitReader(resp.Body, maxBodyBytes)).Decode(&ln); derr != nil {
		return nil, fmt.Errorf("node %q from the leader at %s: %w", ref, addr, derr)
	}
	return &ln, nil
}

func (s *Server) nodeList(c echo.Context) error {
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		nodes, err := st.Nodes(ws)
		if nodes == nil {
			nodes = []*api.Node{}
		}
		return st.IndexWatch(ws, consensus.TableNodes), nodes, err
	})
}

func (s *Server) nodeGet(c echo.Context) error {
	ref := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		n, err := findNode(st, ws, ref)
		if err != nil {
			return 0, nil, err
		}
		return n.ModifyIndex, n, nil
	})
}

// nodeAllocs is what agents block on. Its index is the newest
// modification among the node's own allocations, so an agent wakes only
// when something of its own changed.
func (s *Server) nodeAllocs(c echo.Context) error {
	ref := c.Param("id")
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		n, err := findNode(st, nil, ref)
		if err != nil {
			return 0, nil, err
		}
		allocs, err := st.AllocsByNode(ws, n.ID)
		if err != nil {
			return 0, nil, err
		}
		if allocs == nil {
			allocs = []*api.Allocation{}
		}
		// Unlike every other read route, this one carries the tasks'
		// registry credentials: the agent needs them to pull.
		// A purge deletes allocations and stamps their nodes instead, so
		// the node's own index counts too (consensus purgeAllocs).
		return max(maxAllocIndex(allocs), n.ModifyIndex, 1), allocs, nil
	})
}

func validateNode(n *api.Node) error {
	switch {
	case n == nil:
		return badRequest("node: is missing; send {\"node\": {...}}")
	case n.ID == "":
		return badRequest("node.id: is required (agents keep a stable ID in their data directory)")
	case strings.ContainsAny(n.ID, "/ \t\n"):
		return badRequest("node.id: %q must not contain '/' or spaces", n.ID)
	case n.Name == "":
		return badRequest("node.name: is required")
	case n.Resources.CPU < 0:
		return badRequest("node.resources.cpu: must be >= 0, got %d", n.Resources.CPU)
	case n.Resources.MemoryMB < 0:
		return badRequest("node.resources.memory: must be >= 0, got %d", n.Resources.MemoryMB)
	case n.Resources.DiskMB < 0:
		return badRequest("node.resources.disk: must be >= 0, got %d", n.Resources.DiskMB)
	}
	seen := map[string]bool{}
	for i, g := range n.Resources.GPUs {
		if g.UUID == "" {
			return badRequest("node.resources.gpus[%d].uuid: is required", i)
		}
		if seen[g.UUID] {
			return badRequest("node.resources.gpus[%d].uuid: %q is listed twice", i, g.UUID)
		}
		seen[g.UUID] = true
	}
	if n.Eligibility != "" && n.Eligibility != api.NodeEligible && n.Eligibility != api.NodeIneligible {
		return badRequest("node.eligibility: %q is not eligible or ineligible", n.Eligibility)
	}
	return nil
}

func (s *Server) nodeRegister(c echo.Context) error {
	var req api.NodeRegisterRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	n := req.Node
	if err := validateNode(n); err != nil {
		return err
	}
	n.TokenAccessor = ""
	if a := requestAuthz(c); a != nil {
		if ok, err := s.nodeBound(a, n.ID); err != nil {
			return err
		} else if !ok {
			return errPermissionDenied
		}
		if !a.management {
			n.TokenAccessor = a.accessor
		} else if old, err := s.raft.State().NodeByID(nil, n.ID); err == nil && old != nil {
			n.TokenAccessor = old.TokenAccessor // an operator's re-registration keeps the owner
		}
	}
	st := s.raft.State()
	if other, err := st.NodeByName(nil, n.Name); err != nil {
		return err
	} else if other != nil && other.ID != n.ID && other.Status != api.NodeStatusDown {
		return conflict("node.name: %q is already used by live node %s; give this node another name", n.Name, other.ID)
	}
	if n.Datacenter == "" {
		n.Datacenter = s.cfg.Datacenter
	}
	if other, err := st.NodeByID(nil, n.ID); err != nil {
		return err
	} else if other != nil {
		// Eligibility and drain belong to the operator once a node
		// exists; a re-registering agent keeps them.
		n.Eligibility = ""
	}
	n.Status = api.NodeStatusReady
	n.StatusUpdatedAt = time.Now().UnixNano()
	n.Drain, n.CreateIndex, n.ModifyIndex = false, 0, 0
	evals, err := s.evalsForSystemJobs(n.ID)
	if err != nil {
		return err
	}
	idx, err := s.raft.Apply(consensus.NodeRegisterRequestType, &consensus.NodeRegisterRequest{Node: n, Evals: evals}, applyTimeout)
	if err != nil {
		return err
	}
	ttl := s.heartbeatTTL(s.nodeCount())
	s.hb.ResetWithGrace(n.ID, time.Now(), ttl-s.cfg.HeartbeatTTL)
	s.broker.Enqueue(evals...)
	s.unblock(idx)
	s.log.Info("node registered", "node", n.ID, "name", n.Name, "index", idx)
	return s.reply(c, http.StatusOK, idx, &api.NodeRegisterResponse{HeartbeatTTL: api.Duration(ttl), Index: idx})
}

func (s *Server) nodeHeartbeat(c echo.Context) error {
	id := c.Param("id")
	st := s.raft.State()
	n, err := st.NodeByID(nil, id)
	if err != nil {
		return err
	}
	if n == nil {
		return notFound("node %q is not registered; register it again", id)
	}
	s.metrics.heartbeats.Inc()
	ttl := s.heartbeatTTL(s.nodeCount())
	s.hb.ResetWithGrace(id, time.Now(), ttl-s.cfg.HeartbeatTTL)
	idx := st.LatestIndex()
	if n.Status != api.NodeStatusReady {
		evals, err := s.evalsForSystemJobs(id)
		if err != nil {
			return err
		}
		idx, err = s.raft.Apply(consensus.NodeUpdateStatusRequestType, &consensus.NodeUpdateStatusRequest{
			NodeID: id, Status: api.NodeStatusReady, UpdatedAt: time.Now().UnixNano(), Evals: evals}, applyTimeout)
		if err != nil {
			return err
		}
		s.log.Info("node is ready again", "node", id, "name", n.Name)
		s.broker.Enqueue(evals...)
		s.unblock(idx)
	}
	return s.reply(c, http.StatusOK, idx, &api.NodeRegisterResponse{HeartbeatTTL: api.Duration(ttl), Index: idx})
}

func (s *Server) nodeDrain(c echo.Context) error {
	var req api.NodeDrainRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	n, err := s.lookupNode(c.Param("id"))
	if err != nil {
		return err
	}
	upd := &consensus.NodeUpdateEligibilityRequest{NodeID: n.ID, Drain: &req.Enable}
	if req.Enable {
		upd.Eligibility = api.NodeIneligible
		if upd.Evals, err = s.evalsForNode(n.ID, api.EvalTriggerNodeDrain); err != nil {
			return err
		}
	} else {
		upd.Eligibility = api.NodeEligible
		if upd.Evals, err = s.evalsForSystemJobs(n.ID); err != nil {
			return err
		}
	}
	idx, err := s.raft.Apply(consensus.NodeUpdateEligibilityRequestType, upd, applyTimeout)
	if err != nil {
		return err
	}
	s.broker.Enqueue(upd.Evals...)
	if !req.Enable {
		s.unblock(idx)
	}
	s.log.Info("node drain changed", "node", n.ID, "name", n.Name, "drain", req.Enable, "evals", len(upd.Evals))
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

func (s *Server) nodeEligibility(c echo.Context) error {
	var req api.NodeEligibilityRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	n, err := s.lookupNode(c.Param("id"))
	if err != nil {
		return err
	}
	if req.Eligible && n.Drain {
		return conflict("node %s is draining; turn drain off to make it eligible", n.Name)
	}
	upd := &consensus.NodeUpdateEligibilityRequest{NodeID: n.ID, Eligibility: api.NodeIneligible}
	if req.Eligible {
		upd.Eligibility = api.NodeEligible
		if upd.Evals, err = s.evalsForSystemJobs(n.ID); err != nil {
			return err
		}
	}
	idx, err := s.raft.Apply(consensus.NodeUpdateEligibilityRequestType, upd, applyTimeout)
	if err != nil {
		return err
	}
	s.broker.Enqueue(upd.Evals...)
	if req.Eligible {
		s.unblock(idx)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

// --- status, operator, members, health

func (s *Server) statusLeader(c echo.Context) error {
	return s.reply(c, http.StatusOK, 0, s.raft.LeaderAddr())
}

func (s *Server) statusPeers(c echo.Context) error {
	peers, err := s.raft.Peers()
	if err != nil {
		return err
	}
	out := make([]string, 0, len(peers))
	for _, p := range peers {
		out = append(out, p.Address)
	}
	return s.reply(c, http.StatusOK, 0, out)
}

func (s *Server) raftPeers(c echo.Context) error {
	peers, err := s.raft.Peers()
	if err != nil {
		return err
	}
	if peers == nil {
		peers = []api.RaftPeer{}
	}
	return s.reply(c, http.StatusOK, 0, peers)
}

// raftRemovePeer is in http_operator.go.

func (s *Server) members(c echo.Context) error {
	leader := s.raft.LeaderAddr()
	ms := s.pool.Members()
	for i := range ms {
		ms[i].Leader = leader != "" && ms[i].Role == gossip.RoleServer && ms[i].RaftAddr == leader
	}
	return s.reply(c, http.StatusOK, 0, ms)
}

func (s *Server) health(c echo.Context) error {
	leader := s.raft.LeaderAddr()
	return s.reply(c, http.StatusOK, 0, &api.Health{OK: leader != "", Role: gossip.RoleServer, Leader: leader, Version: Version})
}

// --- registry credentials

// redactedSecret replaces a task's registry secrets in what the read
// routes return. Only the node that runs a task gets them in plain form
// (nodeAllocs). They are sealed in the Raft log and snapshots when the
// server has a secrets key (secret_auth.go).
const redactedSecret = "<redacted>"

func hasAuth(job *api.Job) bool {
	if job == nil {
		return false
	}
	for _, g := range job.Groups {
		if g == nil {
			continue
		}
		for _, t := range g.Tasks {
			if t != nil && t.Auth != nil {
				return true
			}
		}
	}
	return false
}

// redactJob returns job with its tasks' registry passwords and tokens
// replaced by redactedSecret. A job with credentials is copied first:
// objects from the state store are shared and never changed in place.
func redactJob(job *api.Job) *api.Job {
	if !hasAuth(job) {
		return job
	}
	c := consensus.CopyJob(job)
	for _, g := range c.Groups {
		if g == nil {
			continue
		}
		for _, t := range g.Tasks {
			if t == nil || t.Auth == nil {
				continue
			}
			// A new RegistryAuth: the copy still shares the old one.
			a := &api.RegistryAuth{Username: t.Auth.Username}
			for _, f := range []struct{ src, dst *string }{
				{&t.Auth.Password, &a.Password}, {&t.Auth.IdentityToken, &a.IdentityToken}, {&t.Auth.RegistryToken, &a.RegistryToken},
			} {
				if *f.src != "" {
					*f.dst = redactedSecret
				}
			}
			t.Auth = a
		}
	}
	return c
}

// redactAlloc returns a with its embedded job redacted (redactJob).
func redactAlloc(a *api.Allocation) *api.Allocation {
	if a == nil || !hasAuth(a.Job) {
		return a
	}
	c := consensus.CopyAlloc(a)
	c.Job = redactJob(a.Job)
	return c
}

// redactAllocs redacts each allocation (redactAlloc); nil becomes an
// empty list so that it encodes as [].
func redactAllocs(allocs []*api.Allocation) []*api.Allocation {
	out := make([]*api.Allocation, len(allocs))
	for i, a := range allocs {
		out[i] = redactAlloc(a)
	}
	return out
}
