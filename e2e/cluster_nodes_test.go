//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/jobspec"
	"github.com/berth-dev/berth/internal/simnode"
)

// smallNodes gives every simulated node 4 cores and 8 GiB.
func smallNodes(int) api.NodeResources { return api.NodeResources{CPU: 4000, MemoryMB: 8192} }

// liveAllocs returns a job's allocations that should be running, by ID.
func liveAllocs(cl *api.Client, job string) (map[string]*api.Allocation, error) {
	allocs, _, err := cl.Jobs().Allocations(job, nil)
	if err != nil {
		return nil, err
	}
	out := map[string]*api.Allocation{}
	for _, a := range allocs {
		if a.DesiredStatus == api.AllocDesiredRun && !a.Terminal() {
			out[a.ID] = a
		}
	}
	return out, nil
}

func TestNodeLossReplacesServiceAllocations(t *testing.T) {
	c := StartCluster(t, 1, ClusterOptions{HeartbeatTTL: 2 * time.Second})
	s := c.Servers[0]
	cl := s.Client(40 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet, err := simnode.Start(ctx, simnode.Config{Client: cl, Count: 4, Ack: true, Resources: smallNodes})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()

	// Each copy needs 3 of 4 cores: one per node, so copies spread.
	job := testJob("survivor", 2)
	job.Groups[0].Tasks[0].Resources = api.Resources{CPU: 3000, MemoryMB: 512}
	if _, err := cl.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	var running map[string]*api.Allocation
	Eventually(t, 15*time.Second, "2 allocations running", func() error {
		var err error
		running, err = liveAllocs(cl, "survivor")
		if err != nil {
			return err
		}
		n := 0
		for _, a := range running {
			if a.ClientStatus == api.AllocClientRunning {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d of %d allocations running", n, len(running))
		}
		return nil
	})

	var victim *api.Allocation
	for _, a := range running {
		victim = a
		break
	}
	if !fleet.Silence(victim.NodeID) {
		t.Fatalf("node %s of allocation %s is not in the fleet", victim.NodeID, victim.ID)
	}
	silenced := time.Now()
	t.Logf("silenced node %s, which runs allocation %s", victim.NodeName, victim.ID)

	Eventually(t, 20*time.Second, "replacement placed on another node and running", func() error {
		live, err := liveAllocs(cl, "survivor")
		if err != nil {
			return err
		}
		n := 0
		for _, a := range live {
			if a.NodeID == victim.NodeID {
				return fmt.Errorf("allocation %s still wanted on the silent node", a.ID)
			}
			if a.ClientStatus == api.AllocClientRunning {
				n++
			}
		}
		if n != 2 {
			return fmt.Errorf("%d allocations running elsewhere, want 2", n)
		}
		return nil
	})
	t.Logf("replaced %s after the node went silent", time.Since(silenced).Round(100*time.Millisecond))

	node, _, err := cl.Nodes().Info(victim.NodeID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if node.Status != api.NodeStatusDown {
		t.Errorf("silent node status = %q, want down", node.Status)
	}
	old, _, err := cl.Allocations().Info(victim.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !old.Terminal() && old.DesiredStatus == api.AllocDesiredRun {
		t.Errorf("allocation on the lost node is still desired running: %+v", old)
	}
}

func TestCLIAgainstSimulatedNodes(t *testing.T) {
	c := StartCluster(t, 1, ClusterOptions{})
	s := c.Servers[0]
	cl := s.Client(40 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet, err := simnode.Start(ctx, simnode.Config{Client: cl, Count: 3, Ack: true, Resources: smallNodes, NamePrefix: "cli-node-"})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()

	// node ls: a table with every node, and JSON that parses.
	res := c.CLI(s, "node", "ls")
	if res.Code != 0 {
		t.Fatalf("node ls: exit %d: %s", res.Code, res.Stderr)
	}
	for _, want := range []string{"NAME", "STATUS", "cli-node-0", "cli-node-1", "cli-node-2", "ready"} {
		if !strings.Contains(res.Stdout, want) {
			t.Errorf("node ls lacks %q:\n%s", want, res.Stdout)
		}
	}
	res = c.CLI(s, "node", "ls", "--format", "json")
	var nodes []*api.Node
	if err := json.Unmarshal([]byte(res.Stdout), &nodes); err != nil || len(nodes) != 3 {
		t.Fatalf("node ls --format json: %d nodes, %v\n%s", len(nodes), err, res.Stdout)
	}

	// job run waits for placement and prints the allocations.
	file := jobFile(t, "cli-web", 2, 500, 256)
	res = c.CLI(s, "job", "run", file)
	if res.Code != 0 {
		t.Fatalf("job run: exit %d: %s%s", res.Code, res.Stdout, res.Stderr)
	}
	if !strings.Contains(res.Stdout, "Placed 2 allocation(s)") || strings.Count(res.Stdout, "cli-web.app[") != 2 {
		t.Fatalf("job run output:\n%s", res.Stdout)
	}

	// job plan of a job that cannot fit: non-zero exit, reason given.
	res = c.CLI(s, "job", "plan", jobFile(t, "too-big", 1, 500, 64*1024))
	if res.Code == 0 || !strings.Contains(res.Stderr, "too-big") {
		t.Fatalf("plan of an unplaceable job: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	// job run of it fails with the scheduler's reason.
	res = c.CLI(s, "job", "run", jobFile(t, "too-big", 1, 500, 64*1024))
	if res.Code == 0 || !strings.Contains(res.Stderr, "placement failed") {
		t.Fatalf("run of an unplaceable job: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	if strings.Count(strings.TrimSpace(res.Stderr), "\n") != 0 || !strings.HasPrefix(res.Stderr, "berth: ") {
		t.Errorf("error is not one line starting with berth: %q", res.Stderr)
	}

	// job status: table and JSON, once the agents report running.
	Eventually(t, 10*time.Second, "job status shows running allocations", func() error {
		res := c.CLI(s, "job", "status", "cli-web")
		if res.Code != 0 {
			return fmt.Errorf("exit %d: %s", res.Code, res.Stderr)
		}
		if strings.Count(res.Stdout, "running") < 2 || !strings.Contains(res.Stdout, "cli-node-") {
			return fmt.Errorf("output:\n%s", res.Stdout)
		}
		return nil
	})
	res = c.CLI(s, "job", "status", "cli-web", "--format", "json")
	var st struct {
		Job         *api.Job          `json:"job"`
		Allocations []*api.Allocation `json:"allocations"`
	}
	if err := json.Unmarshal([]byte(res.Stdout), &st); err != nil || st.Job == nil || len(st.Allocations) != 2 {
		t.Fatalf("job status --format json: %v\n%s", err, res.Stdout)
	}
	res = c.CLI(s, "job", "ls", "--format", "json")
	var jobs []*api.Job
	if err := json.Unmarshal([]byte(res.Stdout), &jobs); err != nil || len(jobs) < 1 {
		t.Fatalf("job ls --format json: %v\n%s", err, res.Stdout)
	}

	// node inspect by name, eligibility, drain.
	nodeName := st.Allocations[0].NodeName
	if nodeName == "" {
		n, _, _ := cl.Nodes().Info(st.Allocations[0].NodeID, nil)
		nodeName = n.Name
	}
	res = c.CLI(s, "node", "inspect", nodeName)
	if res.Code != 0 || !strings.Contains(res.Stdout, "cli-web.app[") {
		t.Fatalf("node inspect %s: exit %d\n%s%s", nodeName, res.Code, res.Stdout, res.Stderr)
	}
	res = c.CLI(s, "node", "eligibility", nodeName, "--disable")
	if res.Code != 0 || !strings.Contains(res.Stdout, "ineligible") {
		t.Fatalf("node eligibility: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	Eventually(t, 5*time.Second, "node ineligible", func() error {
		n, _, err := cl.Nodes().Info(nodeName, nil)
		if err != nil {
			return err
		}
		if n.Eligibility != api.NodeIneligible {
			return fmt.Errorf("eligibility %q", n.Eligibility)
		}
		return nil
	})
	res = c.CLI(s, "node", "drain", nodeName)
	if res.Code != 0 {
		t.Fatalf("node drain: exit %d\n%s%s", res.Code, res.Stdout, res.Stderr)
	}
	Eventually(t, 15*time.Second, "drained node's allocation moved", func() error {
		live, err := liveAllocs(cl, "cli-web")
		if err != nil {
			return err
		}
		running := 0
		for _, a := range live {
			if a.NodeName == nodeName {
				return fmt.Errorf("allocation %s still on drained node %s", a.ID, nodeName)
			}
			if a.ClientStatus == api.AllocClientRunning {
				running++
			}
		}
		if running != 2 {
			return fmt.Errorf("%d running", running)
		}
		return nil
	})

	// job stop: everything stops.
	res = c.CLI(s, "job", "stop", "cli-web")
	if res.Code != 0 {
		t.Fatalf("job stop: exit %d\n%s", res.Code, res.Stderr)
	}
	Eventually(t, 10*time.Second, "allocations stopped", func() error {
		live, err := liveAllocs(cl, "cli-web")
		if err != nil {
			return err
		}
		if len(live) != 0 {
			return fmt.Errorf("%d allocations still wanted", len(live))
		}
		return nil
	})

	// Errors: unknown job, unknown field in a spec.
	res = c.CLI(s, "job", "status", "no-such-job")
	if res.Code == 0 || !strings.Contains(res.Stderr, "no-such-job") {
		t.Fatalf("status of a missing job: exit %d: %s", res.Code, res.Stderr)
	}
	bad := filepath.Join(t.TempDir(), "typo.yaml")
	os.WriteFile(bad, []byte("name: typo\ngroups:\n- name: g\n  cuont: 1\n"), 0o644)
	res = c.CLI(s, "job", "run", bad)
	if res.Code == 0 || !strings.Contains(res.Stderr, `unknown field "cuont" in groups[0]`) {
		t.Fatalf("typo in spec: exit %d: %s", res.Code, res.Stderr)
	}
}

func TestJobUpdateAndSystemJobs(t *testing.T) {
	c := StartCluster(t, 1, ClusterOptions{})
	s := c.Servers[0]
	cl := s.Client(40 * time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fleet, err := simnode.Start(ctx, simnode.Config{Client: cl, Count: 2, Ack: true, Resources: smallNodes, NamePrefix: "first-"})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Stop()

	// A changed task replaces the allocations: new ones run, old ones stop.
	file := jobFile(t, "upd", 2, 500, 256)
	if res := c.CLI(s, "job", "run", file); res.Code != 0 {
		t.Fatalf("job run: exit %d: %s", res.Code, res.Stderr)
	}
	first, err := liveAllocs(cl, "upd")
	if err != nil || len(first) != 2 {
		t.Fatalf("first version: %d allocations, %v", len(first), err)
	}
	job, err := jobspec.ParseFile(file)
	if err != nil {
		t.Fatal(err)
	}
	job.Groups[0].Tasks[0].Image = "busybox:1.36"
	if _, err := cl.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "allocations replaced by the new version", func() error {
		live, err := liveAllocs(cl, "upd")
		if err != nil {
			return err
		}
		if len(live) != 2 {
			return fmt.Errorf("%d live allocations", len(live))
		}
		for id, a := range live {
			if first[id] != nil {
				return fmt.Errorf("old allocation %s still wanted", id)
			}
			if a.Job == nil || a.Job.Groups[0].Tasks[0].Image != "busybox:1.36" {
				return fmt.Errorf("allocation %s does not run the new image", id)
			}
		}
		return nil
	})
	j, _, err := cl.Jobs().Info("upd", nil)
	if err != nil || j.Version < 1 {
		t.Fatalf("job version after update = %v, %v", j, err)
	}

	// A system job runs once per node, on nodes that join later too.
	sys := testJob("per-node", 0)
	sys.Type = api.JobTypeSystem
	sys.Groups[0].Tasks[0].Resources = api.Resources{CPU: 100, MemoryMB: 32}
	if _, err := cl.Jobs().Register(sys); err != nil {
		t.Fatal(err)
	}
	perNode := func(want int) func() error {
		return func() error {
			live, err := liveAllocs(cl, "per-node")
			if err != nil {
				return err
			}
			nodes := map[string]bool{}
			for _, a := range live {
				if nodes[a.NodeID] {
					return fmt.Errorf("two allocations on node %s", a.NodeName)
				}
				nodes[a.NodeID] = true
			}
			if len(nodes) != want {
				return fmt.Errorf("system job on %d nodes, want %d", len(nodes), want)
			}
			return nil
		}
	}
	Eventually(t, 10*time.Second, "system job on both nodes", perNode(2))
	late, err := simnode.Start(ctx, simnode.Config{Client: cl, Count: 1, Ack: true, Resources: smallNodes, NamePrefix: "late-"})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Stop()
	Eventually(t, 10*time.Second, "system job on the node that joined later", perNode(3))
}
