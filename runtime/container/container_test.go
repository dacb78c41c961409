//go:build linux

package container

import (
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
)

func TestHostnamePID1AndMountView(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, `hostname; echo pid=$$; cat /proc/1/cmdline | tr '\0' ' '; echo; cat /proc/self/mountinfo`)
	s.ID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	out := runOK(t, m, s)
	l := lines(out)
	if l[0] != "0123456789ab" {
		t.Errorf("hostname %q, want the first 12 characters of the ID", l[0])
	}
	if l[1] != "pid=1" {
		t.Errorf("shell's pid: %q, want pid=1", l[1])
	}
	if !strings.HasPrefix(l[2], "sh -c") {
		t.Errorf("/proc/1/cmdline %q, want the user's command", l[2])
	}
	mounts := l[3:]
	root := strings.Fields(mounts[0])
	if root[4] != "/" || !strings.Contains(mounts[0], " - overlay ") {
		t.Errorf("first mount %q, want the overlay on /", mounts[0])
	}
	for _, mt := range mounts {
		f := strings.Fields(mt)
		if strings.Contains(f[4], m.root) || strings.Contains(f[4], layerDir) {
			t.Errorf("host path visible in the container's mounts: %q", mt)
		}
	}
	for _, want := range []string{"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/proc/sys", "/proc/keys"} {
		found := false
		for _, mt := range mounts {
			if strings.Fields(mt)[4] == want {
				found = true
			}
		}
		if !found {
			t.Errorf("no mount on %s in %q", want, mounts)
		}
	}
}

func TestProcAndSysProtected(t *testing.T) {
	m := newManager(t)
	out := runOK(t, m, testSpec(t, `
		echo c > /proc/sysrq-trigger 2>/dev/null && echo sysrq=written || echo sysrq=refused
		touch /sys/x 2>/dev/null && echo sys=written || echo sys=refused
		echo $(wc -c < /proc/keys) keys
		ls /dev | tr '\n' ' '`))
	for _, want := range []string{"sysrq=refused", "sys=refused", "0 keys", "console", "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero"} {
		if want == "console" {
			if strings.Contains(out, "console") {
				t.Errorf("/dev has a console: %q", out)
			}
			continue
		}
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// capEff reads the CapEff line of /proc/self/status inside a container.
func capEff(t *testing.T, m *Manager, s *Spec) string {
	t.Helper()
	s.Args = []string{"sh", "-c", "grep CapEff /proc/self/status; grep CapBnd /proc/self/status"}
	return runOK(t, m, s)
}

func TestCapabilities(t *testing.T) {
	m := newManager(t)
	tests := []struct {
		name      string
		add, drop []string
		user      string
		eff, bnd  string
	}{
		{name: "docker default", eff: "00000000a80425fb", bnd: "00000000a80425fb"},
		{name: "add NET_ADMIN drop CAP_CHOWN", add: []string{"NET_ADMIN"}, drop: []string{"CAP_CHOWN"}, eff: "00000000a80435fa", bnd: "00000000a80435fa"},
		{name: "drop ALL add KILL", add: []string{"KILL"}, drop: []string{"ALL"}, eff: "0000000000000020", bnd: "0000000000000020"},
		{name: "non-root has none effective", user: "app", eff: "0000000000000000", bnd: "00000000a80425fb"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t, "")
			s.CapAdd, s.CapDrop, s.User = tc.add, tc.drop, tc.user
			out := capEff(t, m, s)
			if !strings.Contains(out, "CapEff:\t"+tc.eff) || !strings.Contains(out, "CapBnd:\t"+tc.bnd) {
				t.Errorf("got %q, want CapEff %s and CapBnd %s", out, tc.eff, tc.bnd)
			}
		})
	}
}

