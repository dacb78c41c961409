//go:build e2e

package e2e

// Fault scenarios on a real cluster: three servers and agents, each on a
// host of its own (a network namespace), driven through the CLI and the
// API and checked against what the hosts really run (container state
// directories and live processes), not only against what the servers say.

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// fcNode is one berth process of a faultCluster and the host it runs on.
type fcNode struct {
	name string
	host *netHost
	proc *hostProc
}

func (n *fcNode) addr() string { return "http://" + n.host.IP + ":9470" }

// faultCluster is three servers and some agents, one per host.
type faultCluster struct {
	t       *testing.T
	tn      *testNet
	servers []*fcNode
	agents  []*fcNode
	cut     map[*netHost]bool // hosts that are partitioned or whose process is down
	tar     string
}

func startFaultCluster(t *testing.T, nAgents int) *faultCluster {
	t.Helper()
	tn := newTestNet(t, 3+nAgents)
	fc := &faultCluster{t: t, tn: tn, cut: map[*netHost]bool{}}
	var joins []string
	for i := 0; i < 3; i++ {
		joins = append(joins, "--join", tn.Hosts[i].IP+":9472")
	}
	for i := 0; i < 3; i++ {
		h := tn.Hosts[i]
		n := &fcNode{name: fmt.Sprintf("s%d", i+1), host: h}
		args := []string{"server", "--bind", h.IP, "--node-name", n.name, "--bootstrap-expect", "3",
			"--data-dir", filepath.Join(h.Dir, "server")}
		for j := 0; j < 3; j++ {
			if j != i {
				args = append(args, "--join", tn.Hosts[j].IP+":9472")
			}
		}
		n.proc = tn.Start(h, "server", append(args, tn.SecurityArgs("server")...)...)
		fc.servers = append(fc.servers, n)
	}
	for i := 0; i < nAgents; i++ {
		h := tn.Hosts[3+i]
		n := &fcNode{name: fmt.Sprintf("a%d", i+1), host: h}
		args := append([]string{"agent", "--bind", h.IP, "--node-name", n.name,
			"--data-dir", filepath.Join(h.Dir, "agent")}, joins...)
		n.proc = tn.Start(h, "agent", append(args, tn.SecurityArgs("agent")...)...)
		fc.agents = append(fc.agents, n)
	}
	fc.waitLeader(30 * time.Second)
	fc.waitReady(fc.agentNames(), 30*time.Second)
	fc.tar = testutil.BusyboxTar(t)
	for _, a := range fc.agents {
		fc.importImage(a)
	}
	return fc
}

func (fc *faultCluster) importImage(a *fcNode) {
	fc.t.Helper()
	if r := fc.tn.CLI(fc.addr(), "image", "import", "--node", a.name, fc.tar, "busybox:latest"); r.Code != 0 {
		fc.t.Fatalf("image import on %s: exit %d: %s%s", a.name, r.Code, r.Stdout, r.Stderr)
	}
}

func (fc *faultCluster) agentNames() []string {
	var out []string
	for _, a := range fc.agents {
		out = append(out, a.name)
	}
	return out
}

// addr is the API address of a server that is up and not cut off.
func (fc *faultCluster) addr() string {
	for _, s := range fc.servers {
		if !fc.cut[s.host] {
			return s.addr()
		}
	}
	fc.t.Fatal("every server is down or cut off")
	return ""
}

func clientFor(addr string, timeout time.Duration) *api.Client {
	c, err := api.NewClient(addr)
	if err != nil {
		panic(err) // built from a host's IP: always parses
	}
	c.SetHTTPClient(&http.Client{Timeout: timeout})
	return c
}

func (fc *faultCluster) client() *api.Client { return clientFor(fc.addr(), 10*time.Second) }

// leaderOf asks one server who leads, as a server of this cluster.
func (fc *faultCluster) leaderOf(s *fcNode) (*fcNode, error) {
	l, err := clientFor(s.addr(), 2*time.Second).Status().Leader()
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(l)
	if err != nil {
		return nil, fmt.Errorf("leader %q: %w", l, err)
	}
	for _, o := range fc.servers {
		if o.host.IP == host {
			return o, nil
		}
	}
	return nil, fmt.Errorf("leader %q is no server of this cluster", l)
}

