package e2e

// The scheduling benchmark of `make bench`: real berth server processes
// (Raft on disk), 5,000 simulated nodes with realistic capacities (a tenth
// with 8 GPUs), and jobs submitted until 100,000 allocations are placed. It
// reports placements per second, the p50/p99 latency from submitting a
// count=1 job to seeing its allocation committed while that load runs, and
// the server's RSS at the end.
//
// It carries no build tag so `make bench` (which passes none) runs it, and
// it skips without BERTH_BIN, so plain `go test -bench` elsewhere is safe.
// The scenario runs once per process and variant: go test calls a
// benchmark function several times (b.N = 1, then -benchtime's N), and
// placing 100,000 allocations again would measure a full cluster instead.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/simnode"
)

const (
	benchNodes      = 5000
	benchAllocs     = 100000
	benchSubmitters = 8  // jobs in flight at once
	benchJobCount   = 50 // allocations per ordinary job
	benchGPUCount   = 10 // allocations per GPU job (every 20th job)
)

// schedResult is what one run of the scenario measured.
type schedResult struct {
	servers      int
	tls          bool
	placed       int
	failed       int
	jobs         int
	elapsed      time.Duration
	probes       []time.Duration
	rssBytes     int64
	registerTime time.Duration
	leaderMoves  int
	idle         []time.Duration // probes before the load, for comparison
	// serverCPU is the CPU time all servers used while the load ran:
	// steadier than wall time on a shared machine.
	serverCPU time.Duration
}

// serversCPU sums the CPU time the cluster's server processes have used.
func serversCPU(c *Cluster) time.Duration {
	var total time.Duration
	for _, s := range c.Servers {
		if d, err := CPUTime(s.Pid()); err == nil {
			total += d
		}
	}
	return total
}

func (r *schedResult) placementsPerSec() float64 {
	return float64(r.placed) / r.elapsed.Seconds()
}

func (r *schedResult) percentile(p float64) time.Duration { return percentile(r.probes, p) }

func percentile(samples []time.Duration, p float64) time.Duration {
	if len(samples) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), samples...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s))*p+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

var (
	benchMu      sync.Mutex
	benchResults = map[schedVariant]*schedResult{}
)

// schedVariant is one configuration of the scenario.
type schedVariant struct {
	servers int
	tls     bool
}

func BenchmarkSchedule5000Nodes(b *testing.B) { benchSchedule(b, 1, false) }

func BenchmarkSchedule5000Nodes3Servers(b *testing.B) { benchSchedule(b, 3, false) }

// BenchmarkSchedule5000NodesTLS is BenchmarkSchedule5000Nodes with mutual
// TLS on every connection (clients, simulated nodes and the server's API
// all present certificates), for the cost of TLS.
func BenchmarkSchedule5000NodesTLS(b *testing.B) { benchSchedule(b, 1, true) }

// BenchmarkSchedule5000Nodes3ServersTLS adds Raft and forwarding over TLS.
func BenchmarkSchedule5000Nodes3ServersTLS(b *testing.B) { benchSchedule(b, 3, true) }

