package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/internal/gossip"
)

const (
	// applyTimeout bounds how long a write waits to enter the Raft pipeline.
	applyTimeout = 10 * time.Second
	// agentFailGrace is how long a node whose agent failed in gossip has
	// to heartbeat before it is marked down (well under the TTL).
	agentFailGrace = 500 * time.Millisecond
)

// monitorLeadership starts the leader loops when this server gains
// leadership and stops them when it loses it. Raft's LeaderCh may coalesce
// flaps, so the loop also polls IsLeader.
func (s *Server) monitorLeadership() {
	defer s.wg.Done()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.raft.LeaderCh():
		case <-tick.C:
		}
		leader := s.raft.IsLeader()
		s.leaderMu.Lock()
		leading := s.leading
		s.leaderMu.Unlock()
		switch {
		case leader && !leading:
			s.establishLeadership()
		case !leader && leading:
			s.revokeLeadership()
		}
	}
}

func (s *Server) establishLeadership() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if s.leading || s.ctx.Err() != nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	s.leading, s.leaderCancel = true, cancel
	s.broker.SetEnabled(true)
	ready := make(chan struct{})
	s.readyMu.Lock()
	s.readyCh = ready
	s.readyMu.Unlock()
	s.log.Info("gained leadership: starting scheduling")
	s.leaderWG.Add(1)
	go func() {
		defer s.leaderWG.Done()
		if !s.restoreLeaderState(ctx) {
			return
		}
		close(ready)
		s.leaderWG.Add(4 + s.cfg.Workers)
		go func() { defer s.leaderWG.Done(); s.applier.Run(ctx) }()
		go func() { defer s.leaderWG.Done(); s.heartbeatLoop(ctx) }()
		go func() { defer s.leaderWG.Done(); s.leaderHousekeeping(ctx) }()
		go func() { defer s.leaderWG.Done(); s.gcLoop(ctx, gcInterval, gcThreshold) }()
		for i := 0; i < s.cfg.Workers; i++ {
			go func(i int) { defer s.leaderWG.Done(); s.runWorker(ctx, i) }(i)
		}
	}()
}