func TestUserEnvCwd(t *testing.T) {
	m := newManager(t)
	tests := []struct {
		name, user, want string
	}{
		{"root by default", "", "uid=0(root) gid=0(root) groups=0(root)"},
		{"name from passwd", "app", "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)"},
		{"numeric uid:gid", "1234:50", "uid=1234 gid=50(staff) groups=50(staff)"},
		{"name:group", "app:root", "uid=1000(app) gid=0(root) groups=0(root),50(staff)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t, "id")
			s.User = tc.user
			if got := strings.TrimSpace(runOK(t, m, s)); got != tc.want {
				t.Errorf("id: %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("env and cwd", func(t *testing.T) {
		s := testSpec(t, `echo "$FOO|$HOME|$PATH|$HOSTNAME"; pwd`)
		s.Env = []string{"FOO=bar baz"}
		s.Cwd = "/work/dir"
		s.Hostname = "web1"
		l := lines(runOK(t, m, s))
		if want := "bar baz|/root|" + DefaultPath + "|web1"; l[0] != want {
			t.Errorf("env %q, want %q", l[0], want)
		}
		if l[1] != "/work/dir" {
			t.Errorf("pwd %q, want the created /work/dir", l[1])
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		s := testSpec(t, "true")
		s.User = "nosuchuser"
		if _, err := m.Create(s); err != nil {
			t.Fatal(err)
		}
		defer m.Remove(s.ID, true)
		err := m.Start(s.ID)
		if !errors.Is(err, ErrUser) {
			t.Fatalf("start: %v, want ErrUser", err)
		}
	})
}

func TestStartErrors(t *testing.T) {
	m := newManager(t)
	tests := []struct {
		name     string
		args     []string
		sentinel error
		code     int
		msg      string
	}{
		{"missing executable", []string{"nosuchcmd"}, ErrExecutableNotFound, 127, `exec "nosuchcmd": executable file not found in $PATH`},
		{"missing path", []string{"/no/such"}, ErrExecutableNotFound, 127, `no such file or directory`},
		{"not executable", []string{"/etc/passwd"}, ErrPermission, 126, "permission denied"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := testSpec(t, "")
			s.Args = tc.args
			if _, err := m.Create(s); err != nil {
				t.Fatal(err)
			}
			defer m.Remove(s.ID, false)
			err := m.Start(s.ID)
			var se *StartError
			if !errors.As(err, &se) || !errors.Is(err, tc.sentinel) || se.Code != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("start: %v, want code %d and %q", err, tc.code, tc.msg)
			}
			ex, err := m.Wait(context.Background(), s.ID)
			if err != nil || ex.Code != tc.code {
				t.Errorf("wait: %+v %v, want exit %d", ex, err, tc.code)
			}
			c, _ := m.Get(s.ID)
			if c.State.Status != StatusExited || c.State.ExitCode != tc.code {
				t.Errorf("state %+v", c.State)
			}
		})
	}
}

func TestExitCodesAndSignals(t *testing.T) {
	m := newManager(t)
	r := run(t, m, testSpec(t, "exit 3"))
	if r.exit.Code != 3 || r.exit.Signal != 0 {
		t.Errorf("exit 3: got %+v", r.exit)
	}
	s := testSpec(t, "sleep 100")
	start(t, m, s)
	if err := m.Kill(s.ID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ex, err := m.Wait(context.Background(), s.ID)
	if err != nil || ex.Code != 137 || ex.Signal != 9 || ex.OOMKilled {
		t.Errorf("killed: %+v %v, want 137 by signal 9", ex, err)
	}
}

func TestNoHostFDs(t *testing.T) {
	m := newManager(t)
	out := runOK(t, m, testSpec(t, "ls /proc/self/fd | tr '\n' ' '"))
	if got := strings.TrimSpace(out); got != "0 1 2 3" {
		t.Errorf("open descriptors %q, want 0 1 2 and the one ls opened", got)
	}
}

func TestBindMountsAndTmpfs(t *testing.T) {
	m := newManager(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "in"), []byte("from host\n"), 0o644)
	ro := t.TempDir()
	s := testSpec(t, `cat /data/in; echo out > /data/out; touch /ro/x 2>/dev/null && echo ro=writable || echo ro=readonly; echo t > /scratch/t && grep ' /scratch ' /proc/self/mountinfo | grep -c tmpfs`)
	s.Mounts = []Mount{
		{Source: host, Destination: "/data", Type: "bind"},
		{Source: ro, Destination: "/ro", Type: "bind", ReadOnly: true},
		{Destination: "/scratch", Type: "tmpfs", Options: []string{"size=1m"}},
	}
	out := runOK(t, m, s)
	for _, want := range []string{"from host", "ro=readonly", "1"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(host, "out")); string(data) != "out\n" {
		t.Errorf("host sees %q, want the container's write", data)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("read-only bind was written")
	}
}

func TestBindMountSymlinkStaysInRootfs(t *testing.T) {
	m := newManager(t)
	outside := t.TempDir()
	depth := strings.Repeat("../", 12)
	tests := []struct {
		name, link, target, dest, file, mountpoint string
	}{
		// A naive join would reach the host's outside/...; the link means
		// the same path inside the container's root, where it must land.
		{"absolute link", "evil", filepath.Join(outside, "abs"), "/evil", "", filepath.Join(outside, "abs")},
		{"relative link climbing", "rel", depth + strings.TrimPrefix(outside, "/") + "/rel", "/rel", "", filepath.Join(outside, "rel")},
		{"link in the middle", "mid", filepath.Join(outside, "mid"), "/mid/sub/file", "", filepath.Join(outside, "mid/sub/file")},
		{"link to a file destination", "f", filepath.Join(outside, "f"), "/f", "file", filepath.Join(outside, "f")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			layer := t.TempDir()
			if err := os.Symlink(tc.target, filepath.Join(layer, tc.link)); err != nil {
				t.Fatal(err)
			}
			src := t.TempDir()
			if tc.file != "" {
				src = filepath.Join(src, "file")
				os.WriteFile(src, []byte("data\n"), 0o644)
			}
			s := testSpec(t, "awk '{print $5}' /proc/self/mountinfo | grep -cx "+tc.mountpoint+" || true")
			s.Layers = append(s.Layers, layer)
			s.Mounts = []Mount{{Source: src, Destination: tc.dest, Type: "bind"}}
			out := runOK(t, m, s)
			if strings.TrimSpace(out) != "1" {
				t.Errorf("the mount is not at the link's target inside the root: %q", out)
			}
			ents, _ := os.ReadDir(outside)
			if len(ents) != 0 {
				t.Fatalf("a bind mount destination followed a symlink out of the rootfs: host has %v", ents)
			}
		})
	}
}