func benchSchedule(b *testing.B, servers int, tls bool) {
	BerthBin(b)
	if testing.Short() {
		b.Skip("the scheduling benchmark places 100,000 allocations; not in -short")
	}
	v := schedVariant{servers, tls}
	benchMu.Lock()
	res := benchResults[v]
	benchMu.Unlock()
	if res == nil {
		res = runSchedScenario(b, servers, tls)
		benchMu.Lock()
		benchResults[v] = res
		benchMu.Unlock()
		fmt.Printf("schedbench: servers=%d tls=%t nodes=%d allocations=%d (failed %d) jobs=%d in %s: %.0f placements/s; count=1 job submit→committed p50=%s p90=%s p99=%s max=%s (%d probes; idle cluster p50=%s); server RSS %.0f MiB, server CPU %s; %d node registrations took %s; leader changes %d\n",
			res.servers, res.tls, benchNodes, res.placed, res.failed, res.jobs, res.elapsed.Round(time.Millisecond),
			res.placementsPerSec(), res.percentile(0.50).Round(100*time.Microsecond), res.percentile(0.90).Round(100*time.Microsecond),
			res.percentile(0.99).Round(100*time.Microsecond), res.percentile(1).Round(100*time.Microsecond), len(res.probes),
			percentile(res.idle, 0.5).Round(100*time.Microsecond), float64(res.rssBytes)/(1<<20), res.serverCPU.Round(time.Millisecond), benchNodes, res.registerTime.Round(time.Millisecond), res.leaderMoves)
	}
	b.ReportMetric(float64(res.elapsed.Nanoseconds())/float64(max(res.placed, 1)), "ns/op")
	b.ReportMetric(res.placementsPerSec(), "placements/s")
	b.ReportMetric(float64(res.serverCPU.Microseconds())/float64(max(res.placed, 1)), "server-cpu-us/op")
	b.ReportMetric(float64(res.percentile(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(res.percentile(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(res.rssBytes)/(1<<20), "rss-MiB")
	b.ReportMetric(float64(percentile(res.idle, 0.5).Microseconds())/1000, "idle-p50-ms")
}

func benchJob(i int) *api.Job {
	task := &api.Task{Name: "main", Image: "registry.local/app:" + strconv.Itoa(i%7), Command: []string{"serve"},
		Resources: api.Resources{CPU: 250 + 250*(i%4), MemoryMB: 256 << (i % 3)}}
	count := benchJobCount
	if i%20 == 19 {
		count = benchGPUCount
		task.Resources = api.Resources{CPU: 4000, MemoryMB: 32 << 10, GPUs: &api.GPURequest{Count: 1 + i%2}}
	}
	return &api.Job{Name: "bench-" + strconv.Itoa(i), Type: api.JobTypeService, Priority: 50,
		Groups: []*api.Group{{Name: "app", Count: count, Tasks: []*api.Task{task}}}}
}

// probeName names probe i; negative i are the idle-cluster probes.
func probeName(i int) string {
	if i < 0 {
		return "idle-probe-" + strconv.Itoa(-i)
	}
	return "probe-" + strconv.Itoa(i)
}

func probeJob(i int) *api.Job {
	return &api.Job{Name: probeName(i), Type: api.JobTypeService, Priority: 50,
		Groups: []*api.Group{{Name: "app", Count: 1, Tasks: []*api.Task{{Name: "main", Image: "registry.local/probe:1",
			Resources: api.Resources{CPU: 100, MemoryMB: 64}}}}}}
}

// leaderTracker hands out a client for the current leader and finds the
// new one after a failover, so the load survives a leader change the way a
// real client does: it retries a request that got a 5xx or no answer.
type leaderTracker struct {
	c       *Cluster
	mu      sync.Mutex
	cur     *api.Client
	changes int // times the leader moved during the run
}

func (l *leaderTracker) client() *api.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cur
}

// refresh points the tracker at whichever server the others call leader,
// unless another goroutine already moved it off old.
func (l *leaderTracker) refresh(old *api.Client) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cur != old {
		return
	}
	for _, s := range l.c.Live() {
		addr, err := s.Client(2 * time.Second).Status().Leader()
		if err != nil || addr == "" {
			continue
		}
		if leader := l.c.ByRaftAddr(addr); leader != nil {
			if leader.HTTPAddr() != old.Address() {
				l.changes++
				l.cur = leader.Client(0)
			}
			return
		}
	}
}

func retryable(err error) bool {
	var se *api.StatusError
	return errors.Is(err, api.ErrUnreachable) || (errors.As(err, &se) && se.Code >= 500)
}

// do runs fn against the leader, retrying for up to a minute across leader
// changes.
func (l *leaderTracker) do(fn func(cl *api.Client) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		cl := l.client()
		err := fn(cl)
		if err == nil || !retryable(err) || time.Now().After(deadline) {
			return err
		}
		l.refresh(cl)
		time.Sleep(100 * time.Millisecond)
	}
}

// waitEvalDone blocks until an evaluation is no longer pending.
func waitEvalDone(cl *api.Client, id string) (*api.Evaluation, error) {
	var index uint64
	start := time.Now()
	for {
		ev, meta, err := cl.Evaluations().Info(id, &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
		if api.IsNotFound(err) {
			if time.Since(start) > time.Minute {
				return nil, fmt.Errorf("evaluation %s not found for a minute", id)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if err != nil {
			return nil, err
		}
		if ev.Status != api.EvalStatusPending && ev.Status != "" {
			return ev, nil
		}
		index = max(index, meta.LastIndex)
	}
}

// probe submits a count=1 job and returns how long it took until its
// allocation was visible as committed.
func probe(lt *leaderTracker, i int) (time.Duration, error) {
	start := time.Now()
	var resp *api.JobRegisterResponse
	err := lt.do(func(cl *api.Client) (err error) {
		resp, err = cl.Jobs().Register(probeJob(i))
		return err
	})
	if err != nil {
		return 0, err
	}
	index := resp.Index
	for {
		var allocs []*api.Allocation
		var meta *api.QueryMeta
		err := lt.do(func(cl *api.Client) (err error) {
			allocs, meta, err = cl.Jobs().Allocations(probeName(i), &api.QueryOptions{WaitIndex: index, WaitTime: 30 * time.Second})
			return err
		})
		if err != nil && !api.IsNotFound(err) {
			return 0, err
		}
		if len(allocs) > 0 {
			return time.Since(start), nil
		}
		if meta != nil {
			index = max(index, meta.LastIndex)
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("%s not placed within a minute", probeName(i))
		}
	}
}

func runSchedScenario(b *testing.B, servers int, tls bool) *schedResult {
	b.Helper()
	c := StartCluster(b, servers, ClusterOptions{LogLevel: "warn", TLS: tls})
	leader := c.WaitLeader(30 * time.Second)
	res := &schedResult{servers: servers, tls: tls}

	// Clients talk to the leader (followers would forward every write).
	cl := leader.Client(0)
	lt := &leaderTracker{c: c, cur: cl}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	// Each real agent keeps its own connection open; the simulated fleet
	// shares one client, so its pool holds one per node. (With the
	// default pool, blocking queries that return beyond it close their
	// connection and the next one opens a new one: a TLS handshake each.)
	fleetClient := leader.PooledClient(benchNodes + 256)
	fleet, err := simnode.Start(ctx, simnode.Config{Client: fleetClient, Count: benchNodes, RegisterConcurrency: 64})
	if err != nil {
		b.Fatalf("register %d simulated nodes: %v", benchNodes, err)
	}
	defer fleet.Stop()
	res.registerTime = time.Since(start)

	// The same probe on the idle cluster, to tell queueing under load
	// apart from the cost of one scheduling round.
	for i := 0; i < 20; i++ {
		d, err := probe(lt, -1-i)
		if err != nil {
			b.Fatalf("idle probe: %v", err)
		}
		res.idle = append(res.idle, d)
	}
	b.ResetTimer()

	var (
		next      atomic.Int64 // next job index
		requested atomic.Int64 // allocations asked for by submitted jobs
		firstErr  atomic.Pointer[error]
		wg        sync.WaitGroup
	)
	fail := func(err error) { firstErr.CompareAndSwap(nil, &err) }
	bulkDone := make(chan struct{})
	cpu0 := serversCPU(c)
	start = time.Now()
	for w := 0; w < benchSubmitters; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				// Claim a job, unless the jobs claimed so far already ask
				// for the target number of allocations.
				if requested.Load() >= benchAllocs {
					return
				}
				i := int(next.Add(1) - 1)
				job := benchJob(i)
				requested.Add(int64(job.Groups[0].Count))
				var resp *api.JobRegisterResponse
				err := lt.do(func(cl *api.Client) (err error) {
					resp, err = cl.Jobs().Register(job)
					return err
				})
				if err != nil {
					fail(fmt.Errorf("register %s: %w", job.Name, err))
					return
				}
				err = lt.do(func(cl *api.Client) error {
					_, err := waitEvalDone(cl, resp.EvalID)
					return err
				})
				if err != nil {
					fail(fmt.Errorf("wait for %s: %w", job.Name, err))
					return
				}
			}
		}()
	}
	var probes []time.Duration
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		for i := 0; ; i++ {
			select {
			case <-bulkDone:
				return
			case <-time.After(50 * time.Millisecond):
			}
			// Every probe started while the load ran counts, also one
			// that finishes after it: dropping those would drop the
			// slowest.
			d, err := probe(lt, i)
			if err != nil {
				fail(fmt.Errorf("probe: %w", err))
				return
			}
			probes = append(probes, d)
		}
	}()
	wg.Wait()
	res.elapsed = time.Since(start)
	res.serverCPU = serversCPU(c) - cpu0
	close(bulkDone)
	<-probeDone
	b.StopTimer()
	if p := firstErr.Load(); p != nil {
		b.Fatal(*p)
	}
	res.probes = probes
	res.leaderMoves = lt.changes
	res.jobs = int(next.Load())

	// Count what is committed, job by job, rather than trusting the evals.
	for i := 0; i < res.jobs; i++ {
		var allocs []*api.Allocation
		err := lt.do(func(cl *api.Client) (err error) {
			allocs, _, err = cl.Jobs().Allocations("bench-"+strconv.Itoa(i), nil)
			return err
		})
		if err != nil {
			b.Fatalf("count allocations of bench-%d: %v", i, err)
		}
		want := benchJob(i).Groups[0].Count
		got := 0
		for _, a := range allocs {
			if a.DesiredStatus == api.AllocDesiredRun {
				got++
			}
		}
		res.placed += got
		res.failed += want - got
	}
	for _, s := range c.Servers {
		if rss, err := RSS(s.Pid()); err == nil && rss > res.rssBytes {
			res.rssBytes = rss
		}
	}
	if os.Getenv("BERTH_BENCH_KEEP_LOGS") != "" {
		for _, s := range c.Servers {
			c.dumpLog(s)
		}
	}
	return res
}
