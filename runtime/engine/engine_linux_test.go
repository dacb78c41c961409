package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/berth-dev/berth/runtime/reexec"
)

func TestMain(m *testing.M) {
	if reexec.Run() {
		return
	}
	os.Exit(m.Run())
}

func newEngine(t *testing.T) *Engine {
	t.Helper()
	testutil.RequireRoot(t)
	e, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(testutil.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := e.Images.Import(context.Background(), f, "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	return e
}

// runTask creates, starts and waits for a task's container and returns its
// exit code and output.
func runTask(t *testing.T, e *Engine, id string, task *api.Task) (int, string) {
	t.Helper()
	if _, err := e.Create(context.Background(), &TaskRequest{ID: id, Name: "t-" + id[:6], Task: task}); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(id); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := e.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := e.Containers.Logs(id, container.LogOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out strings.Builder
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		var le api.LogEntry
		if err := json.Unmarshal(sc.Bytes(), &le); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		out.WriteString(le.Log)
	}
	return st.Code, out.String()
}

func TestTaskUsesImageConfigAndVolumes(t *testing.T) {
	e := newEngine(t)
	id := strings.Repeat("a1", 32)
	code, out := runTask(t, e, id, &api.Task{
		Name: "main", Image: "busybox",
		Command:    []string{"sh", "-c", "echo $GREETING from $(hostname) in $(pwd); echo kept > /data/f; cat /data/f"},
		Env:        map[string]string{"GREETING": "hello"},
		WorkingDir: "/tmp",
		Volumes:    []string{"state:/data"},
	})
	if code != 0 {
		t.Fatalf("exit code %d, output %q", code, out)
	}
	want := "hello from " + id[:12] + " in /tmp\nkept\n"
	if out != want {
		t.Fatalf("output %q, want %q", out, want)
	}
	v, err := e.Volumes.Get("state")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.UsedBy) != 1 || v.UsedBy[0] != id {
		t.Fatalf("volume used by %v, want [%s]", v.UsedBy, id)
	}
	if err := e.Volumes.Remove("state", false); err == nil {
		t.Fatal("removing a volume in use succeeded")
	}
	if err := e.Remove(id, false); err != nil {
		t.Fatal(err)
	}
	v, err = e.Volumes.Get("state")
	if err != nil {
		t.Fatal(err)
	}
	if len(v.UsedBy) != 0 {
		t.Fatalf("volume still used by %v after the container was removed", v.UsedBy)
	}
	b, err := os.ReadFile(filepath.Join(v.Mountpoint, "f"))
	if err != nil || string(b) != "kept\n" {
		t.Fatalf("volume data after removal: %q, %v", b, err)
	}
}

func TestTaskExitCodeAndMissingImage(t *testing.T) {
	e := newEngine(t)
	code, _ := runTask(t, e, strings.Repeat("b2", 32), &api.Task{Name: "x", Image: "busybox", Command: []string{"sh", "-c", "exit 7"}})
	if code != 7 {
		t.Fatalf("exit code %d, want 7", code)
	}
	_, err := e.Create(context.Background(), &TaskRequest{ID: strings.Repeat("c3", 32), Task: &api.Task{Name: "x", Image: "nope:1"}})
	if !errors.Is(err, ErrImageNotFound) {
		t.Fatalf("missing image: err %v, want ErrImageNotFound", err)
	}
	if !strings.Contains(err.Error(), "berth image import") {
		t.Fatalf("missing image error gives no next step: %v", err)
	}
	_, err = e.Create(context.Background(), &TaskRequest{ID: strings.Repeat("d4", 32), Task: &api.Task{Name: "x", Image: "busybox", Entrypoint: []string{}}})
	if !errors.Is(err, ErrNoCommand) {
		t.Fatalf("no command: err %v, want ErrNoCommand", err)
	}
}

func TestAnonymousVolumeGoesWithContainer(t *testing.T) {
	e := newEngine(t)
	id := strings.Repeat("e5", 32)
	if code, out := runTask(t, e, id, &api.Task{Name: "x", Image: "busybox", Command: []string{"touch", "/scratch/x"}, Volumes: []string{"/scratch"}}); code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	vols, err := e.Volumes.List()
	if err != nil || len(vols) != 1 {
		t.Fatalf("volumes %v, %v; want one anonymous volume", vols, err)
	}
	if err := e.Remove(id, false); err != nil {
		t.Fatal(err)
	}
	vols, _ = e.Volumes.List()
	if len(vols) != 0 {
		t.Fatalf("anonymous volume %s left after its container was removed", vols[0].Name)
	}
}
