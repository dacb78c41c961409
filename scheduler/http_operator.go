package scheduler

import (
	"net/http"

	"github.com/hashicorp/go-memdb"
	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/consensus"
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