// waitLeader waits until every server that is up and not cut off names
// the same leader, itself one of them.
func (fc *faultCluster) waitLeader(timeout time.Duration) *fcNode {
	fc.t.Helper()
	var leader *fcNode
	Eventually(fc.t, timeout, "an agreed leader", func() error {
		leader = nil
		for _, s := range fc.servers {
			if fc.cut[s.host] {
				continue
			}
			l, err := fc.leaderOf(s)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if leader != nil && l != leader {
				return fmt.Errorf("%s says %s leads, another says %s", s.name, l.name, leader.name)
			}
			leader = l
		}
		if leader == nil || fc.cut[leader.host] {
			return errors.New("no leader among the servers that are up")
		}
		return nil
	})
	return leader
}

// waitReady waits until every named node is ready.
func (fc *faultCluster) waitReady(names []string, timeout time.Duration) {
	fc.t.Helper()
	Eventually(fc.t, timeout, fmt.Sprintf("nodes %v ready", names), func() error {
		nodes, _, err := fc.client().Nodes().List(nil)
		if err != nil {
			return err
		}
		status := map[string]string{}
		for _, n := range nodes {
			status[n.Name] = n.Status
		}
		for _, want := range names {
			if status[want] != api.NodeStatusReady {
				return fmt.Errorf("node %s is %q", want, status[want])
			}
		}
		return nil
	})
}

// faultJob is a service job of count copies of busybox sleep.
func faultJob(name string, count int) *api.Job {
	return &api.Job{Name: name, Type: api.JobTypeService, Groups: []*api.Group{{
		Name: "app", Count: count,
		Tasks: []*api.Task{{Name: "main", Image: "busybox:latest", Command: []string{"sleep", "100000"},
			Resources: api.Resources{CPU: 100, MemoryMB: 32}}},
	}}}
}

// running returns a job's allocations that run and should, by alloc name.
// Two running copies of one name are an error.
func running(cl *api.Client, job string) (map[string]*api.Allocation, error) {
	allocs, _, err := cl.Jobs().Allocations(job, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*api.Allocation{}
	for _, a := range allocs {
		if a.ClientStatus == api.AllocClientRunning && a.DesiredStatus == api.AllocDesiredRun {
			if o := out[a.Name]; o != nil {
				return nil, fmt.Errorf("%s runs twice: %s on %s and %s on %s", a.Name, o.ID, o.NodeName, a.ID, a.NodeName)
			}
			out[a.Name] = a
		}
	}
	return out, nil
}

// waitRunning waits until job has count running allocations, none on a
// node in avoid, and returns them by name.
func (fc *faultCluster) waitRunning(job string, count int, timeout time.Duration, avoid ...string) map[string]*api.Allocation {
	fc.t.Helper()
	var got map[string]*api.Allocation
	Eventually(fc.t, timeout, fmt.Sprintf("%d copies of %s running", count, job), func() error {
		r, err := running(fc.client(), job)
		if err != nil {
			return err
		}
		for _, a := range r {
			if guideContains(avoid, a.NodeName) {
				return fmt.Errorf("%s still runs on %s", a.Name, a.NodeName)
			}
		}
		if len(r) != count {
			return fmt.Errorf("%d of %d running", len(r), count)
		}
		got = r
		return nil
	})
	return got
}

// hostContainer is a container as its host's disk and kernel show it.
type hostContainer struct {
	ID, Name  string
	Pid       int
	StartedAt time.Time
}

// liveContainers reads the containers of the agent on h from its data
// dir: config.json names each one, state.json has its pid; one counts as
// live while it has no exit.json and its pid exists.
func liveContainers(h *netHost) []hostContainer {
	dirs, _ := filepath.Glob(filepath.Join(h.Dir, "agent", "containers", "*"))
	var out []hostContainer
	for _, d := range dirs {
		var spec struct{ Name string }
		var state struct {
			Pid       int       `json:"pid"`
			StartedAt time.Time `json:"startedAt"`
		}
		b, err := os.ReadFile(filepath.Join(d, "config.json"))
		if err != nil || json.Unmarshal(b, &spec) != nil {
			continue
		}
		b, err = os.ReadFile(filepath.Join(d, "state.json"))
		if err != nil || json.Unmarshal(b, &state) != nil || state.Pid <= 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "exit.json")); err == nil {
			continue
		}
		if syscall.Kill(state.Pid, 0) != nil {
			continue
		}
		out = append(out, hostContainer{ID: filepath.Base(d), Name: spec.Name, Pid: state.Pid, StartedAt: state.StartedAt})
	}
	return out
}

