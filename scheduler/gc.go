package scheduler

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
)

const (
	// gcInterval is how often the leader collects garbage. Each run also
	// records a point of the replicated time table that ages objects, so
	// it is the granularity of the threshold too.
	gcInterval = 5 * time.Minute
	// gcThreshold is how long finished evaluations, finished allocations
	// of stopped jobs and dead batch jobs are kept.
	gcThreshold = time.Hour
)

// gcLoop collects garbage on the leader every gcInterval (see
// consensus.GCRequest). Time is an input: the loop owns the ticker and
// stamps the request; the FSM compares only what the request carries.
func (s *Server) gcLoop(ctx context.Context, every, threshold time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := s.collectGarbage(now, threshold); err != nil && ctx.Err() == nil {
				s.log.Warn("garbage collection failed; retrying at the next interval", "err", err)
			}
		}
	}
}

// collectGarbage writes one GC entry and returns its Raft index.
func (s *Server) collectGarbage(now time.Time, threshold time.Duration) (uint64, error) {
	idx, err := s.raft.Apply(consensus.GCRequestType, &consensus.GCRequest{Now: now.UnixNano(), Threshold: int64(threshold)}, applyTimeout)
	if err == nil {
		s.metrics.gcRuns.Inc()
	}
	return idx, err
}

// systemGC is PUT /v1/system/gc: collect everything finished now,
// whatever its age (`berth system gc`).
func (s *Server) systemGC(c echo.Context) error {
	idx, err := s.collectGarbage(time.Now(), 0)
	if err != nil {
		return err
	}
	s.log.Info("garbage collection forced", "index", idx)
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}
