//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// TestDockerWorkflow drives the docker-style CLI against one `berth dev`.
func TestDockerWorkflow(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()

	t.Run("images lists busybox", func(t *testing.T) {
		r := d.MustBerth(t, "images")
		if !strings.Contains(r.Stdout, "busybox") || !strings.Contains(r.Stdout, "latest") {
			t.Fatalf("busybox missing from images:\n%s", r)
		}
	})

	t.Run("run prints output and returns the exit code", func(t *testing.T) {
		r := d.Berth("run", "--rm", "busybox", "sh", "-c", "echo hello; echo oops >&2; exit 3")
		if r.Code != 3 || r.Stdout != "hello\n" || !strings.Contains(r.Stderr, "oops") {
			t.Fatalf("want exit 3, stdout hello, stderr oops; got %s", r)
		}
		r = d.MustBerth(t, "run", "--rm", "-e", "GREETING=Hi from container", "busybox", "sh", "-c", `echo "$GREETING"`)
		if r.Stdout != "Hi from container\n" {
			t.Fatalf("env: %s", r)
		}
	})

	t.Run("detached then ps, logs -f, exec and stop", func(t *testing.T) {
		r := d.MustBerth(t, "run", "-d", "--name", "ticker", "busybox", "sh", "-c",
			"trap 'exit 0' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done")
		id := strings.TrimSpace(r.Stdout)
		if !hex64.MatchString(id) {
			t.Fatalf("run -d should print a 64-hex container ID: %s", r)
		}
		ps := d.MustBerth(t, "ps")
		if !strings.Contains(ps.Stdout, id[:12]) || !strings.Contains(ps.Stdout, "ticker") || !strings.Contains(ps.Stdout, "Up ") {
			t.Fatalf("ps does not show the running container %s:\n%s", id[:12], ps)
		}
		if q := d.MustBerth(t, "ps", "-q", "--no-trunc"); !strings.Contains(q.Stdout, id) {
			t.Fatalf("ps -q --no-trunc: %s", q)
		}

		ex := d.Berth("exec", "ticker", "sh", "-c", "echo $((1+2)); exit 4")
		if ex.Code != 4 || ex.Stdout != "3\n" {
			t.Fatalf("exec: want 3 and exit 4, got %s", ex)
		}
		ex = d.BerthIn(strings.NewReader("from stdin"), "exec", "-i", id[:8], "cat")
		if ex.Code != 0 || ex.Stdout != "from stdin" {
			t.Fatalf("exec -i: %s", ex)
		}

		logs, lines := d.Stream(t, "logs", "-f", "ticker")
		seen := 0
		timeout := time.After(15 * time.Second)
		for seen < 3 {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("logs -f ended early after %d lines", seen)
				}
				if strings.HasPrefix(l, "tick ") {
					seen++
				}
			case <-timeout:
				t.Fatalf("logs -f: only %d tick lines in 15s", seen)
			}
		}

		st := d.MustBerth(t, "stop", "ticker")
		if strings.TrimSpace(st.Stdout) != "ticker" {
			t.Fatalf("stop should print the name: %s", st)
		}
		// logs -f ends once the container has exited.
		ended := make(chan struct{})
		go func() {
			for range lines {
			}
			close(ended)
		}()
		select {
		case <-ended:
		case <-time.After(15 * time.Second):
			t.Fatal("logs -f still running 15s after stop")
		}
		_ = logs
		if ps := d.MustBerth(t, "ps"); strings.Contains(ps.Stdout, id[:12]) {
			t.Fatalf("stopped container still listed by ps:\n%s", ps)
		}
		if ps := d.MustBerth(t, "ps", "-a"); !strings.Contains(ps.Stdout, id[:12]) || !strings.Contains(ps.Stdout, "Exited") {
			t.Fatalf("ps -a should list the exited container:\n%s", ps)
		}
		d.MustBerth(t, "rm", "ticker")
		if ps := d.MustBerth(t, "ps", "-a"); strings.Contains(ps.Stdout, id[:12]) {
			t.Fatalf("rm left the container:\n%s", ps)
		}
	})

	t.Run("stop timeout kills a process that ignores SIGTERM", func(t *testing.T) {
		d.MustBerth(t, "run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; sleep 100 & wait; sleep 100")
		start := time.Now()
		r := d.MustBerth(t, "stop", "-t", "1", "stubborn")
		took := time.Since(start)
		if took > 12*time.Second {
			t.Fatalf("stop -t 1 took %s", took)
		}
		info := d.Inspect(t, "stubborn")
		if info.State.State != "dead" || info.State.ExitCode != 137 {
			t.Fatalf("want dead with exit 137 after stop -t 1, got %+v (stop: %s)", info.State, r)
		}
		t.Logf("stop -t 1 of a SIGTERM-ignoring container took %s", took)
		d.MustBerth(t, "rm", "stubborn")
	})

	t.Run("memory limit: a hog is OOM-killed and reported", func(t *testing.T) {
		r := d.Berth("run", "--name", "hog", "--memory", "20m", "busybox", "sh", "-c", `a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done`)
		if r.Code != 137 {
			t.Fatalf("want exit 137 from the OOM kill, got %s", r)
		}
		if !strings.Contains(r.Stderr, "OOM") {
			t.Errorf("run should say the container was OOM-killed: %s", r)
		}
		info := d.Inspect(t, "hog")
		if !info.State.OOMKilled {
			t.Fatalf("inspect should report oom_killed: %+v", info.State)
		}
		if ps := d.MustBerth(t, "ps", "-a"); !strings.Contains(ps.Stdout, "OOMKilled") {
			t.Errorf("ps -a should show OOMKilled:\n%s", ps)
		}
		d.MustBerth(t, "rm", "hog")
	})

	t.Run("cpus limit holds a busy loop near half a core", func(t *testing.T) {
		d.MustBerth(t, "run", "-d", "--name", "spinner", "--cpus", "0.5", "busybox", "sh", "-c", "while :; do :; done")
		defer d.Berth("rm", "-f", "spinner")
		time.Sleep(time.Second)
		r := d.MustBerth(t, "stats", "--no-stream", "--format", "json", "spinner")
		var rows []struct {
			CPUPercent float64 `json:"cpu_percent"`
			Error      string  `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &rows); err != nil || len(rows) != 1 || rows[0].Error != "" {
			t.Fatalf("stats: %v %s", err, r)
		}
		if rows[0].CPUPercent > 65 || rows[0].CPUPercent < 5 {
			t.Fatalf("--cpus 0.5 busy loop used %.1f%% of a core, want about 50%%", rows[0].CPUPercent)
		}
		t.Logf("busy loop with --cpus 0.5: %.1f%% of a core", rows[0].CPUPercent)
	})

	t.Run("a volume persists across runs", func(t *testing.T) {
		d.MustBerth(t, "volume", "create", "keep")
		d.MustBerth(t, "run", "--rm", "-v", "keep:/data", "busybox", "sh", "-c", "echo persisted > /data/f")
		r := d.MustBerth(t, "run", "--rm", "-v", "keep:/data", "busybox", "cat", "/data/f")
		if r.Stdout != "persisted\n" {
			t.Fatalf("second run read %q from the volume: %s", r.Stdout, r)
		}
		if ls := d.MustBerth(t, "volume", "ls"); !strings.Contains(ls.Stdout, "keep") {
			t.Fatalf("volume ls: %s", ls)
		}
	})

	t.Run("run --rm removes the container, freeing its volume", func(t *testing.T) {
		// Both containers that used "keep" ran with --rm: once removed,
		// nothing uses the volume and it can go.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := d.Berth("volume", "rm", "keep")
			if r.Code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("volume rm 10s after the run --rm containers ended: %s", r)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if ls := d.MustBerth(t, "volume", "ls"); strings.Contains(ls.Stdout, "keep") {
			t.Fatalf("volume rm left the volume: %s", ls)
		}
	})

	t.Run("a name in use is refused", func(t *testing.T) {
		d.MustBerth(t, "run", "-d", "--name", "dup", "busybox", "sleep", "60")
		defer d.Berth("rm", "-f", "dup")
		r := d.Berth("run", "--name", "dup", "busybox", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "already in use") {
			t.Fatalf("want 'already in use' and a non-zero exit, got %s", r)
		}
	})

	t.Run("a removed container's name can be used again", func(t *testing.T) {
		d.MustBerth(t, "run", "--name", "again", "busybox", "true")
		d.MustBerth(t, "rm", "again")
		r := d.MustBerth(t, "run", "--rm", "--name", "again", "busybox", "echo", "second")
		if r.Stdout != "second\n" {
			t.Fatalf("second run of a reused name: %s", r)
		}
	})

	t.Run("kill, wait and logs options", func(t *testing.T) {
		d.MustBerth(t, "run", "-d", "--name", "trapper", "busybox", "sh", "-c",
			"trap 'echo got TERM; exit 9' TERM; echo ready; while true; do sleep 0.1; done")
		defer d.Berth("rm", "-f", "trapper")
		WaitFor(t, 10*time.Second, "trapper ready", func() bool {
			return strings.Contains(d.Berth("logs", "trapper").Stdout, "ready")
		})
		if r := d.MustBerth(t, "kill", "-s", "TERM", "trapper"); strings.TrimSpace(r.Stdout) != "trapper" {
			t.Fatalf("kill should print the name: %s", r)
		}
		if r := d.MustBerth(t, "wait", "trapper"); strings.TrimSpace(r.Stdout) != "9" {
			t.Fatalf("wait: want 9, got %s", r)
		}
		r := d.MustBerth(t, "logs", "--tail", "1", "-t", "trapper")
		fields := strings.Fields(r.Stdout)
		if len(fields) != 3 || fields[1] != "got" {
			t.Fatalf("logs --tail 1 -t: want one timestamped line, got %s", r)
		}
		if _, err := time.Parse(time.RFC3339Nano, fields[0]); err != nil {
			t.Fatalf("logs -t timestamp %q: %v", fields[0], err)
		}
		if r := d.Berth("kill", "trapper"); r.Code == 0 || !strings.Contains(r.Stderr, "not running") {
			t.Fatalf("kill of an exited container: %s", r)
		}
		if r := d.Berth("rm", "nosuch"); r.Code == 0 || !strings.Contains(r.Stderr, "no such container") {
			t.Fatalf("rm of an unknown container: %s", r)
		}
	})

	t.Run("start runs an exited container again", func(t *testing.T) {
		r := d.Berth("run", "--name", "again2", "busybox", "sh", "-c", "echo run; exit 4")
		if r.Code != 4 {
			t.Fatalf("first run: %s", r)
		}
		d.MustBerth(t, "container", "start", "again2")
		if w := d.MustBerth(t, "wait", "again2"); strings.TrimSpace(w.Stdout) != "4" {
			t.Fatalf("wait after start: %s", w)
		}
		if l := d.MustBerth(t, "logs", "again2"); l.Stdout != "run\n" {
			t.Fatalf("logs of the restarted container: %s", l)
		}
		if ps := d.MustBerth(t, "ps", "-a"); strings.Count(ps.Stdout, "again2") != 2 {
			t.Fatalf("ps -a should list both runs: %s", ps)
		}
		d.MustBerth(t, "rm", "again2")
	})

	t.Run("container verbs and running-container rm", func(t *testing.T) {
		r := d.MustBerth(t, "container", "run", "-d", "--name", "boxed", "busybox", "sleep", "30")
		id := strings.TrimSpace(r.Stdout)
		if ls := d.MustBerth(t, "container", "ls"); !strings.Contains(ls.Stdout, id[:12]) {
			t.Fatalf("container ls: %s", ls)
		}
		if r := d.Berth("container", "rm", "boxed"); r.Code == 0 || !strings.Contains(r.Stderr, "running") {
			t.Fatalf("rm of a running container should be refused: %s", r)
		}
		d.MustBerth(t, "container", "rm", "-f", id[:6])
		if ls := d.MustBerth(t, "ps", "-a"); strings.Contains(ls.Stdout, id[:12]) {
			t.Fatalf("rm -f left the container: %s", ls)
		}
	})

	t.Run("image tag, inspect and rm", func(t *testing.T) {
		d.MustBerth(t, "image", "tag", "busybox", "mybox:1")
		r := d.MustBerth(t, "image", "inspect", "mybox:1")
		var ims []struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repo_tags"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &ims); err != nil || len(ims) != 1 || !strings.HasPrefix(ims[0].ID, "sha256:") {
			t.Fatalf("image inspect: %v %s", err, r)
		}
		if r := d.MustBerth(t, "images", "-q"); !strings.Contains(r.Stdout, strings.TrimPrefix(ims[0].ID, "sha256:")[:12]) {
			t.Fatalf("images -q: %s", r)
		}
		if r := d.MustBerth(t, "rmi", "mybox:1"); !strings.Contains(r.Stdout, "Untagged: mybox:1") {
			t.Fatalf("rmi: %s", r)
		}
		if r := d.Berth("image", "inspect", "mybox:1"); r.Code == 0 {
			t.Fatalf("inspect after rmi: %s", r)
		}
	})

	t.Run("image names with a registry and path", func(t *testing.T) {
		const ref = "registry.local:5000/team/box:2"
		d.MustBerth(t, "image", "tag", "busybox", ref)
		if r := d.MustBerth(t, "image", "inspect", ref); !strings.Contains(r.Stdout, ref) {
			t.Fatalf("inspect %s: %s", ref, r)
		}
		if r := d.MustBerth(t, "run", "--rm", ref, "echo", "from "+ref); r.Stdout != "from "+ref+"\n" {
			t.Fatalf("run %s: %s", ref, r)
		}
		if r := d.MustBerth(t, "rmi", "-f", ref); !strings.Contains(r.Stdout, "Untagged: "+ref) {
			t.Fatalf("rmi -f %s: %s", ref, r)
		}
	})

	t.Run("a bad image name is a clear error", func(t *testing.T) {
		r := d.Berth("run", "--rm", "nosuchimage:1.0", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "nosuchimage") {
			t.Fatalf("unknown image: want a non-zero exit naming the image, got %s", r)
		}
		t.Logf("unknown image: %s", strings.TrimSpace(r.Stderr))
		r = d.Berth("run", "Not An/Image", "true")
		if r.Code != 125 || !strings.Contains(r.Stderr, "invalid image reference") {
			t.Fatalf("invalid reference: want exit 125, got %s", r)
		}
	})

	t.Run("bad flags are refused with 125", func(t *testing.T) {
		for _, args := range [][]string{
			{"run", "--memory", "1m", "busybox", "true"},
			{"run", "--cpus", "-1", "busybox", "true"},
			{"run", "-p", "99999:80", "busybox", "true"},
			{"run", "--gpus", "count=x", "busybox", "true"},
			{"run", "--restart", "sometimes", "busybox", "true"},
		} {
			if r := d.Berth(args...); r.Code != 125 || r.Stderr == "" {
				t.Errorf("berth %s: want exit 125 with a message, got %s", strings.Join(args, " "), r)
			}
		}
	})

	t.Run("no node fits says why", func(t *testing.T) {
		r := d.Berth("run", "--rm", "--memory", "100000g", "busybox", "true")
		if r.Code == 0 || !strings.Contains(strings.ToLower(r.Stderr), "memory") {
			t.Fatalf("want a placement failure naming memory, got %s", r)
		}
	})

	t.Run("info and an unreachable server", func(t *testing.T) {
		r := d.MustBerth(t, "info")
		if !strings.Contains(r.Stdout, "Leader:") || !strings.Contains(r.Stdout, "Nodes:   1 (1 ready)") {
			t.Fatalf("info: %s", r)
		}
		old := d.Addr
		d.Addr = "http://127.0.0.1:1"
		r = d.Berth("ps")
		d.Addr = old
		if r.Code != 125 || !strings.Contains(r.Stderr, "127.0.0.1:1") || !strings.Contains(r.Stderr, "berth dev") {
			t.Fatalf("unreachable: want 125 naming the address and hinting at berth dev, got %s", r)
		}
	})
}

// TestDevRestartKeepsContainers kills `berth dev` with SIGKILL, starts it
// again on the same data directory and ports, and checks that a detached
// container kept running (same PID) and still logs.
func TestDevRestartKeepsContainers(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	d.MustBerth(t, "run", "-d", "--name", "survivor", "busybox", "sh", "-c",
		`i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done`)
	before := d.Inspect(t, "survivor")
	if before.Container == nil || before.Container.Pid <= 0 {
		t.Fatalf("inspect should give the container's PID: %+v", before)
	}
	pid := before.Container.Pid

	d.Kill9()
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatalf("container process %d died with berth dev: %v", pid, err)
	}
	d.Start()

	WaitFor(t, 20*time.Second, "survivor running after the restart", func() bool {
		r := d.Berth("ps")
		return r.Code == 0 && strings.Contains(r.Stdout, "survivor") && strings.Contains(r.Stdout, "Up ")
	})
	after := d.Inspect(t, "survivor")
	if after.Container == nil || after.Container.Pid != pid {
		t.Fatalf("PID changed across the restart: before %d, after %+v", pid, after.Container)
	}
	lastTick := func() int {
		r := d.MustBerth(t, "logs", "--tail", "1", "survivor")
		n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(r.Stdout), "tick "))
		if err != nil {
			t.Fatalf("logs --tail 1: %s", r)
		}
		return n
	}
	first := lastTick()
	time.Sleep(time.Second)
	if second := lastTick(); second <= first {
		t.Fatalf("container stopped logging after the restart: tick %d then %d", first, second)
	}
}

// TestDockerTwoNodes runs a second agent beside `berth dev`: image and
// volume commands reach every node, --node picks one, and --constraint
// places a container on the named node.
func TestDockerTwoNodes(t *testing.T) {
	d := StartDev(t)
	d.StartAgent("second")

	if nl := d.MustBerth(t, "node", "ls"); !strings.Contains(nl.Stdout, "second") {
		t.Fatalf("node ls: %s", nl)
	}
	d.ImportBusybox() // without --node: every ready node
	r := d.MustBerth(t, "images")
	if !strings.Contains(r.Stdout, "NODE") || strings.Count(r.Stdout, "busybox") != 2 || !strings.Contains(r.Stdout, "second") {
		t.Fatalf("images should list busybox on both nodes with a NODE column:\n%s", r)
	}
	if r := d.MustBerth(t, "images", "--node", "second"); strings.Contains(r.Stdout, "NODE") || !strings.Contains(r.Stdout, "busybox") {
		t.Fatalf("images --node second: %s", r)
	}
	d.MustBerth(t, "volume", "create", "--node", "second", "only-there")
	if r := d.MustBerth(t, "volume", "ls"); strings.Count(r.Stdout, "only-there") != 1 || !strings.Contains(r.Stdout, "second") {
		t.Fatalf("volume ls: %s", r)
	}

	d.MustBerth(t, "run", "-d", "--name", "pinned", "--constraint", "node.name=second", "busybox", "sleep", "30")
	if info := d.Inspect(t, "pinned"); info.Node != "second" {
		t.Fatalf("--constraint node.name=second placed the container on %q", info.Node)
	}
	if r := d.MustBerth(t, "ps"); !strings.Contains(r.Stdout, "second") {
		t.Fatalf("ps should show the NODE: %s", r)
	}
	if r := d.Berth("run", "--rm", "--constraint", "node.name=nowhere", "busybox", "true"); r.Code == 0 || r.Stderr == "" {
		t.Fatalf("an unsatisfiable constraint should fail with a reason: %s", r)
	}
	d.MustBerth(t, "rm", "-f", "pinned")
}