// waitLeaderReady waits until this server, as leader, has applied every
// entry committed before it took over, so that what it reads includes
// every acknowledged write. A new leader replays the log into its state
// after winning the election, and reads in that window would miss
// acknowledged jobs.
func (s *Server) waitLeaderReady(ctx context.Context) error {
	deadline := time.NewTimer(applyTimeout)
	defer deadline.Stop()
	for {
		s.readyMu.Lock()
		ch := s.readyCh
		s.readyMu.Unlock()
		var wake <-chan time.Time
		if ch == nil {
			// Raft says leader, but the leadership loop has not
			// started this term's work yet.
			wake = time.After(10 * time.Millisecond)
		}
		select {
		case <-ch:
			return nil
		case <-wake:
			if !s.raft.IsLeader() {
				return fmt.Errorf("%w: lost leadership while catching up", ErrNoLeader)
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("%w: the new leader is still catching up with the log", ErrNoLeader)
		}
	}
}

// revokeLeadership stops the leader loops and forgets leader-only state.
func (s *Server) revokeLeadership() {
	s.leaderMu.Lock()
	defer s.leaderMu.Unlock()
	if !s.leading {
		return
	}
	s.leaderCancel()
	s.leaderWG.Wait()
	s.leading = false
	s.readyMu.Lock()
	s.readyCh = nil
	s.readyMu.Unlock()
	s.broker.SetEnabled(false)
	s.blocked.Reset()
	s.hb.Clear()
	s.log.Info("lost leadership: scheduling stopped")
}

// restoreLeaderState waits until every committed entry is applied, then
// loads pending and blocked evaluations and arms heartbeat timers for
// every live node (with one extra TTL of grace: they were heartbeating to
// the old leader).
func (s *Server) restoreLeaderState(ctx context.Context) bool {
	for {
		err := s.raft.Barrier(applyTimeout)
		if err == nil {
			break
		}
		s.log.Warn("barrier after gaining leadership failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(200 * time.Millisecond):
		}
	}
	st := s.raft.State()
	evals, err := st.Evals(nil)
	if err != nil {
		s.log.Error("restore evaluations", "err", err)
	}
	var pending []*api.Evaluation
	for _, e := range evals {
		switch e.Status {
		case api.EvalStatusPending:
			pending = append(pending, e)
		case api.EvalStatusBlocked:
			s.blocked.Block(e, 0, time.Now())
		}
	}
	s.broker.Enqueue(pending...)
	nodes, err := st.Nodes(nil)
	if err != nil {
		s.log.Error("restore nodes", "err", err)
	}
	now := time.Now()
	ttl := s.heartbeatTTL(len(nodes))
	for _, n := range nodes {
		if n.Status != api.NodeStatusDown {
			s.hb.ResetWithGrace(n.ID, now, ttl-s.cfg.HeartbeatTTL+ttl)
		}
	}
	s.log.Info("leader state restored", "pending_evals", len(pending), "blocked_evals", s.blocked.Len(), "nodes", len(nodes))
	// Blocked evals may fit now (capacity could have changed while no
	// leader was watching).
	s.unblock(st.LatestIndex())
	return true
}

// heartbeatTTL is the TTL handed to agents: the configured one, grown so
// that n nodes send at most maxHeartbeatsPerSecond heartbeats (agents
// heartbeat about twice per TTL).
func (s *Server) heartbeatTTL(n int) time.Duration {
	ttl := s.cfg.HeartbeatTTL
	if scaled := time.Duration(2*n) * time.Second / maxHeartbeatsPerSecond; scaled > ttl {
		ttl = scaled
	}
	return ttl
}

// nodeCount is the number of registered nodes, recounted at most once a
// second: heartbeats ask for it, and counting walks the whole table.
func (s *Server) nodeCount() int {
	now := time.Now().UnixNano()
	if last := s.nodeCountAt.Load(); now-last < int64(time.Second) && last != 0 {
		return int(s.nodeCountVal.Load())
	}
	nodes, err := s.raft.State().Nodes(nil)
	if err != nil {
		return int(s.nodeCountVal.Load())
	}
	s.nodeCountVal.Store(int64(len(nodes)))
	s.nodeCountAt.Store(now)
	return len(nodes)
}

// heartbeatLoop marks nodes down when their TTL runs out. The tracker is
// pure; this loop owns the ticker.
func (s *Server) heartbeatLoop(ctx context.Context) {
	every := s.cfg.HeartbeatTTL / 8
	if every < 50*time.Millisecond {
		every = 50 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, id := range s.hb.Expired(now) {
				if err := s.markNodeDown(id, "missed heartbeat TTL"); err != nil {
					s.log.Warn("could not mark node down", "node", id, "err", err)
					if ctx.Err() == nil {
						s.hb.Reset(id, now) // try again after another TTL
					}
				}
			}
		}
	}
}

// leaderHousekeeping redelivers evaluations whose worker went silent and
// retries blocked evaluations whose backoff ran out.
func (s *Server) leaderHousekeeping(ctx context.Context) {
	every := s.cfg.EvalTimeout / 4
	if every > time.Second {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if n := s.broker.RedeliverExpired(now); n > 0 {
				s.log.Warn("redelivering evaluations whose deadline passed", "count", n)
			}
			if due := s.blocked.Due(now); len(due) > 0 {
				s.metrics.retried.Add(float64(len(due)))
				s.log.Debug("retrying blocked evaluations after their backoff", "count", len(due))
				s.broker.Enqueue(due...)
			}
		}
	}
}

// markNodeDown writes the node's down status together with one evaluation
// per job that has live allocations there, so they are replaced.
func (s *Server) markNodeDown(nodeID, why string) error {
	st := s.raft.State()
	node, err := st.NodeByID(nil, nodeID)
	if err != nil {
		return err
	}
	if node == nil || node.Status == api.NodeStatusDown {
		return nil
	}
	evals, err := s.evalsForNode(nodeID, api.EvalTriggerNodeUpdate)
	if err != nil {
		return err
	}
	if _, err := s.raft.Apply(consensus.NodeUpdateStatusRequestType, &consensus.NodeUpdateStatusRequest{
		NodeID: nodeID, Status: api.NodeStatusDown, UpdatedAt: time.Now().UnixNano(), Evals: evals,
	}, applyTimeout); err != nil {
		return err
	}
	s.hb.Remove(nodeID)
	s.metrics.nodesDown.Inc()
	s.log.Warn("node marked down", "node", nodeID, "name", node.Name, "reason", why, "evals", len(evals))
	s.broker.Enqueue(evals...)
	return nil
}

