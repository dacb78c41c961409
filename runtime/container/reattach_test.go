//go:build linux

package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/container/nsenter"
	"github.com/berth-dev/berth/runtime/reexec"
)

const testManagerName = "berth-test-manager"

func init() {
	reexec.Register(testManagerName, testManagerMain)
}

// testManagerMain is a manager in its own process: it starts the container
// described by argv (root, layer, id, ctl dir), says "started" and waits to
// be killed.
func testManagerMain() {
	root, layer, id, ctl := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	cg, err := cgroups.New()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	m, err := NewManager(root, cg)
	if err == nil {
		_, err = m.Create(&Spec{
			ID: id, Layers: []string{layer},
			Args:   []string{"sh", "-c", "echo up; while [ ! -e /ctl/go ]; do sleep 0.05; done; exit 7"},
			Mounts: []Mount{{Source: ctl, Destination: "/ctl", Type: "bind"}},
		})
	}
	if err == nil {
		err = m.Start(id)
	}
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("started")
	select {}
}

func TestReattachAfterManagerKilled(t *testing.T) {
	m := newManager(t)
	layer := busyboxLayer(t)
	ctl := t.TempDir()
	id := testID(t)
	cmd := reexec.Command(testManagerName, m.root, layer, id, ctl)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "started" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("manager said %q, stderr %q", line, stderr.String())
	}
	t.Cleanup(func() { m.Remove(id, true) })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	// A new manager (this process) finds it running and still waits for it.
	c, err := m.Get(id)
	if err != nil || c.State.Status != StatusRunning {
		t.Fatalf("after kill -9 of its manager: %+v %v, want running", c, err)
	}
	if err := syscall.Kill(c.State.ShimPid, 0); err != nil {
		t.Fatalf("shim %d died with its manager: %v", c.State.ShimPid, err)
	}
	waitLog(t, m, id, "up")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = m.Wait(ctx, id)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait on a running container: %v, want a deadline", err)
	}
	if err := os.WriteFile(filepath.Join(ctl, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ex, err := m.Wait(ctx, id)
	if err != nil || ex.Code != 7 {
		t.Fatalf("wait after re-attach: %+v %v, want exit 7", ex, err)
	}
	if err := m.Remove(id, false); err != nil {
		t.Fatal(err)
	}
}

func TestExec(t *testing.T) {
	if !nsenter.Available {
		t.Skip("exec needs cgo (package nsenter)")
	}
	m := newManager(t)
	s := testSpec(t, "echo ready; exec sleep 100")
	s.Hostname = "exechost"
	s.Env = []string{"A=container"}
	s.Cwd = "/tmp"
	s.Resources = cgroups.Resources{PidsLimit: 30}
	start(t, m, s)
	waitLog(t, m, s.ID, "ready")
	ctx := context.Background()

	var out, errOut bytes.Buffer
	code, err := m.Exec(ctx, s.ID, &Process{Args: []string{"sh", "-c",
		`hostname; echo $$; tr '\0' ' ' </proc/1/cmdline; echo; grep CapEff /proc/self/status; echo $A $B; pwd; grep pids /proc/self/cgroup; ls /proc/self/fd | tr '\n' ' '`},
		Env: []string{"B=exec"}}, nil, &out, &errOut)
	if err != nil || code != 0 {
		t.Fatalf("exec: %d %v, stderr %q", code, err, errOut.String())
	}
	l := lines(out.String())
	want := []string{"exechost", "", "sleep 100", "CapEff:\t00000000a80425fb", "container exec", "/tmp", "/berth/" + s.ID}
	for i, w := range want {
		switch {
		case i == 1:
			if l[i] == "1" || len(l[i]) > 3 {
				t.Errorf("exec'd shell has pid %q, want a small pid other than 1 in the container's namespace", l[i])
			}
		case !strings.Contains(l[i], w):
			t.Errorf("line %d: %q, want %q", i, l[i], w)
		}
	}
	if got := strings.TrimSpace(l[len(l)-1]); got != "0 1 2 3" {
		t.Errorf("descriptors in exec %q, want 0 1 2 3", got)
	}

	// berth's own ignored signals and mask must not reach the command.
	out.Reset()
	if _, err := m.Exec(ctx, s.ID, &Process{Args: []string{"grep", "-E", "SigIgn|SigBlk", "/proc/self/status"}}, nil, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n" {
		t.Errorf("exec'd process starts with %q", got)
	}

	code, err = m.Exec(ctx, s.ID, &Process{Args: []string{"sh", "-c", "id -u; cat; exit 5"}, User: "app"}, strings.NewReader("from stdin\n"), &out, &errOut)
	if err != nil || code != 5 {
		t.Errorf("exec exit: %d %v, want 5", code, err)
	}
	if !strings.HasSuffix(out.String(), "1000\nfrom stdin\n") {
		t.Errorf("exec as app with stdin: %q", out.String())
	}

	_, err = m.Exec(ctx, s.ID, &Process{Args: []string{"nosuchcmd"}}, nil, &out, &errOut)
	if !errors.Is(err, ErrExecutableNotFound) {
		t.Errorf("exec of a missing command: %v", err)
	}

	ctx2, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err = m.Exec(ctx2, s.ID, &Process{Args: []string{"sleep", "30"}}, nil, &out, &errOut)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(begin) > 5*time.Second {
		t.Errorf("cancelled exec: %v after %v", err, time.Since(begin))
	}
	if err := m.Stop(s.ID, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Exec(ctx, s.ID, &Process{Args: []string{"true"}}, nil, &out, &errOut); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec in a stopped container: %v", err)
	}
}

func TestShimMemory(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "echo ready; sleep 100")
	start(t, m, s)
	waitLog(t, m, s.ID, "ready")
	c, _ := m.Get(s.ID)
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", c.State.ShimPid))
	if err != nil {
		t.Fatal(err)
	}
	var rss, pss string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Rss:" {
			rss = f[1]
		}
		if len(f) >= 2 && f[0] == "Pss:" {
			pss = f[1]
		}
	}
	t.Logf("shim %d: Rss %s kB, Pss %s kB", c.State.ShimPid, rss, pss)
	if !nsenter.Available {
		return // the Go shim of builds without cgo is larger
	}
	if kb, err := strconv.Atoi(pss); err != nil || kb > 5<<10 {
		t.Errorf("shim Pss %s kB, want at most 5 MiB", pss)
	}
	if kb, err := strconv.Atoi(rss); err != nil || kb > 5<<10 {
		t.Errorf("shim Rss %s kB, want at most 5 MiB", rss)
	}
}
