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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/logs"
	"github.com/berth-dev/berth/runtime/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Run() {
		return
	}
	code := m.Run()
	if layerDir != "" {
		os.RemoveAll(layerDir)
	}
	if helperPath != "" {
		os.RemoveAll(filepath.Dir(helperPath))
	}
	os.Exit(code)
}

var (
	layerOnce sync.Once
	layerDir  string
)

// busyboxLayer returns a busybox root laid once per test binary, used as
// the single read-only layer of test containers.
func busyboxLayer(t testing.TB) string {
	t.Helper()
	testutil.RequireBusybox(t)
	layerOnce.Do(func() {
		d, err := os.MkdirTemp("", "berth-layer-")
		if err != nil {
			t.Fatal(err)
		}
		testutil.BusyboxRootfs(t, d)
		layerDir = d
	})
	if layerDir == "" {
		t.Fatal("busybox layer could not be built")
	}
	return layerDir
}

// newManager returns a manager over a fresh directory with the host's
// cgroups, for root tests.
func newManager(t testing.TB) *Manager {
	t.Helper()
	testutil.RequireRoot(t)
	cg, err := cgroups.New()
	if err != nil {
		t.Fatalf("cgroups: %v", err)
	}
	m, err := NewManager(filepath.Join(t.TempDir(), "containers"), cg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var idSeq struct {
	sync.Mutex
	n int
}

func testID(t testing.TB) string {
	idSeq.Lock()
	defer idSeq.Unlock()
	idSeq.n++
	return fmt.Sprintf("t%d-%d", os.Getpid(), idSeq.n)
}

// testSpec is a busybox container running sh -c script.
func testSpec(t testing.TB, script string) *Spec {
	return &Spec{ID: testID(t), Layers: []string{busyboxLayer(t)}, Args: []string{"sh", "-c", script}}
}

// result is what a user sees of a finished container.
type result struct {
	exit           *ExitStatus
	stdout, stderr string
}

// run creates, starts and waits for spec, and removes it after the test.
func run(t *testing.T, m *Manager, spec *Spec) result {
	t.Helper()
	start(t, m, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ex, err := m.Wait(ctx, spec.ID)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	out, errOut := readLogs(t, m, spec.ID)
	return result{exit: ex, stdout: out, stderr: errOut}
}

func start(t *testing.T, m *Manager, spec *Spec) {
	t.Helper()
	if _, err := m.Create(spec); err != nil {
		t.Fatalf("create: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Remove(spec.ID, true); err != nil && !errors.Is(err, ErrNotFound) {
			t.Errorf("remove %s: %v", spec.ID, err)
		}
	})
	if err := m.Start(spec.ID); err != nil {
		t.Fatalf("start: %v", err)
	}
}

func readLogs(t *testing.T, m *Manager, id string) (stdout, stderr string) {
	t.Helper()
	r, err := m.Logs(id, LogOptions{})
	if err != nil {
		t.Fatalf("logs: %v", err)
	}
	defer r.Close()
	var o, e strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		ent, err := logs.Decode(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		switch ent.Stream {
		case "stdout":
			o.WriteString(ent.Log)
		case "stderr":
			e.WriteString(ent.Log)
		default:
			t.Errorf("log line with stream %q", ent.Stream)
		}
	}
	return o.String(), e.String()
}

// runOK runs script and fails the test unless it exits 0; it returns stdout.
func runOK(t *testing.T, m *Manager, spec *Spec) string {
	t.Helper()
	r := run(t, m, spec)
	if r.exit.Code != 0 {
		t.Fatalf("exit %d (%s), stdout %q, stderr %q", r.exit.Code, r.exit.Error, r.stdout, r.stderr)
	}
	return r.stdout
}

func lines(s string) []string {
	return strings.Split(strings.TrimSpace(s), "\n")
}

var _ = bytes.Contains