// evalsForNode makes one evaluation per job with a live allocation on the
// node.
func (s *Server) evalsForNode(nodeID, trigger string) ([]*api.Evaluation, error) {
	allocs, err := s.raft.State().AllocsByNode(nil, nodeID)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var evals []*api.Evaluation
	for _, a := range allocs {
		if a.Terminal() || seen[a.JobID] {
			continue
		}
		seen[a.JobID] = true
		job := a.Job
		if j, _ := s.raft.State().JobByID(nil, a.JobID); j != nil {
			job = j
		}
		evals = append(evals, newEval(job, a.JobID, trigger, nodeID))
	}
	return evals, nil
}

// evalsForSystemJobs makes an evaluation for every running system job, for
// a node that became able to take allocations.
func (s *Server) evalsForSystemJobs(nodeID string) ([]*api.Evaluation, error) {
	jobs, err := s.raft.State().Jobs(nil)
	if err != nil {
		return nil, err
	}
	var evals []*api.Evaluation
	for _, j := range jobs {
		if j.Type == api.JobTypeSystem && !j.Stop {
			evals = append(evals, newEval(j, j.ID, api.EvalTriggerNodeUpdate, nodeID))
		}
	}
	return evals, nil
}

func newEval(job *api.Job, jobID, trigger, nodeID string) *api.Evaluation {
	e := &api.Evaluation{
		ID: newID(), JobID: jobID, TriggeredBy: trigger, NodeID: nodeID,
		Status: api.EvalStatusPending, Type: api.JobTypeService, Priority: 50,
	}
	if job != nil {
		if job.Type != "" {
			e.Type = job.Type
		}
		if job.Priority != 0 {
			e.Priority = job.Priority
		}
	}
	return e
}

// unblock re-enqueues every blocked evaluation: capacity changed at the
// given Raft index.
func (s *Server) unblock(index uint64) {
	if evals := s.blocked.Unblock(index); len(evals) > 0 {
		s.log.Debug("capacity changed: retrying blocked evaluations", "count", len(evals))
		s.broker.Enqueue(evals...)
	}
}

// watchMembers reacts to gossip: it bootstraps Raft once enough servers
// are seen, adds new servers as voters on the leader, and marks agents
// whose gossip member failed as down.
func (s *Server) watchMembers() {
	defer s.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	s.maybeBootstrap()
	for {
		select {
		case <-s.ctx.Done():
			return
		case ev, ok := <-s.pool.Events():
			if !ok {
				return
			}
			s.maybeBootstrap()
			if !s.raft.IsLeader() {
				continue
			}
			switch {
			case ev.Meta.Role == gossip.RoleServer && ev.Member.Status == gossip.StatusAlive:
				s.reconcileServers()
			case ev.Meta.Role == gossip.RoleAgent && ev.Type == gossip.EventLeave &&
				ev.Member.Status == gossip.StatusFailed && ev.Meta.NodeID != "":
				// Down after a short grace unless it heartbeats: a
				// restarting agent keeps its allocations. Gossip can
				// also be wrong (its indirect probes may go through a
				// member that is itself cut off), so the leader first
				// asks the agent directly.
				if n, _ := s.raft.State().NodeByID(nil, ev.Meta.NodeID); n != nil && n.Status != api.NodeStatusDown {
					go s.confirmAgentFailure(n)
				}
			}
		case <-t.C:
			s.maybeBootstrap()
			if s.raft.IsLeader() {
				s.clearTombstones()
				s.reconcileServers()
			}
		}
	}
}

// confirmAgentFailure checks an agent that gossip reports failed by
// asking its HTTP API directly. One that answers keeps its node; one that
// does not gets agentFailGrace to heartbeat before the node goes down.
func (s *Server) confirmAgentFailure(n *api.Node) {
	if n.HTTPAddr != "" {
		ctx, cancel := context.WithTimeout(s.ctx, agentFailGrace)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.HTTPAddr+"/v1/health", nil)
		if err == nil {
			resp, err := s.agentHTTP.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					cancel()
					s.log.Info("agent failed in gossip but answers directly; node kept", "node", n.ID, "name", n.Name)
					return
				}
			}
		}
		cancel()
	}
	if !s.raft.IsLeader() {
		return
	}
	s.hb.Expedite(n.ID, time.Now().Add(agentFailGrace))
	s.log.Info("agent failed in gossip; node goes down unless it heartbeats", "node", n.ID, "grace", agentFailGrace)
}