// hostView maps container name to the agents whose hosts run it.
func (fc *faultCluster) hostView() map[string][]string {
	view := map[string][]string{}
	for _, a := range fc.agents {
		for _, c := range liveContainers(a.host) {
			view[c.Name] = append(view[c.Name], a.name)
		}
	}
	return view
}

// containerName is what the agent names allocation index i of a
// faultJob with count copies.
func containerName(job string, count, i int) string {
	if count == 1 {
		return job
	}
	return fmt.Sprintf("%s.app.%d.main", job, i)
}

// waitHostsRun waits until the hosts run every copy of job exactly once,
// and returns which agent runs each.
func (fc *faultCluster) waitHostsRun(job string, count int, timeout time.Duration) map[string]string {
	fc.t.Helper()
	where := map[string]string{}
	Eventually(fc.t, timeout, fmt.Sprintf("hosts run each copy of %s once", job), func() error {
		view := fc.hostView()
		for i := 0; i < count; i++ {
			n := containerName(job, count, i)
			if len(view[n]) != 1 {
				return fmt.Errorf("container %s runs on %v", n, view[n])
			}
			where[n] = view[n][0]
		}
		return nil
	})
	return where
}

// checkNoDuplicates fails the test if any container runs on two hosts.
func (fc *faultCluster) checkNoDuplicates() {
	fc.t.Helper()
	for name, on := range fc.hostView() {
		if len(on) > 1 {
			fc.t.Errorf("container %s runs on %d hosts at once: %v", name, len(on), on)
		}
	}
}

func (fc *faultCluster) agent(name string) *fcNode {
	for _, a := range fc.agents {
		if a.name == name {
			return a
		}
	}
	fc.t.Fatalf("no agent %s", name)
	return nil
}

