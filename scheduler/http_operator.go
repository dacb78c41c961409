package scheduler

import (
	"net/http"
	"strconv"

	"github.com/hashicorp/go-memdb"
	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
	"github.com/berth-dev/berth/internal/gossip"
)

// schedConfigGet is GET /v1/operator/scheduler/configuration: the
// cluster-wide scheduler configuration (a blocking query on its index).
func (s *Server) schedConfigGet(c echo.Context) error {
	return s.blocking(c, func(ws memdb.WatchSet, st *consensus.StateStore) (uint64, any, error) {
		idx := st.IndexWatch(ws, consensus.TableSchedulerConfig)
		return idx, st.SchedulerConfig(), nil
	})
}

// schedConfigPut is PUT /v1/operator/scheduler/configuration: replace the
// configuration. The body is the GET answer's shape; modify_index is
// ignored. Workers read the configuration from each evaluation's
// snapshot, so the change applies to the next evaluation.
func (s *Server) schedConfigPut(c echo.Context) error {
	var req consensus.SchedulerConfig
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	switch req.Algorithm {
	case "":
		req.Algorithm = consensus.AlgorithmBinpack
	case consensus.AlgorithmBinpack, consensus.AlgorithmSpread:
	default:
		return badRequest("algorithm: %q is not a scheduler algorithm: use %s or %s", req.Algorithm, consensus.AlgorithmBinpack, consensus.AlgorithmSpread)
	}
	req.ModifyIndex = 0
	idx, err := s.raft.Apply(consensus.ConfigRequestType, &req, applyTimeout)
	if err != nil {
		return err
	}
	s.log.Info("scheduler configuration changed", "algorithm", req.Algorithm, "preemption", req.PreemptionEnabled, "index", idx)
	req.ModifyIndex = idx
	if req.PreemptionEnabled {
		// Blocked evaluations may fit now by evicting lower-priority
		// allocations.
		s.unblock(idx)
	}
	return s.reply(c, http.StatusOK, idx, &req)
}

// raftRemovePeer is DELETE /v1/operator/raft/peers?id=ID[&force=true].
//
// The leader adds every live server of the gossip pool to the Raft
// configuration, so removing a server that is still running would be
// undone within a second. A live server is therefore refused with 409
// unless force is set; a forced removal first writes a tombstone that
// keeps any leader from adding it back while gossip shows it alive. The
// leader clears the tombstone once the server is no longer alive in
// gossip, so when it is restarted (same identity or a fresh one) it
// joins as usual.
func (s *Server) raftRemovePeer(c echo.Context) error {
	id := c.QueryParam("id")
	if id == "" {
		return badRequest("id: the Raft ID of the server to remove is required (see `berth operator raft list-peers`)")
	}
	force := false
	if v := c.QueryParam("force"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("force: %q is not true or false", v)
		}
		force = b
	}
	peers, err := s.raft.Peers()
	if err != nil {
		return err
	}
	found := false
	for _, p := range peers {
		if p.ID == id || p.Address == id {
			id, found = p.ID, true
			if p.Leader {
				return conflict("server %s is the leader; stop it first, or remove it from another server after a new leader is elected", id)
			}
		}
	}
	if !found {
		return notFound("server %q is not a Raft peer", id)
	}
	// The leader re-adds servers that gossip shows alive; a suspect one
	// is probably gone, so only alive ones are refused. A forced removal
	// of either is remembered until gossip shows it gone.
	if m, present := s.aliveServer(id); present {
		if !force && m.Status == gossip.StatusAlive {
			return conflict("server %s (%s) is alive in gossip, so the leader would add it back at once: stop it first and remove it then, "+
				"or remove it anyway with --force (force=true), which keeps it out until it stops", id, m.Name)
		}
		if force {
			if _, err := s.raft.Apply(consensus.ServerTombstoneRequestType, &consensus.ServerTombstoneRequest{ServerID: id}, applyTimeout); err != nil {
				return err
			}
		}
	}
	if err := s.raft.RemoveServer(id); err != nil {
		return err
	}
	s.log.Info("removed raft peer", "peer", id, "force", force)
	return s.reply(c, http.StatusOK, 0, &api.WriteResponse{Index: s.raft.AppliedIndex()})
}

// aliveServer returns the gossip member of a live (alive or suspect)
// server of this datacenter with the given Raft ID.
func (s *Server) aliveServer(id string) (gossip.Peer, bool) {
	for _, p := range s.aliveServers() {
		if p.Meta.ServerID == id {
			return p, true
		}
	}
	return gossip.Peer{}, false
}

// clearTombstones drops the tombstone of every server that gossip no
// longer shows alive (it stopped): its next start joins as usual. Leader
// only.
func (s *Server) clearTombstones() {
	for _, ts := range s.raft.State().ServerTombstones() {
		if _, alive := s.aliveServer(ts.ServerID); alive {
			continue
		}
		if _, err := s.raft.Apply(consensus.ServerTombstoneRequestType,
			&consensus.ServerTombstoneRequest{ServerID: ts.ServerID, Clear: true}, applyTimeout); err != nil {
			s.log.Warn("could not clear the tombstone of a stopped server", "peer", ts.ServerID, "err", err)
			continue
		}
		s.log.Info("removed server stopped: it may join again", "peer", ts.ServerID)
	}
}