func TestRlimitsClamped(t *testing.T) {
	m := newManager(t)
	var cur syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &cur)
	s := testSpec(t, "ulimit -n; ulimit -Hn")
	s.Rlimits = []Rlimit{{Type: "RLIMIT_NOFILE", Soft: 1 << 40, Hard: 1 << 40}}
	l := lines(runOK(t, m, s))
	want := strconv.FormatUint(cur.Max, 10)
	if l[0] != want || l[1] != want {
		t.Errorf("nofile soft/hard %q, want both clamped to %s", l, want)
	}
	s = testSpec(t, "ulimit -n")
	s.Rlimits = []Rlimit{{Type: "nofile", Soft: 100, Hard: 200}}
	if got := strings.TrimSpace(runOK(t, m, s)); got != "100" {
		t.Errorf("nofile %q, want 100", got)
	}
}

func TestStopEscalatesToKill(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "trap '' TERM; echo ready; while true; do sleep 0.1; done")
	start(t, m, s)
	waitLog(t, m, s.ID, "ready")
	begin := time.Now()
	if err := m.Stop(s.ID, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	took := time.Since(begin)
	ex, err := m.Wait(context.Background(), s.ID)
	if err != nil || ex.Code != 137 {
		t.Fatalf("exit %+v %v, want 137", ex, err)
	}
	if took < 500*time.Millisecond {
		t.Errorf("stopped after %v, before the grace period", took)
	}

	s = testSpec(t, "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done")
	start(t, m, s)
	waitLog(t, m, s.ID, "ready")
	if err := m.Stop(s.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	ex, _ = m.Wait(context.Background(), s.ID)
	if ex.Code != 0 {
		t.Errorf("a container that handles SIGTERM exited %d", ex.Code)
	}
}

// waitLog waits until the container's stdout contains want.
func waitLog(t *testing.T, m *Manager, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if out, _ := readLogs(t, m, id); strings.Contains(out, want) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("container %s never printed %q", id, want)
}

func TestRemoveRefusesRunning(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "sleep 100")
	start(t, m, s)
	if err := m.Remove(s.ID, false); !errors.Is(err, ErrRunning) {
		t.Fatalf("remove of a running container: %v, want ErrRunning", err)
	}
	c, err := m.Get(s.ID[:len(s.ID)-1])
	if err != nil || c.State.Status != StatusRunning || c.State.Pid == 0 {
		t.Fatalf("get by prefix: %+v %v", c, err)
	}
	if err := m.Remove(s.ID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(s.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after remove: %v", err)
	}
	if err := syscall.Kill(c.State.Pid, 0); err == nil {
		t.Errorf("process %d still runs", c.State.Pid)
	}
}

func TestNamesListAndStartOnce(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "true")
	s.Name = "web"
	r := run(t, m, s)
	if r.exit.Code != 0 {
		t.Fatalf("exit %+v", r.exit)
	}
	if err := m.Start(s.ID); !errors.Is(err, ErrAlreadyStarted) {
		t.Errorf("second start: %v, want ErrAlreadyStarted", err)
	}
	dup := testSpec(t, "true")
	dup.Name = "web"
	if _, err := m.Create(dup); !errors.Is(err, ErrExists) {
		t.Errorf("create with a used name: %v, want ErrExists", err)
	}
	again := *s
	again.Name = ""
	if _, err := m.Create(&again); !errors.Is(err, ErrExists) {
		t.Errorf("create with a used ID: %v, want ErrExists", err)
	}
	c, err := m.Get("web")
	if err != nil || c.ID != s.ID || c.State.Status != StatusExited || c.State.StartedAt.IsZero() || c.State.FinishedAt.Before(c.State.StartedAt) {
		t.Errorf("get by name: %+v %v", c, err)
	}
	created := testSpec(t, "true")
	if _, err := m.Create(created); err != nil {
		t.Fatal(err)
	}
	defer m.Remove(created.ID, false)
	list, err := m.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", list, err)
	}
	status := map[string]string{}
	for _, c := range list {
		status[c.ID] = c.State.Status
	}
	if status[s.ID] != StatusExited || status[created.ID] != StatusCreated {
		t.Errorf("statuses %v", status)
	}
	if _, err := m.Get("t"); !errors.Is(err, ErrAmbiguous) {
		t.Errorf("get by a shared prefix: %v, want ErrAmbiguous", err)
	}
	if _, err := m.Get("nosuch"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get of nothing: %v, want ErrNotFound", err)
	}
}