func (fc *faultCluster) jobIDsOn(s *fcNode, stale bool) ([]string, error) {
	var q url.Values
	if stale {
		q = url.Values{"stale": {""}}
	}
	var jobs []*api.Job
	if _, err := clientFor(s.addr(), 3*time.Second).Do(http.MethodGet, "/v1/jobs", q, nil, &jobs); err != nil {
		return nil, err
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	sort.Strings(ids)
	return ids, nil
}

// hasAll reports which of want the server's own state lacks.
func (fc *faultCluster) lacks(s *fcNode, want []string) error {
	ids, err := fc.jobIDsOn(s, true)
	if err != nil {
		return err
	}
	var missing []string
	for _, w := range want {
		if !guideContains(ids, w) {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s lacks acknowledged jobs %v", s.name, missing)
	}
	return nil
}

// Scenario 1: the leader is SIGKILLed. A new one takes writes within
// seconds, every acknowledged job is still there, scheduling resumes, and
// the old leader catches up when it comes back.
func TestFaultLeaderKill(t *testing.T) {
	fc := startFaultCluster(t, 2)
	var acked []string
	for i := 0; i < 5; i++ {
		name := "before-" + strconv.Itoa(i)
		if _, err := fc.client().Jobs().Register(faultJob(name, 1)); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		acked = append(acked, name)
	}
	for _, j := range acked {
		fc.waitRunning(j, 1, 30*time.Second)
	}
	leader := fc.waitLeader(10 * time.Second)
	fc.tn.Kill(leader.proc)
	fc.cut[leader.host] = true
	start := time.Now()
	var took time.Duration
	var via *fcNode
	for took == 0 {
		for _, s := range fc.servers {
			if fc.cut[s.host] {
				continue
			}
			if _, err := clientFor(s.addr(), time.Second).Jobs().Register(faultJob("after", 1)); err == nil {
				took, via = time.Since(start), s
				break
			}
		}
		if took == 0 && time.Since(start) > 20*time.Second {
			t.Fatalf("no server accepted a write within 20s of killing leader %s", leader.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
	acked = append(acked, "after")
	newLeader := fc.waitLeader(10 * time.Second)
	t.Logf("leader failover: SIGKILL of %s to a write acknowledged by %s (leader now %s): %s",
		leader.name, via.name, newLeader.name, took.Round(time.Millisecond))
	for _, s := range fc.servers {
		if !fc.cut[s.host] {
			Eventually(t, 5*time.Second, "acknowledged jobs on "+s.name, func() error { return fc.lacks(s, acked) })
		}
	}
	// Scheduling resumed: the new job runs, and the old ones never stopped.
	fc.waitRunning("after", 1, 30*time.Second)
	for _, j := range acked {
		fc.waitHostsRun(j, 1, 10*time.Second)
	}
	fc.tn.Restart(leader.proc)
	delete(fc.cut, leader.host)
	Eventually(t, 20*time.Second, "the old leader catches up", func() error { return fc.lacks(leader, acked) })
	fc.waitLeader(10 * time.Second)
	fc.checkNoDuplicates()
}

// Scenario 2: the leader is cut off from the other two. On its side of the
// partition no write commits; the majority elects a leader and goes on;
// after healing the old leader follows and has the majority's writes.
func TestFaultPartitionedMinorityServer(t *testing.T) {
	fc := startFaultCluster(t, 0)
	old := fc.waitLeader(10 * time.Second)
	if _, err := fc.client().Jobs().Register(faultJob("before", 1)); err != nil {
		t.Fatal(err)
	}
	fc.tn.Partition(old.host)
	fc.cut[old.host] = true
	// The minority cannot commit: a write sent to it from its own side
	// fails (it may hang until it gives up; the CLI is bounded at 15s).
	r := fc.tn.CLIOn(old.host, old.addr(), 15*time.Second, "job", "run", "-d", jobFile(t, "minority", 1, 100, 32))
	if r.Code == 0 {
		t.Fatalf("a write through the partitioned old leader %s was acknowledged: %s", old.name, r.Stdout)
	}
	t.Logf("write on the minority side refused (exit %d): %s", r.Code, strings.TrimSpace(r.Stderr))
	newLeader := fc.waitLeader(15 * time.Second)
	if newLeader == old {
		t.Fatalf("the partitioned server %s still leads the majority", old.name)
	}
	if _, err := fc.client().Jobs().Register(faultJob("majority", 1)); err != nil {
		t.Fatalf("the majority does not commit: %v", err)
	}
	fc.tn.Heal(old.host)
	delete(fc.cut, old.host)
	Eventually(t, 20*time.Second, "the healed server catches up", func() error {
		if err := fc.lacks(old, []string{"before", "majority"}); err != nil {
			return err
		}
		l, err := fc.leaderOf(old)
		if err != nil {
			return err
		}
		if l != newLeader {
			return fmt.Errorf("%s follows %s, want %s", old.name, l.name, newLeader.name)
		}
		return nil
	})
	for _, s := range fc.servers {
		ids, err := fc.jobIDsOn(s, true)
		if err != nil {
			t.Fatal(err)
		}
		if guideContains(ids, "minority") {
			t.Errorf("%s has the job the minority never committed: %v", s.name, ids)
		}
	}
}

// Scenario 3: every server and agent is killed and started again. Jobs
// and allocations are all there, and the containers were never restarted.
func TestFaultWholeClusterRestart(t *testing.T) {
	fc := startFaultCluster(t, 2)
	if _, err := fc.client().Jobs().Register(faultJob("web", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := fc.client().Jobs().Register(faultJob("one", 1)); err != nil {
		t.Fatal(err)
	}
	before := map[string]*api.Allocation{}
	for _, j := range []struct {
		name  string
		count int
	}{{"web", 2}, {"one", 1}} {
		for n, a := range fc.waitRunning(j.name, j.count, 30*time.Second) {
			before[n] = a
		}
		fc.waitHostsRun(j.name, j.count, 10*time.Second)
	}
	pids := map[string]int{}
	for _, a := range fc.agents {
		for _, c := range liveContainers(a.host) {
			pids[c.Name] = c.Pid
		}
	}
	for _, n := range append(append([]*fcNode{}, fc.servers...), fc.agents...) {
		fc.tn.Kill(n.proc)
	}
	for _, n := range append(append([]*fcNode{}, fc.servers...), fc.agents...) {
		fc.tn.Restart(n.proc)
	}
	fc.waitLeader(30 * time.Second)
	fc.waitReady(fc.agentNames(), 30*time.Second)
	after := map[string]*api.Allocation{}
	for n, a := range fc.waitRunning("web", 2, 30*time.Second) {
		after[n] = a
	}
	for n, a := range fc.waitRunning("one", 1, 30*time.Second) {
		after[n] = a
	}
	for n, a := range before {
		if after[n] == nil || after[n].ID != a.ID || after[n].NodeName != a.NodeName {
			t.Errorf("allocation %s was %s on %s before the restart, now %+v", n, a.ID, a.NodeName, after[n])
		}
	}
	for _, a := range fc.agents {
		for _, c := range liveContainers(a.host) {
			if pids[c.Name] != c.Pid {
				t.Errorf("container %s on %s has pid %d, had %d before the restart", c.Name, a.name, c.Pid, pids[c.Name])
			}
			delete(pids, c.Name)
		}
	}
	if len(pids) > 0 {
		t.Errorf("containers gone after the restart: %v", pids)
	}
	fc.checkNoDuplicates()
}

// Scenario 4: an agent is SIGKILLed. Its service copies run elsewhere;
// when it comes back the stale copies are stopped, never duplicated.
func TestFaultAgentKill(t *testing.T) {
	fc := startFaultCluster(t, 3)
	if _, err := fc.client().Jobs().Register(faultJob("svc", 3)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("svc", 3, 30*time.Second)
	where := fc.waitHostsRun("svc", 3, 10*time.Second)
	var victim *fcNode
	var moved []string
	for n, on := range where {
		if victim == nil {
			victim = fc.agent(on)
		}
		if on == victim.name {
			moved = append(moved, n)
		}
	}
	start := time.Now()
	fc.tn.Kill(victim.proc)
	fc.waitRunning("svc", 3, 30*time.Second, victim.name)
	t.Logf("node loss: SIGKILL of agent %s to %d replacement(s) running elsewhere: %s",
		victim.name, len(moved), time.Since(start).Round(time.Millisecond))
	// The killed agent's containers outlive it: the stale copies run on
	// its host until it comes back.
	for _, n := range moved {
		if on := fc.hostView()[n]; !guideContains(on, victim.name) {
			t.Logf("%s no longer runs on %s's host (on %v)", n, victim.name, on)
		}
	}
	fc.tn.Restart(victim.proc)
	fc.waitReady(fc.agentNames(), 30*time.Second)
	Eventually(t, 30*time.Second, "stale copies stopped", func() error {
		for _, c := range liveContainers(victim.host) {
			if guideContains(moved, c.Name) {
				return fmt.Errorf("%s still runs on %s (pid %d)", c.Name, victim.name, c.Pid)
			}
		}
		return nil
	})
	fc.waitHostsRun("svc", 3, 10*time.Second)
	if r, err := running(fc.client(), "svc"); err != nil || len(r) != 3 {
		t.Fatalf("after the agent came back: %d running, %v", len(r), err)
	}
	fc.checkNoDuplicates()
}

// Scenario 5: an agent restarts. Its containers keep running, the same
// processes with the same start times, and nothing is rescheduled.
func TestFaultAgentRestart(t *testing.T) {
	fc := startFaultCluster(t, 1)
	if _, err := fc.client().Jobs().Register(faultJob("keep", 2)); err != nil {
		t.Fatal(err)
	}
	allocs := fc.waitRunning("keep", 2, 30*time.Second)
	fc.waitHostsRun("keep", 2, 10*time.Second)
	a := fc.agents[0]
	for _, tt := range []struct {
		name string
		stop func()
	}{
		{"SIGTERM", func() {
			if !fc.tn.Stop(a.proc) {
				t.Errorf("agent did not exit within 15s of SIGTERM")
			}
		}},
		{"SIGKILL", func() { fc.tn.Kill(a.proc) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := liveContainers(a.host)
			if len(before) != 2 {
				t.Fatalf("%d containers before the restart, want 2", len(before))
			}
			tt.stop()
			fc.tn.Restart(a.proc)
			start := time.Now()
			fc.waitReady([]string{a.name}, 30*time.Second)
			t.Logf("agent %s restart: node ready %s after the new agent started", tt.name, time.Since(start).Round(time.Millisecond))
			// Past gossip failure detection, its grace and a heartbeat TTL:
			// a restart that cost the node its allocations shows by now.
			time.Sleep(6 * time.Second)
			now := fc.waitRunning("keep", 2, 10*time.Second)
			for n, al := range allocs {
				if now[n] == nil || now[n].ID != al.ID {
					t.Errorf("allocation %s was %s, now %+v: the restart rescheduled it", n, al.ID, now[n])
				}
			}
			after := liveContainers(a.host)
			for _, b := range before {
				found := false
				for _, c := range after {
					if c.ID == b.ID {
						found = true
						if c.Pid != b.Pid || !c.StartedAt.Equal(b.StartedAt) {
							t.Errorf("container %s: pid %d started %s, was pid %d started %s", c.Name, c.Pid, c.StartedAt, b.Pid, b.StartedAt)
						}
					}
				}
				if !found {
					t.Errorf("container %s (%s) no longer runs after the agent's %s restart", b.Name, b.ID[:12], tt.name)
				}
			}
			if len(after) != len(before) {
				t.Errorf("%d containers after the restart, %d before", len(after), len(before))
			}
		})
	}
}

// Scenario 6: an agent is cut off. Its containers keep running; once the
// partition outlasts the node-down timeout they are replaced elsewhere;
// after healing the stale copies are stopped.
func TestFaultPartitionedAgent(t *testing.T) {
	fc := startFaultCluster(t, 2)
	a1 := fc.agents[0]
	// Put the job on a1 only, then let a2 take placements again.
	if r := fc.tn.CLI(fc.addr(), "node", "eligibility", fc.agents[1].name, "--disable"); r.Code != 0 {
		t.Fatalf("node eligibility: exit %d: %s", r.Code, r.Stderr)
	}
	if _, err := fc.client().Jobs().Register(faultJob("part", 2)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("part", 2, 30*time.Second)
	fc.waitHostsRun("part", 2, 10*time.Second)
	if r := fc.tn.CLI(fc.addr(), "node", "eligibility", fc.agents[1].name, "--enable"); r.Code != 0 {
		t.Fatalf("node eligibility: exit %d: %s", r.Code, r.Stderr)
	}
	before := liveContainers(a1.host)
	start := time.Now()
	fc.tn.Partition(a1.host)
	fc.waitRunning("part", 2, 30*time.Second, a1.name)
	t.Logf("partitioned agent: cut-off to replacements running on %s: %s", fc.agents[1].name, time.Since(start).Round(time.Millisecond))
	// While cut off, a1's containers kept running: same processes.
	for _, b := range before {
		if syscall.Kill(b.Pid, 0) != nil {
			t.Errorf("container %s on the partitioned agent died while cut off", b.Name)
		}
	}
	fc.tn.Heal(a1.host)
	// The copies that ran before the cut are the stale ones; a later
	// placement may legitimately bring a new copy back to a1.
	Eventually(t, 30*time.Second, "stale copies stopped after healing", func() error {
		for _, c := range liveContainers(a1.host) {
			for _, b := range before {
				if c.ID == b.ID {
					return fmt.Errorf("stale container %s still runs on %s", c.Name, a1.name)
				}
			}
		}
		return nil
	})
	fc.waitReady(fc.agentNames(), 30*time.Second)
	fc.waitHostsRun("part", 2, 10*time.Second)
	fc.checkNoDuplicates()
}

// Scenario 7: draining a node moves its service allocations, and the
// drain completes: nothing left on it and it takes no new work.
func TestFaultNodeDrain(t *testing.T) {
	fc := startFaultCluster(t, 2)
	if _, err := fc.client().Jobs().Register(faultJob("drainme", 4)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("drainme", 4, 30*time.Second)
	fc.waitHostsRun("drainme", 4, 10*time.Second)
	victim := fc.agents[0]
	start := time.Now()
	if r := fc.tn.CLI(fc.addr(), "node", "drain", victim.name); r.Code != 0 {
		t.Fatalf("node drain: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	fc.waitRunning("drainme", 4, 60*time.Second, victim.name)
	Eventually(t, 30*time.Second, "drained host runs nothing", func() error {
		if c := liveContainers(victim.host); len(c) > 0 {
			return fmt.Errorf("%d containers still run on %s", len(c), victim.name)
		}
		return nil
	})
	t.Logf("drain of %s complete in %s", victim.name, time.Since(start).Round(time.Millisecond))
	r := fc.tn.CLI(fc.addr(), "node", "ls")
	if r.Code != 0 {
		t.Fatalf("node ls: %s", r.Stderr)
	}
	for _, l := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(l) // ID NAME DC STATUS ELIGIBILITY DRAIN ...
		if len(f) > 5 && f[1] == victim.name && (f[4] != "ineligible" || f[5] != "true") {
			t.Errorf("node ls shows the drained node as %q", l)
		}
	}
	// New work goes elsewhere.
	if _, err := fc.client().Jobs().Register(faultJob("later", 1)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("later", 1, 30*time.Second, victim.name)
	fc.checkNoDuplicates()
}

// Scenario 8: each server is replaced in turn by a new one with an empty
// data dir (kill, remove-peer, join). No state is lost.
func TestFaultRollingServerReplacement(t *testing.T) {
	fc := startFaultCluster(t, 1)
	var acked []string
	for i, old := range append([]*fcNode{}, fc.servers...) {
		name := "gen-" + strconv.Itoa(i)
		if _, err := fc.client().Jobs().Register(faultJob(name, 1)); err != nil {
			t.Fatalf("register %s: %v", name, err)
		}
		acked = append(acked, name)
		fc.tn.Kill(old.proc)
		fc.cut[old.host] = true
		fc.waitLeader(15 * time.Second)
		// Remove it once gossip reports it gone: the leader adds every
		// server that gossip still shows alive back to Raft, so a
		// remove-peer issued before failure detection is undone.
		Eventually(t, 15*time.Second, "server members shows "+old.name+" gone", func() error {
			r := fc.tn.CLI(fc.addr(), "server", "members")
			if r.Code != 0 {
				return fmt.Errorf("server members: exit %d: %s", r.Code, r.Stderr)
			}
			for _, l := range strings.Split(r.Stdout, "\n") {
				f := strings.Fields(l) // NAME ADDRESS ROLE STATUS ...
				if len(f) > 3 && f[0] == old.name && f[3] == "alive" {
					return fmt.Errorf("%s is still alive in gossip", old.name)
				}
			}
			return nil
		})
		if r := fc.tn.CLI(fc.addr(), "operator", "raft", "remove-peer", old.name); r.Code != 0 {
			t.Fatalf("remove-peer %s: exit %d: %s%s", old.name, r.Code, r.Stdout, r.Stderr)
		}
		// The replacement: same host address, a new name and an empty
		// data dir; it joins the survivors and never bootstraps.
		repl := &fcNode{name: old.name + "r", host: old.host}
		args := []string{"server", "--bind", old.host.IP, "--node-name", repl.name, "--bootstrap-expect", "0",
			"--data-dir", filepath.Join(old.host.Dir, "server-"+repl.name)}
		for _, s := range fc.servers {
			if s != old {
				args = append(args, "--join", s.host.IP+":9472")
			}
		}
		repl.proc = fc.tn.Start(old.host, "server-"+repl.name, append(args, fc.tn.SecurityArgs("server")...)...)
		fc.servers[i] = repl
		delete(fc.cut, old.host)
		Eventually(t, 30*time.Second, repl.name+" is a voter", func() error {
			peers, err := fc.client().Operator().RaftPeers()
			if err != nil {
				return err
			}
			var ids []string
			for _, p := range peers {
				if p.Voter {
					ids = append(ids, p.ID)
				}
			}
			sort.Strings(ids)
			var want []string
			for _, s := range fc.servers {
				want = append(want, s.name)
			}
			sort.Strings(want)
			if strings.Join(ids, ",") != strings.Join(want, ",") {
				return fmt.Errorf("voters %v, want %v", ids, want)
			}
			return nil
		})
		Eventually(t, 20*time.Second, repl.name+" has every job", func() error { return fc.lacks(repl, acked) })
	}
	fc.waitLeader(15 * time.Second)
	for _, s := range fc.servers {
		if err := fc.lacks(s, acked); err != nil {
			t.Error(err)
		}
	}
	for _, j := range acked {
		fc.waitRunning(j, 1, 30*time.Second)
	}
}

// A partition that outlasts gossip's memory of dead members (memberlist's
// GossipToTheDeadTime, 10s in internal/gossip) must still heal: the agent
// comes back ready and its stale copies are stopped.
//
// Once the agent's gossip view holds no live server, it keeps the servers
// that answered before and rejoins the pool through its --join addresses.
func TestFaultLongAgentPartitionHeals(t *testing.T) {
	fc := startFaultCluster(t, 2)
	a1 := fc.agents[0]
	if _, err := fc.client().Jobs().Register(faultJob("long", 2)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("long", 2, 30*time.Second)
	fc.tn.Partition(a1.host)
	time.Sleep(20 * time.Second)
	fc.waitRunning("long", 2, 30*time.Second, a1.name)
	fc.tn.Heal(a1.host)
	start := time.Now()
	fc.waitReady(fc.agentNames(), 45*time.Second)
	t.Logf("agent ready %s after healing a 20s partition", time.Since(start).Round(time.Millisecond))
	fc.waitHostsRun("long", 2, 30*time.Second)
	fc.checkNoDuplicates()
}

// An agent killed while it stops a container (sleep as PID 1 ignores
// SIGTERM, so the stop waits out the 10s stop timeout) must finish the
// stop when it comes back.
//
// The restored runner of an allocation told to stop finishes the stop.
func TestFaultAgentRestartDuringStop(t *testing.T) {
	fc := startFaultCluster(t, 1)
	a := fc.agents[0]
	if _, err := fc.client().Jobs().Register(faultJob("halfstop", 1)); err != nil {
		t.Fatal(err)
	}
	fc.waitRunning("halfstop", 1, 30*time.Second)
	fc.waitHostsRun("halfstop", 1, 10*time.Second)
	if r := fc.tn.CLI(fc.addr(), "job", "stop", "halfstop"); r.Code != 0 {
		t.Fatalf("job stop: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	time.Sleep(time.Second) // the agent has begun the 10s stop
	fc.tn.Kill(a.proc)
	fc.tn.Restart(a.proc)
	Eventually(t, 30*time.Second, "the stopped job's container stopped", func() error {
		if c := liveContainers(a.host); len(c) > 0 {
			return fmt.Errorf("%s still runs (pid %d)", c[0].Name, c[0].Pid)
		}
		return nil
	})
}

// A job stopped right after it was registered must leave no container
// behind, however the agent's start and stop interleave.
//
// When the stop reaches the agent before the container exists, the start
// sees the allocation stopped and stops what it started.
func TestFaultStopRightAfterStart(t *testing.T) {
	fc := startFaultCluster(t, 1)
	a := fc.agents[0]
	cl := fc.client()
	for i := 0; i < 10; i++ {
		name := "flash-" + strconv.Itoa(i)
		if _, err := cl.Jobs().Register(faultJob(name, 1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i*5) * time.Millisecond)
		if _, err := cl.Jobs().Deregister(name, false); err != nil {
			t.Fatal(err)
		}
	}
	Eventually(t, 40*time.Second, "no container of the stopped jobs runs", func() error {
		if c := liveContainers(a.host); len(c) > 0 {
			return fmt.Errorf("%d still run, first %s (pid %d)", len(c), c[0].Name, c[0].Pid)
		}
		return nil
	})
}
