//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/simnode"
)

// jobFile writes a small service job spec and returns its path.
func jobFile(t *testing.T, name string, count, cpu, mem int) string {
	t.Helper()
	spec := fmt.Sprintf(`name: %s
type: service
groups:
  - name: app
    count: %d
    tasks:
      - name: main
        image: busybox:latest
        command: ["sleep", "3600"]
        resources: {cpu: %d, memory: %d}
`, name, count, cpu, mem)
	p := filepath.Join(t.TempDir(), name+".yaml")
	if err := os.WriteFile(p, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testJob(name string, count int) *api.Job {
	return &api.Job{Name: name, Type: api.JobTypeService, Groups: []*api.Group{{
		Name: "app", Count: count,
		Tasks: []*api.Task{{Name: "main", Image: "busybox:latest", Command: []string{"sleep", "3600"},
			Resources: api.Resources{CPU: 100, MemoryMB: 64}}},
	}}}
}

// jobIDs lists the jobs one server knows.
func jobIDs(s *Server) ([]string, error) {
	jobs, _, err := s.Client(5 * time.Second).Jobs().List(nil)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	sort.Strings(ids)
	return ids, nil
}

// hasJobs reports an error unless s knows every job in want.
func hasJobs(s *Server, want []string) error {
	ids, err := jobIDs(s)
	if err != nil {
		return err
	}
	have := map[string]bool{}
	for _, id := range ids {
		have[id] = true
	}
	var missing []string
	for _, w := range want {
		if !have[w] {
			missing = append(missing, w)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("server %s lacks %d acknowledged job(s): %v", s.Name, len(missing), missing)
	}
	return nil
}

func TestClusterElectsLeader(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)

	res := c.CLI(c.Servers[0], "operator", "raft", "list-peers", "--format", "json")
	if res.Code != 0 {
		t.Fatalf("list-peers: exit %d: %s", res.Code, res.Stderr)
	}
	var peers []api.RaftPeer
	if err := json.Unmarshal([]byte(res.Stdout), &peers); err != nil {
		t.Fatalf("list-peers --format json: %v\n%s", err, res.Stdout)
	}
	if len(peers) != 3 {
		t.Fatalf("raft has %d peers, want 3: %+v", len(peers), peers)
	}
	leaders := 0
	for _, p := range peers {
		if p.Leader {
			leaders++
			if p.Address != leader.RaftAddr() {
				t.Errorf("list-peers names leader %s, status/leader says %s", p.Address, leader.RaftAddr())
			}
		}
		if !p.Voter {
			t.Errorf("peer %s is not a voter", p.ID)
		}
	}
	if leaders != 1 {
		t.Fatalf("%d leaders in %+v", leaders, peers)
	}

	// The table form names each server.
	res = c.CLI(c.Servers[1], "operator", "raft", "list-peers")
	if res.Code != 0 || !strings.Contains(res.Stdout, "leader") || !strings.Contains(res.Stdout, leader.RaftAddr()) {
		t.Fatalf("list-peers table (exit %d):\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	// Gossip: every server sees the other two.
	Eventually(t, 10*time.Second, "server members lists 3 servers", func() error {
		res := c.CLI(c.Servers[2], "server", "members", "--format", "json")
		if res.Code != 0 {
			return fmt.Errorf("exit %d: %s", res.Code, res.Stderr)
		}
		var members []api.Member
		if err := json.Unmarshal([]byte(res.Stdout), &members); err != nil {
			return err
		}
		servers := 0
		for _, m := range members {
			if m.Role == "server" && m.Status == "alive" {
				servers++
			}
		}
		if servers != 3 {
			return fmt.Errorf("%d alive servers in %+v", servers, members)
		}
		return nil
	})
}

func TestClusterJobSubmittedToFollowerLands(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)
	follower := c.Followers(leader)[0]

	res := c.CLI(follower, "job", "run", "-d", jobFile(t, "via-follower", 1, 100, 64))
	if res.Code != 0 {
		t.Fatalf("job run -d via follower %s: exit %d: %s", follower.Name, res.Code, res.Stderr)
	}
	if !strings.Contains(res.Stdout, `Job "via-follower" registered`) {
		t.Fatalf("job run -d printed:\n%s", res.Stdout)
	}
	// Acknowledged means committed: every server has it (followers after
	// they apply the entry).
	for _, s := range c.Servers {
		Eventually(t, 5*time.Second, "job on "+s.Name, func() error { return hasJobs(s, []string{"via-follower"}) })
	}
	res = c.CLI(follower, "job", "status", "via-follower", "--format", "json")
	if res.Code != 0 {
		t.Fatalf("job status: exit %d: %s", res.Code, res.Stderr)
	}
	var st struct {
		Job *api.Job `json:"job"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil || st.Job == nil || st.Job.Name != "via-follower" {
		t.Fatalf("job status --format json: %v\n%s", err, res.Stdout)
	}

	// Without -d, job run through a follower waits for the placement (the
	// evaluation is read from the follower's own state) and prints it.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet, err := simnode.Start(ctx, simnode.Config{Client: leader.Client(10 * time.Second), Count: 2,
		Resources: func(int) api.NodeResources { return api.NodeResources{CPU: 4000, MemoryMB: 8192} }})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()
	res = c.CLI(follower, "job", "run", jobFile(t, "placed-via-follower", 2, 500, 256))
	if res.Code != 0 || !strings.Contains(res.Stdout, "Placed 2 allocation(s)") {
		t.Fatalf("job run via follower: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}

	// A bad spec is refused at the edge, through the follower too, and
	// names the field.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: bad\ngroups:\n- name: g\n  count: 1\n  tasks:\n  - name: t\n    image: busybox\n    resources: {cpu: -5, memory: 64}\n"), 0o644)
	res = c.CLI(follower, "job", "run", "-d", bad)
	if res.Code == 0 || !strings.Contains(res.Stderr, "cpu") {
		t.Fatalf("negative cpu accepted or unexplained: exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
}

func TestClusterLeaderKillKeepsAcknowledgedJobs(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)

	// Acknowledged jobs, half through the leader, half through a follower.
	var acked []string
	follower := c.Followers(leader)[0]
	for i := 0; i < 10; i++ {
		s := leader
		if i%2 == 1 {
			s = follower
		}
		name := fmt.Sprintf("before-kill-%d", i)
		if _, err := s.Client(10 * time.Second).Jobs().Register(testJob(name, 1)); err != nil {
			t.Fatalf("register %s via %s: %v", name, s.Name, err)
		}
		acked = append(acked, name)
	}

	c.Kill(leader)
	start := time.Now()
	newLeader := c.WaitLeader(15 * time.Second)
	t.Logf("new leader %s elected %s after SIGKILL of %s", newLeader.Name, time.Since(start).Round(time.Millisecond), leader.Name)
	if newLeader == leader {
		t.Fatal("the killed server is still the leader")
	}
	// Reads are served from each server's own state, which may trail the
	// commit by a moment; a lost job never shows up.
	for _, s := range c.Live() {
		Eventually(t, 5*time.Second, "acknowledged jobs on "+s.Name, func() error { return hasJobs(s, acked) })
	}
	// The survivors still commit.
	if _, err := newLeader.Client(10 * time.Second).Jobs().Register(testJob("after-kill", 1)); err != nil {
		t.Fatalf("register after failover: %v", err)
	}
	acked = append(acked, "after-kill")

	// The killed server comes back from its disk and catches up.
	c.Start(leader)
	Eventually(t, 15*time.Second, "restarted server catches up", func() error { return hasJobs(leader, acked) })
	c.WaitLeader(10 * time.Second)
}

func TestClusterFullRestartKeepsState(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)
	cl := leader.Client(10 * time.Second)

	var acked []string
	for i := 0; i < 5; i++ {
		name := fmt.Sprintf("durable-%d", i)
		if _, err := cl.Jobs().Register(testJob(name, 2)); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, name)
	}
	// Stop one job so that state is more than inserts.
	if _, err := cl.Jobs().Deregister("durable-4", false); err != nil {
		t.Fatal(err)
	}
	before := map[string]*api.Job{}
	for _, id := range acked {
		Eventually(t, 5*time.Second, "job "+id+" readable", func() error {
			j, _, err := cl.Jobs().Info(id, nil)
			if err == nil {
				before[id] = j
			}
			return err
		})
	}

	// Half the servers stop cleanly, the rest are killed.
	c.Stop(c.Servers[0])
	c.Kill(c.Servers[1])
	c.Kill(c.Servers[2])
	for _, s := range c.Servers {
		c.Start(s)
	}
	newLeader := c.WaitLeader(30 * time.Second)
	for _, s := range c.Servers {
		Eventually(t, 10*time.Second, "state on "+s.Name, func() error { return hasJobs(s, acked) })
	}
	for _, id := range acked {
		j, _, err := newLeader.Client(5*time.Second).Jobs().Info(id, nil)
		if err != nil {
			t.Fatalf("job %s after restart: %v", id, err)
		}
		b := before[id]
		if j.Stop != b.Stop || j.Version != b.Version || j.CreateIndex != b.CreateIndex || j.JobModifyIndex != b.JobModifyIndex {
			t.Errorf("job %s changed across restart: before stop=%v version=%d create=%d jobmodify=%d, after stop=%v version=%d create=%d jobmodify=%d",
				id, b.Stop, b.Version, b.CreateIndex, b.JobModifyIndex, j.Stop, j.Version, j.CreateIndex, j.JobModifyIndex)
		}
	}
	if _, err := newLeader.Client(10 * time.Second).Jobs().Register(testJob("after-restart", 1)); err != nil {
		t.Fatalf("register after full restart: %v", err)
	}
}

func TestClusterMinorityCannotCommit(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)
	followers := c.Followers(leader)
	if _, err := leader.Client(10 * time.Second).Jobs().Register(testJob("before-partition", 1)); err != nil {
		t.Fatal(err)
	}

	// Freeze both followers: the old leader is alone, a minority of one.
	for _, f := range followers {
		c.Pause(f)
	}
	_, err := leader.Client(8 * time.Second).Jobs().Register(testJob("in-minority", 1))
	if err == nil {
		t.Fatal("a lone server of three acknowledged a write: the minority committed")
	}
	t.Logf("write to the minority refused as it should be: %v", err)
	// It must step down: nobody leads a minority for long.
	Eventually(t, 10*time.Second, "minority server gives up leadership", func() error {
		l, err := leader.Client(2 * time.Second).Status().Leader()
		if err != nil {
			return nil // refusing to answer is as good
		}
		if l == leader.RaftAddr() {
			return fmt.Errorf("%s still claims to lead", leader.Name)
		}
		return nil
	})

	// Heal: the cluster elects a leader, commits again, and every server,
	// the old minority included, has the writes.
	for _, f := range followers {
		c.Resume(f)
	}
	newLeader := c.WaitLeader(20 * time.Second)
	if _, err := newLeader.Client(10 * time.Second).Jobs().Register(testJob("after-heal", 1)); err != nil {
		t.Fatalf("register after healing: %v", err)
	}
	for _, s := range c.Servers {
		Eventually(t, 10*time.Second, "caught up "+s.Name, func() error {
			return hasJobs(s, []string{"before-partition", "after-heal"})
		})
	}
}

func raftPeers(t *testing.T, c *Cluster, s *Server) []api.RaftPeer {
	t.Helper()
	res := c.CLI(s, "operator", "raft", "list-peers", "--format", "json")
	if res.Code != 0 {
		t.Fatalf("list-peers via %s: exit %d: %s", s.Name, res.Code, res.Stderr)
	}
	var peers []api.RaftPeer
	if err := json.Unmarshal([]byte(res.Stdout), &peers); err != nil {
		t.Fatalf("list-peers --format json: %v\n%s", err, res.Stdout)
	}
	return peers
}

func TestClusterReplaceDeadServer(t *testing.T) {
	c := StartCluster(t, 3, ClusterOptions{})
	leader := c.WaitLeader(10 * time.Second)
	var acked []string
	for i := 0; i < 3; i++ {
		name := fmt.Sprintf("kept-%d", i)
		if _, err := leader.Client(10 * time.Second).Jobs().Register(testJob(name, 1)); err != nil {
			t.Fatal(err)
		}
		acked = append(acked, name)
	}

	// A follower dies for good; the operator removes it from Raft.
	dead := c.Followers(leader)[0]
	c.Kill(dead)
	// Gossip notices first (an operator removes a server it knows is dead).
	Eventually(t, 20*time.Second, "gossip marks the killed server failed", func() error {
		members, err := leader.Client(5 * time.Second).Members()
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.Name == dead.Name && m.Status == "alive" {
				return fmt.Errorf("%s still alive in gossip", dead.Name)
			}
		}
		return nil
	})
	res := c.CLI(c.Followers(leader)[0], "operator", "raft", "remove-peer", dead.Name)
	if res.Code != 0 {
		t.Fatalf("remove-peer %s: exit %d: %s", dead.Name, res.Code, res.Stderr)
	}
	if peers := raftPeers(t, c, leader); len(peers) != 2 {
		t.Fatalf("after remove-peer, raft has %d peers: %+v", len(peers), peers)
	}
	res = c.CLI(leader, "operator", "raft", "remove-peer", "no-such-server")
	if res.Code == 0 {
		t.Fatalf("remove-peer of an unknown ID succeeded: %s", res.Stdout)
	}

	// A fresh server joins, becomes a voter and receives the whole state.
	fresh := c.AddServer()
	Eventually(t, 20*time.Second, "fresh server is a voter", func() error {
		for _, p := range raftPeers(t, c, leader) {
			if p.ID == fresh.Name && p.Voter {
				return nil
			}
		}
		return fmt.Errorf("%s not among the voters", fresh.Name)
	})
	Eventually(t, 15*time.Second, "fresh server has the state", func() error { return hasJobs(fresh, acked) })

	// The new configuration survives the loss of the old leader.
	c.Kill(leader)
	newLeader := c.WaitLeader(15 * time.Second)
	if _, err := newLeader.Client(10 * time.Second).Jobs().Register(testJob("after-replace", 1)); err != nil {
		t.Fatalf("register with the replaced server in the quorum: %v", err)
	}
}

func TestServerConfigFileAndSignal(t *testing.T) {
	bin := BerthBin(t)
	ports := freePorts(t, 3)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "server.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("data_dir: %s\nbind: 127.0.0.1\nhttp-port: %d\nraft-port: %d\ngossip-port: %d\nnode-name: from-file\nbootstrap-expect: 1\n",
		filepath.Join(dir, "data"), ports[0], ports[1], ports[2])), 0o644)

	// An unknown key is refused by name.
	badCfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badCfg, []byte("http_prot: 1\n"), 0o644)
	out, err := exec.Command(bin, "server", "--config", badCfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown key "http_prot"`) {
		t.Fatalf("bad config: %v\n%s", err, out)
	}

	var stdout strings.Builder
	cmd := exec.Command(bin, "server", "--config", cfg, "--log-level", "warn")
	cmd.Stdout = &stdout
	cmd.Stderr = &stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-done
		}
	}()
	cl, _ := api.NewClient(fmt.Sprintf("127.0.0.1:%d", ports[0]))
	Eventually(t, 15*time.Second, "server from config file leads", func() error {
		l, err := cl.Status().Leader()
		if err != nil {
			return err
		}
		if l != fmt.Sprintf("127.0.0.1:%d", ports[1]) {
			return fmt.Errorf("leader %q", l)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "data", "server", "raft")); err != nil {
		t.Errorf("data_dir from the config file not used: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server exited with %v after SIGTERM:\n%s", err, stdout.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("server still running 15s after SIGTERM:\n%s", stdout.String())
	}
	for _, want := range []string{`berth server "from-file"`, fmt.Sprintf("HTTP 127.0.0.1:%d", ports[0]), "stopped"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("server output lacks %q:\n%s", want, stdout.String())
		}
	}
}
