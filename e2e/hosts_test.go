//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
)

// twoHosts starts a server and an agent on h1 and an agent on h2, each in
// its own network namespace, imports busybox on both nodes, and returns the
// server's address.
func twoHosts(t *testing.T) (*testNet, string, map[string]*hostProc) {
	t.Helper()
	tn := newTestNet(t, 2)
	h1, h2 := tn.Hosts[0], tn.Hosts[1]
	addr := "http://" + h1.IP + ":9470"
	procs := map[string]*hostProc{}
	procs["server"] = tn.Start(h1, "server", "server", "--bind", h1.IP, "--data-dir", filepath.Join(h1.Dir, "server"),
		"--bootstrap-expect", "1", "--node-name", "s1", "--heartbeat-ttl", "2s", "--insecure")
	procs["h1"] = tn.Start(h1, "agent", "agent", "--bind", h1.IP, "--data-dir", filepath.Join(h1.Dir, "agent"),
		"--node-name", "h1", "--gossip-port", "9474", "--join", h1.IP+":9472", "--insecure")
	procs["h2"] = tn.Start(h2, "agent", "agent", "--bind", h2.IP, "--data-dir", filepath.Join(h2.Dir, "agent"),
		"--node-name", "h2", "--join", h1.IP+":9472", "--insecure")
	Eventually(t, 30*time.Second, "two ready nodes", func() error {
		c, err := api.NewClient(addr)
		if err != nil {
			return err
		}
		nodes, _, err := c.Nodes().List(nil)
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range nodes {
			if n.Status == api.NodeStatusReady {
				ready++
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d of %d nodes ready", ready, len(nodes))
		}
		return nil
	})
	tar := testutil.BusyboxTar(t)
	for _, node := range []string{"h1", "h2"} {
		if r := tn.CLI(addr, "image", "import", "--node", node, tar, "busybox:latest"); r.Code != 0 {
			t.Fatalf("image import on %s: exit %d: %s%s", node, r.Code, r.Stdout, r.Stderr)
		}
	}
	return tn, addr, procs
}

// runningOn waits until job has a running allocation and returns its node
// name.
func runningOn(t *testing.T, addr, job string, timeout time.Duration, exclude string) string {
	t.Helper()
	var node string
	Eventually(t, timeout, "job "+job+" running", func() error {
		c, err := api.NewClient(addr)
		if err != nil {
			return err
		}
		allocs, _, err := c.Jobs().Allocations(job, nil)
		if err != nil {
			return err
		}
		for _, a := range allocs {
			if a.ClientStatus == api.AllocClientRunning && a.DesiredStatus == api.AllocDesiredRun && a.NodeName != exclude {
				node = a.NodeName
				return nil
			}
		}
		return fmt.Errorf("no running allocation among %d", len(allocs))
	})
	return node
}

func TestTwoHostsConstraintPlacesOnNamedNode(t *testing.T) {
	tn, addr, _ := twoHosts(t)
	for _, want := range []string{"h2", "h1"} {
		name := "pinned-" + want
		r := tn.CLI(addr, "run", "-d", "--name", name, "--constraint", "node.name="+want, "busybox", "sleep", "1000")
		if r.Code != 0 {
			t.Fatalf("berth run: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		if got := runningOn(t, addr, name, 30*time.Second, ""); got != want {
			t.Fatalf("--constraint node.name=%s placed the container on %s", want, got)
		}
	}
	ps := tn.CLI(addr, "ps")
	if ps.Code != 0 {
		t.Fatalf("berth ps: exit %d: %s", ps.Code, ps.Stderr)
	}
	for _, line := range strings.Split(ps.Stdout, "\n") {
		for _, want := range []string{"h1", "h2"} {
			if strings.Contains(line, "pinned-"+want) && !strings.Contains(line, want) {
				t.Errorf("ps line for pinned-%s lacks its node: %q", want, line)
			}
		}
	}
	// A constraint no node meets is refused with the reason.
	r := tn.CLI(addr, "run", "-d", "--name", "nowhere", "--constraint", "node.name=h9", "busybox", "true")
	if r.Code == 0 {
		t.Fatalf("berth run with an impossible constraint succeeded: %s", r.Stdout)
	}
}

func TestTwoHostsNodeLossMovesServiceContainer(t *testing.T) {
	tn, addr, procs := twoHosts(t)
	// Keep h1 out of placement so the service lands on h2, then let it back.
	if r := tn.CLI(addr, "node", "eligibility", "h1", "--disable"); r.Code != 0 {
		t.Fatalf("node eligibility: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if r := tn.CLI(addr, "run", "-d", "--name", "svc", "--restart", "always", "busybox", "sleep", "1000"); r.Code != 0 {
		t.Fatalf("berth run: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	if got := runningOn(t, addr, "svc", 30*time.Second, ""); got != "h2" {
		t.Fatalf("service placed on %s, want h2 (h1 is ineligible)", got)
	}
	if r := tn.CLI(addr, "node", "eligibility", "h1", "--enable"); r.Code != 0 {
		t.Fatalf("node eligibility: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}

	start := time.Now()
	tn.Kill(procs["h2"])
	if got := runningOn(t, addr, "svc", 60*time.Second, "h2"); got != "h1" {
		t.Fatalf("service moved to %s, want h1", got)
	}
	t.Logf("node loss to replacement running: %s", time.Since(start).Round(10*time.Millisecond))
}
