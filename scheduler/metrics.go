package scheduler

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are the server's Prometheus metrics, in a registry of its own so
// that several servers can live in one process (tests, berth dev).
type metrics struct {
	reg         *prometheus.Registry
	placements  prometheus.Counter
	planApply   prometheus.Histogram
	planRefused prometheus.Counter
	evals       *prometheus.CounterVec
	heartbeats  prometheus.Counter
	nodesDown   prometheus.Counter
	forwarded   prometheus.Counter
	evalWait    prometheus.Histogram
	evalTime    prometheus.Histogram
	gcRuns      prometheus.Counter
	retried     prometheus.Counter // blocked evaluations retried by backoff
	placed      atomic.Uint64      // placements, readable without a scrape (benchmarks)
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		placements: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_scheduler_placements_total", Help: "Allocations committed to run by the plan applier."}),
		planApply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_plan_apply_seconds", Help: "Time to verify and commit one plan.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		planRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_plan_refused_nodes_total", Help: "Nodes of plans refused by the plan applier because they no longer fit."}),
		evals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_evals_total", Help: "Evaluations finished, by final status."}, []string{"status"}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_heartbeats_total", Help: "Node heartbeats received by the leader."}),
		nodesDown: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_nodes_down_total", Help: "Nodes marked down (missed heartbeat TTL or failed in gossip)."}),
		evalWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_eval_wait_seconds", Help: "Time an evaluation waited in the broker before a worker took it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		evalTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "berth_eval_seconds", Help: "Time a worker spent on one evaluation (planning and committing).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		gcRuns: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_gc_runs_total", Help: "Garbage collection entries written by the leader (periodic and forced)."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_blocked_evals_retried_total", Help: "Blocked evaluations retried after their backoff, without a capacity change."}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_http_forwarded_total", Help: "Writes forwarded from this follower to the leader."}),
	}
	m.reg.MustRegister(m.placements, m.planApply, m.planRefused, m.evals, m.heartbeats, m.nodesDown, m.forwarded, m.evalWait, m.evalTime, m.gcRuns, m.retried,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_raft_leader", Help: "1 if this server is the Raft leader."},
			func() float64 {
				if s.IsLeader() {
					return 1
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_state_index", Help: "Raft index of the newest state write."},
			func() float64 {
				if s.raft == nil {
					return 0
				}
				return float64(s.raft.State().LatestIndex())
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_broker_ready", Help: "Evaluations ready in the broker."},
			func() float64 { return float64(s.broker.Stats().Ready) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_broker_unacked", Help: "Evaluations held by workers."},
			func() float64 { return float64(s.broker.Stats().Unacked) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "berth_evals_blocked", Help: "Evaluations waiting for capacity."},
			func() float64 { return float64(s.blocked.Len()) }),
	)
	for _, st := range []string{"complete", "blocked", "failed"} {
		m.evals.WithLabelValues(st)
	}
	return m
}

func (m *metrics) addPlacements(n int) {
	m.placements.Add(float64(n))
	m.placed.Add(uint64(n))
}

func (m *metrics) observePlan(placed, refused int, took time.Duration) {
	m.planApply.Observe(took.Seconds())
	m.planRefused.Add(float64(refused))
}