// An image of more layers than a page of absolute lowerdir paths holds
// still mounts, with every layer visible in order.
func TestManyLayers(t *testing.T) {
	m := newManager(t)
	const n = 70
	long := filepath.Join(t.TempDir(), strings.Repeat("a-long-layer-directory-name-", 4))
	s := testSpec(t, "cat /layers/bottom /layers/top; ls /layers | wc -l")
	for i := 0; i < n; i++ {
		dir := filepath.Join(long, fmt.Sprintf("layer-%03d", i))
		if err := os.MkdirAll(filepath.Join(dir, "layers"), 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "layers", fmt.Sprintf("f%03d", i)), nil, 0o644)
		// A lower layer's file of the same name is hidden by an upper one.
		os.WriteFile(filepath.Join(dir, "layers", "top"), []byte(fmt.Sprintf("top from %d\n", i)), 0o644)
		if i == 0 {
			os.WriteFile(filepath.Join(dir, "layers", "bottom"), []byte("bottom\n"), 0o644)
		}
		s.Layers = append(s.Layers, dir)
	}
	if got := len("lowerdir=") + n*len(s.Layers[1]); got < maxMountData {
		t.Fatalf("the layer paths take %d bytes, which fit a page: the test needs longer ones", got)
	}
	out := runOK(t, m, s)
	want := fmt.Sprintf("bottom\ntop from %d\n%d\n", n-1, n+2)
	if out != want {
		t.Fatalf("container saw %q, want %q", out, want)
	}
}
