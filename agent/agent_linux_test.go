package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/reexec"
	"github.com/berth-dev/berth/scheduler"
)

func TestMain(m *testing.M) {
	if reexec.Run() {
		return
	}
	os.Exit(m.Run())
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// cluster is a real server (Raft on disk, HTTP on loopback) and a real
// agent with the real runtime, in this process.
type cluster struct {
	t       *testing.T
	dataDir string
	srv     *scheduler.Server
	agent   *Agent
	client  *api.Client
	cancel  context.CancelFunc
}

func startCluster(t *testing.T, dataDir string) *cluster {
	t.Helper()
	testutil.RequireRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	scfg := scheduler.Config{
		NodeName: "s1", DataDir: dataDir, BindAddr: "127.0.0.1", BootstrapExpect: 1,
		Logger: testLogger(t), HeartbeatTTL: 2 * time.Second,
	}
	srv, err := scheduler.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{NodeName: "n1", DataDir: dataDir, HTTPPort: -1, Servers: []string{srv.HTTPAddr()}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c, err := api.NewClient(srv.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	cl := &cluster{t: t, dataDir: dataDir, srv: srv, agent: a, client: c, cancel: cancel}
	t.Cleanup(cl.stop)
	cl.waitNode()
	return cl
}

func (c *cluster) stop() {
	if c.agent != nil {
		// Containers outlive agents by design; the test removes its own.
		if list, err := c.agent.Engine().List(); err == nil {
			for _, ci := range list {
				if err := c.agent.Engine().Remove(ci.ID, true); err != nil {
					c.t.Errorf("remove container %s: %v", ci.ID, err)
				}
			}
		}
		_ = c.agent.Shutdown()
		c.agent = nil
	}
	if c.srv != nil {
		_ = c.srv.Shutdown()
		c.srv = nil
	}
	c.cancel()
}

func (c *cluster) waitNode() {
	c.t.Helper()
	eventually(c.t, 15*time.Second, "node ready", func() bool {
		nodes, _, err := c.client.Nodes().List(nil)
		return err == nil && len(nodes) == 1 && nodes[0].Status == api.NodeStatusReady
	})
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (c *cluster) importBusybox() {
	c.t.Helper()
	f, err := os.Open(testutil.BusyboxTar(c.t))
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	if _, err := c.agent.Engine().Images.Import(context.Background(), f, "busybox:latest"); err != nil {
		c.t.Fatal(err)
	}
}

func oneTaskJob(name, typ string, cmd ...string) *api.Job {
	return &api.Job{
		Name: name, Type: typ,
		Groups: []*api.Group{{
			Name: name, Count: 1,
			Restart:    &api.RestartPolicy{Attempts: 0},
			Reschedule: &api.ReschedulePolicy{Attempts: 0},
			Tasks: []*api.Task{{
				Name: name, Image: "busybox", Command: cmd,
				Resources: api.Resources{CPU: 100, MemoryMB: 64},
			}},
		}},
	}
}

// alloc waits until the job has an allocation for which cond holds.
func (c *cluster) alloc(job string, what string, cond func(*api.Allocation) bool) *api.Allocation {
	c.t.Helper()
	var found *api.Allocation
	eventually(c.t, 20*time.Second, what, func() bool {
		allocs, _, err := c.client.Jobs().Allocations(job, nil)
		if err != nil {
			return false
		}
		for _, a := range allocs {
			if cond(a) {
				found = a
				return true
			}
		}
		return false
	})
	return found
}

func TestAgentRunsBatchJobAndReportsExit(t *testing.T) {
	c := startCluster(t, t.TempDir())
	c.importBusybox()
	if _, err := c.client.Jobs().Register(oneTaskJob("hello", api.JobTypeBatch, "sh", "-c", "echo Hi from container; exit 3")); err != nil {
		t.Fatal(err)
	}
	a := c.alloc("hello", "a failed allocation", func(a *api.Allocation) bool { return a.ClientStatus == api.AllocClientFailed })
	ts := a.TaskStates["hello"]
	if ts == nil || ts.ExitCode != 3 || ts.State != api.TaskStateDead || !ts.Failed {
		t.Fatalf("task state %+v, want dead, failed, exit code 3", ts)
	}
	if ts.ContainerID != ContainerID(a.ID, "hello") {
		t.Fatalf("container ID %s, want %s", ts.ContainerID, ContainerID(a.ID, "hello"))
	}

	// The logs reach the CLI through the server's proxy to the agent.
	ac, err := api.NewAgentClient(c.srv.HTTPAddr(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ac.Logs(context.Background(), ts.ContainerID, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	for {
		le, err := rc.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString(le.Log)
	}
	if out.String() != "Hi from container\n" {
		t.Fatalf("logs through the proxy: %q", out.String())
	}

	// With a reschedule policy of 0 the failed copy is not placed again.
	time.Sleep(500 * time.Millisecond)
	allocs, _, err := c.client.Jobs().Allocations("hello", nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("allocations %d (%v), want exactly 1", len(allocs), err)
	}

	// Purging the job (berth rm) removes its container from the node.
	if _, err := c.client.Jobs().Deregister("hello", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the purged job's container removed", func() bool {
		_, err := c.agent.Engine().Info(ts.ContainerID)
		return errors.Is(err, container.ErrNotFound)
	})
}

func (c *cluster) restartAgent(between func()) {
	c.t.Helper()
	if err := c.agent.Shutdown(); err != nil {
		c.t.Fatal(err)
	}
	c.agent = nil
	if between != nil {
		between()
	}
	a, err := New(Config{NodeName: "n1", DataDir: c.dataDir, HTTPPort: -1, Servers: []string{c.srv.HTTPAddr()}, Logger: testLogger(c.t)})
	if err != nil {
		c.t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		c.t.Fatal(err)
	}
	c.agent = a
}

func TestAgentRestartReattachesAndCollectsExit(t *testing.T) {
	c := startCluster(t, t.TempDir())
	c.importBusybox()
	if _, err := c.client.Jobs().Register(oneTaskJob("sleeper", api.JobTypeService, "sh", "-c", "echo started; sleep 1000")); err != nil {
		t.Fatal(err)
	}
	running := c.alloc("sleeper", "a running allocation", func(a *api.Allocation) bool { return a.ClientStatus == api.AllocClientRunning })
	ts := running.TaskStates["sleeper"]

	// Restart only the agent: the container keeps running under its shim
	// and the new agent re-attaches to it instead of starting another.
	c.restartAgent(nil)
	info, err := c.agent.Engine().Info(ts.ContainerID)
	if err != nil {
		t.Fatal(err)
	}
	if info.State != api.ContainerRunning || info.Pid != ts.Pid {
		t.Fatalf("after an agent restart: state %s pid %d, want running with pid %d", info.State, info.Pid, ts.Pid)
	}
	time.Sleep(300 * time.Millisecond)
	allocs, _, err := c.client.Jobs().Allocations("sleeper", nil)
	if err != nil || len(allocs) != 1 || allocs[0].ID != running.ID {
		t.Fatalf("allocations after agent restart: %d (%v), want the same single one", len(allocs), err)
	}
	if got := allocs[0].TaskStates["sleeper"]; got.Restarts != 0 || got.State != api.TaskStateRunning || got.Pid != ts.Pid {
		t.Fatalf("task after agent restart: %+v, want running, pid %d, no restarts", got, ts.Pid)
	}

	// A container that dies while the agent is down has its exit reported
	// by the next agent.
	c.restartAgent(func() {
		if err := syscall.Kill(ts.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	})
	done := c.alloc("sleeper", "the exit reported", func(a *api.Allocation) bool {
		s := a.TaskStates["sleeper"]
		return a.ID == running.ID && s != nil && s.State == api.TaskStateDead
	})
	if s := done.TaskStates["sleeper"]; s.ExitCode != 128+9 {
		t.Fatalf("exit code %d, want %d (SIGKILL)", s.ExitCode, 128+9)
	}
	if _, err := c.agent.Engine().Containers.Get(ts.ContainerID); err != nil {
		t.Fatalf("exited container was removed while its allocation still exists: %v", err)
	}
}
