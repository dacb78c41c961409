//go:build e2e

package e2e

// The randomized fault run behind `make chaos`: kills, pauses and
// partitions of servers and agents while a client registers and stops jobs
// and records every acknowledged write; then a checker verifies the
// invariants on the final state. It runs only when BERTH_CHAOS is set
// (`make chaos` sets it), since it takes minutes.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/berth-dev/berth/api"
)

// chaosLog is the run's event log, kept under e2e/out/ when it fails.
type chaosLog struct {
	mu     sync.Mutex
	start  time.Time
	lines  []string
	counts map[string]int
}

func (l *chaosLog) add(kind, format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf("%8.3fs %-10s %s", time.Since(l.start).Seconds(), kind, fmt.Sprintf(format, args...)))
	l.counts[kind]++
}

// chaosJob is what the client knows was acknowledged for one job.
type chaosJob struct {
	count   int
	cpu     int
	mem     int
	stopped bool // the last acknowledged write was a stop
}

func TestChaos(t *testing.T) {
	if os.Getenv("BERTH_CHAOS") == "" {
		t.Skip("the randomized fault run takes minutes: run `make chaos` (sets BERTH_CHAOS=1)")
	}
	dur := 3 * time.Minute
	if s := os.Getenv("BERTH_CHAOS_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("BERTH_CHAOS_DURATION=%q: want a duration such as 3m", s)
		}
		dur = d
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BERTH_CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BERTH_CHAOS_SEED=%q: want a number", s)
		}
		seed = v
	}
	fc := startFaultCluster(t, 3)
	log := &chaosLog{start: time.Now(), counts: map[string]int{}}
	log.add("start", "seed %d, %s, %d servers, %d agents", seed, dur, len(fc.servers), len(fc.agents))
	t.Logf("chaos seed %d (BERTH_CHAOS_SEED=%d reproduces the schedule of faults)", seed, seed)
	// Registered after the cluster's cleanup, so it runs before it: the
	// event log of a failed run is kept under e2e/out/.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		_ = os.MkdirAll("out", 0o755)
		p := filepath.Join("out", fmt.Sprintf("chaos-%s-seed%d.log", time.Now().UTC().Format("20060102T150405"), seed))
		log.mu.Lock()
		data := strings.Join(log.lines, "\n") + "\n"
		log.mu.Unlock()
		if err := os.WriteFile(p, []byte(data), 0o644); err == nil {
			t.Logf("event log of the failed run: e2e/%s", p)
		}
		// And every process's full log beside it.
		for _, n := range append(append([]*fcNode{}, fc.servers...), fc.agents...) {
			if b, err := os.ReadFile(n.proc.LogPath); err == nil {
				_ = os.WriteFile(strings.TrimSuffix(p, ".log")+"-"+n.name+".log", b, 0o644)
			}
		}
	})

	var (
		mu   sync.Mutex
		jobs = map[string]*chaosJob{}
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup

	// The client: a write every 250ms to a random server, bounded in time.
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, 1))
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			s := fc.servers[rng.IntN(len(fc.servers))]
			cl := clientFor(s.addr(), 3*time.Second)
			mu.Lock()
			var live []string
			for name, j := range jobs {
				if !j.stopped {
					live = append(live, name)
				}
			}
			mu.Unlock()
			sort.Strings(live)
			if len(live) >= 8 || (len(live) > 2 && rng.IntN(3) == 0) {
				name := live[rng.IntN(len(live))]
				if _, err := cl.Jobs().Deregister(name, false); err != nil {
					log.add("stop-err", "%s via %s: %v", name, s.name, err)
					continue
				}
				mu.Lock()
				jobs[name].stopped = true
				mu.Unlock()
				log.add("stop-ack", "%s via %s", name, s.name)
				continue
			}
			name := fmt.Sprintf("c%03d", i)
			j := &chaosJob{count: 1 + rng.IntN(2), cpu: 100 + 50*rng.IntN(3), mem: 32}
			job := faultJob(name, j.count)
			job.Groups[0].Tasks[0].Resources = api.Resources{CPU: j.cpu, MemoryMB: j.mem}
			// sleep as PID 1 ignores SIGTERM; keep stops short.
			job.Groups[0].Tasks[0].StopTimeout = api.Duration(time.Second)
			if _, err := cl.Jobs().Register(job); err != nil {
				log.add("reg-err", "%s via %s: %v", name, s.name, err)
				continue
			}
			mu.Lock()
			jobs[name] = j
			mu.Unlock()
			log.add("reg-ack", "%s count %d via %s", name, j.count, s.name)
		}
	}()

	// Two nemeses, one over the servers (one faulty at a time, so a
	// majority stays) and one over the agents.
	faults := func(kind string, nodes []*fcNode, stream uint64) {
		defer wg.Done()
		rng := rand.New(rand.NewPCG(seed, stream))
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(200+rng.IntN(400)) * time.Millisecond):
			}
			n := nodes[rng.IntN(len(nodes))]
			hold := time.Duration(300+rng.IntN(1500)) * time.Millisecond
			switch rng.IntN(3) {
			case 0:
				log.add("fault", "kill %s %s for %s", kind, n.name, hold)
				fc.tn.Kill(n.proc)
				time.Sleep(hold)
				fc.tn.Restart(n.proc)
			case 1:
				log.add("fault", "pause %s %s for %s", kind, n.name, hold)
				fc.tn.Pause(n.proc)
				time.Sleep(hold)
				fc.tn.Resume(n.proc)
			case 2:
				log.add("fault", "partition %s %s for %s", kind, n.name, hold)
				if err := chaosPartition(fc.tn, n.host, true); err != nil {
					log.add("error", "%v", err)
					continue
				}
				time.Sleep(hold)
				if err := chaosPartition(fc.tn, n.host, false); err != nil {
					log.add("error", "%v", err)
				}
			}
			log.add("heal", "%s %s", kind, n.name)
		}
	}
	wg.Add(2)
	go faults("server", fc.servers, 2)
	go faults("agent", fc.agents, 3)

	time.Sleep(dur)
	close(stop)
	wg.Wait()
	log.add("settle", "faults over; every process runs and every host is connected")

	// The checker.
	var violations []string
	violate := func(format string, args ...any) {
		v := fmt.Sprintf(format, args...)
		violations = append(violations, v)
		log.add("VIOLATION", "%s", v)
	}
	fc.waitLeader(30 * time.Second)
	fc.waitReady(fc.agentNames(), 60*time.Second)
	cl := clientFor(fc.addr(), 10*time.Second)

	// No acknowledged job lost; each in the state its last acknowledged
	// write left it (a stop that errored may still have applied, so only
	// acknowledged stops are held to "stopped").
	all, _, err := cl.Jobs().List(nil)
	if err != nil {
		t.Fatalf("list jobs after the run: %v", err)
	}
	have := map[string]*api.Job{}
	for _, j := range all {
		have[j.ID] = j
	}
	var names []string
	for name := range jobs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		j := jobs[name]
		got := have[name]
		switch {
		case got == nil:
			violate("acknowledged job %s is lost", name)
		case j.stopped && !got.Stop:
			violate("job %s was stopped (acknowledged) but is not", name)
		}
	}

	// Every live service job back at its count, and every allocation
	// told to stop stopped (a stop waits for the container's stop
	// timeout). What does not settle in time is a violation.
	settled := chaosSettle(120*time.Second, func() error {
		allocs, _, err := cl.Allocations().List(nil)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.DesiredStatus != api.AllocDesiredRun && a.ClientStatus == api.AllocClientRunning {
				return fmt.Errorf("allocation %s (%s) on %s is told to %s but still runs", a.Name, a.ID[:8], a.NodeName, a.DesiredStatus)
			}
		}
		for _, name := range names {
			if j := have[name]; j == nil || j.Stop {
				continue
			}
			r, err := running(cl, name)
			if err != nil {
				return err
			}
			if len(r) != jobs[name].count {
				return fmt.Errorf("service job %s has %d of %d running", name, len(r), jobs[name].count)
			}
		}
		return nil
	})
	if settled != nil {
		violate("not settled 120s after the last fault: %v", settled)
	}
	allocs, _, err := cl.Allocations().List(nil)
	if err != nil {
		t.Fatalf("list allocations: %v", err)
	}
	runningByName := map[string][]string{}
	used := map[string]api.Resources{}
	for _, a := range allocs {
		if a.ClientStatus == api.AllocClientRunning {
			runningByName[a.Name] = append(runningByName[a.Name], a.NodeName)
		}
		// What placement counts against a node: allocations the server
		// wants running that have not finished.
		if a.DesiredStatus == api.AllocDesiredRun && !a.Terminal() {
			u := used[a.NodeID]
			u.CPU += a.Resources.CPU
			u.MemoryMB += a.Resources.MemoryMB
			used[a.NodeID] = u
		}
	}
	for name, on := range runningByName {
		if len(on) > 1 {
			violate("allocation %s runs on %d nodes: %v", name, len(on), on)
		}
	}
	nodes, _, err := cl.Nodes().List(nil)
	if err != nil {
		t.Fatalf("list nodes: %v", err)
	}
	capacity := map[string]*api.Node{}
	for _, n := range nodes {
		capacity[n.Name] = n
		if u := used[n.ID]; u.CPU > n.Resources.CPU || u.MemoryMB > n.Resources.MemoryMB {
			violate("node %s over capacity in the final state: %d/%d millicores, %d/%d MiB", n.Name, u.CPU, n.Resources.CPU, u.MemoryMB, n.Resources.MemoryMB)
		}
	}
	// Each agent's own view: what its host really runs, after the stale
	// copies have had time to stop.
	if err := chaosSettle(60*time.Second, func() error {
		for name, on := range fc.hostView() {
			if len(on) > 1 {
				return fmt.Errorf("container %s runs on hosts %v", name, on)
			}
		}
		return nil
	}); err != nil {
		violate("%v 60s after settling", err)
	}
	for _, a := range fc.agents {
		var cpu, mem int
		for _, c := range liveContainers(a.host) {
			// The job in the final state, so writes whose answer was
			// lost but that applied count too.
			j := have[strings.SplitN(c.Name, ".", 2)[0]]
			if j == nil || len(j.Groups) == 0 || len(j.Groups[0].Tasks) == 0 {
				violate("host of %s runs container %s of no known job", a.name, c.Name)
				continue
			}
			if j.Stop {
				violate("host of %s still runs container %s of stopped job %s", a.name, c.Name, j.ID)
			}
			cpu += j.Groups[0].Tasks[0].Resources.CPU
			mem += j.Groups[0].Tasks[0].Resources.MemoryMB
		}
		if n := capacity[a.name]; n != nil && (cpu > n.Resources.CPU || mem > n.Resources.MemoryMB) {
			violate("agent %s's host runs %d millicores, %d MiB of containers, over its %d/%d", a.name, cpu, mem, n.Resources.CPU, n.Resources.MemoryMB)
		}
	}

	// The summary.
	var b strings.Builder
	w := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "duration\t%s\n", dur)
	fmt.Fprintf(w, "faults injected\t%d\n", log.counts["fault"])
	for _, k := range []string{"kill", "pause", "partition"} {
		n := 0
		for _, l := range log.lines {
			if strings.Contains(l, " fault ") && strings.Contains(l, " "+k+" ") {
				n++
			}
		}
		fmt.Fprintf(w, "  %s\t%d\n", k, n)
	}
	fmt.Fprintf(w, "jobs submitted\t%d\n", log.counts["reg-ack"]+log.counts["reg-err"])
	fmt.Fprintf(w, "jobs acknowledged\t%d\n", log.counts["reg-ack"])
	fmt.Fprintf(w, "stops submitted\t%d\n", log.counts["stop-ack"]+log.counts["stop-err"])
	fmt.Fprintf(w, "stops acknowledged\t%d\n", log.counts["stop-ack"])
	fmt.Fprintf(w, "invariant violations\t%d\n", len(violations))
	w.Flush()
	t.Logf("chaos summary (seed %d):\n%s", seed, b.String())
	log.add("summary", "\n%s", b.String())
	if len(violations) > 0 {
		t.Errorf("%d invariant violation(s):\n%s", len(violations), strings.Join(violations, "\n"))
	}
}

// chaosSettle retries fn every 200ms until it succeeds or timeout passes,
// and returns its last error.
func chaosSettle(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// chaosPartition cuts (or heals) a host and returns an error instead of
// failing the test, for use from the nemesis goroutines.
func chaosPartition(tn *testNet, h *netHost, cut bool) error {
	op := "-I"
	if !cut {
		op = "-D"
	}
	for _, r := range partitionRules {
		if err := tn.iptables(h, op, r); err != nil {
			return err
		}
	}
	return nil
}