// aliveServers lists the live servers of this datacenter in gossip,
// sorted by server ID.
func (s *Server) aliveServers() []gossip.Peer {
	var out []gossip.Peer
	for _, p := range s.pool.Peers() {
		if p.Meta.Role == gossip.RoleServer && p.Meta.Datacenter == s.cfg.Datacenter &&
			(p.Status == gossip.StatusAlive || p.Status == gossip.StatusSuspect) && p.Meta.RaftAddr != "" {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Meta.ServerID < out[j].Meta.ServerID })
	return out
}

// maybeBootstrap implements --bootstrap-expect N for N > 1: once N servers
// of this datacenter are alive in gossip, and none of them already belongs
// to a Raft cluster, every one of them bootstraps with the same sorted
// list (Raft accepts identical bootstrap configurations).
func (s *Server) maybeBootstrap() {
	if s.bootstrapped || s.cfg.BootstrapExpect <= 1 {
		return
	}
	if peers, err := s.raft.Peers(); err == nil && len(peers) > 0 {
		s.bootstrapped = true // existing state, or a leader added us
		return
	}
	servers := s.aliveServers()
	if len(servers) < s.cfg.BootstrapExpect {
		return
	}
	for _, p := range servers {
		if p.Name == s.cfg.NodeName {
			continue
		}
		if peers, err := s.remotePeers(p.HTTPAddr); err != nil {
			s.log.Debug("bootstrap: cannot ask server for its peers yet", "member", p.Name, "err", err)
			return
		} else if len(peers) > 0 {
			s.log.Info("bootstrap: an existing cluster was found; waiting to be added by its leader", "member", p.Name)
			s.bootstrapped = true
			return
		}
	}
	conf := make([]raft.Server, 0, len(servers))
	for _, p := range servers {
		conf = append(conf, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.Meta.ServerID), Address: raft.ServerAddress(p.Meta.RaftAddr)})
	}
	err := s.raft.Bootstrap(conf)
	if err != nil && !errors.Is(err, consensus.ErrAlreadyBootstrapped) {
		s.log.Error("bootstrap failed", "err", err)
		return
	}
	s.bootstrapped = true
	s.log.Info("bootstrapped raft cluster", "servers", len(conf))
}

func (s *Server) remotePeers(httpAddr string) ([]string, error) {
	c := &http.Client{Timeout: time.Second, Transport: s.fwd.Transport}
	resp, err := c.Get("http://" + httpAddr + "/v1/status/peers")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	var peers []string
	if err := json.NewDecoder(resp.Body).Decode(&peers); err != nil {
		return nil, err
	}
	return peers, nil
}

// reconcileServers adds live gossip servers missing from the Raft
// configuration (or whose address changed) as voters. Failed servers are
// never added, so a server removed with remove-peer stays out while dead,
// and neither are servers removed with remove-peer --force while alive
// (tombstoned) until they stop.
func (s *Server) reconcileServers() {
	peers, err := s.raft.Peers()
	if err != nil {
		return
	}
	have := map[string]string{}
	for _, p := range peers {
		have[p.ID] = p.Address
	}
	removed := map[string]bool{} // remove-peer --force while it ran
	for _, ts := range s.raft.State().ServerTombstones() {
		removed[ts.ServerID] = true
	}
	for _, m := range s.aliveServers() {
		if m.Status != gossip.StatusAlive || removed[m.Meta.ServerID] {
			continue
		}
		if addr, ok := have[m.Meta.ServerID]; ok && addr == m.Meta.RaftAddr {
			continue
		}
		if err := s.raft.AddVoter(m.Meta.ServerID, m.Meta.RaftAddr); err != nil {
			s.log.Warn("could not add server to raft", "member", m.Name, "err", err)
			continue
		}
		s.log.Info("added server to raft", "member", m.Name, "addr", m.Meta.RaftAddr)
	}
}
