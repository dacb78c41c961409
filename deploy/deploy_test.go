package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/jobspec"
	"github.com/berth-dev/berth/scheduler/placement"
)

func TestExampleJobsParseAndValidate(t *testing.T) {
	files, err := filepath.Glob("jobs/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"web.yaml": "service", "batch.yaml": "batch", "gpu-train.yaml": "batch", "system.yaml": "system"}
	if len(files) != len(want) {
		t.Fatalf("jobs/ has %v, want %d examples", files, len(want))
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			job, err := jobspec.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			placement.Canonicalize(job)
			if err := placement.ValidateJob(job); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if got := job.Type; got != want[filepath.Base(f)] {
				t.Fatalf("%s: type %q, want %q", f, got, want[filepath.Base(f)])
			}
		})
	}
	// What each example is there to show.
	web, _ := jobspec.ParseFile("jobs/web.yaml")
	if p := web.Groups[0].Tasks[0].Ports; len(p) == 0 || p[0].To == 0 {
		t.Errorf("web.yaml publishes no port: %+v", p)
	}
	gpu, _ := jobspec.ParseFile("jobs/gpu-train.yaml")
	if g := gpu.Groups[0].Tasks[0].Resources.GPUs; g == nil || g.Count < 1 {
		t.Errorf("gpu-train.yaml asks for no GPU: %+v", g)
	}
}

// unitKeys reads a systemd unit's Key=Value lines (last one wins).
func unitKeys(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("%s: not a Key=Value line: %q", path, line)
		}
		m[k] = v
	}
	return m
}

func TestUnits(t *testing.T) {
	tests := []struct {
		name string
		file string
		want map[string]string
	}{
		{"server", "berth-server.service", map[string]string{
			"ExecStart":   "/usr/local/bin/berth server --config /etc/berth/server.yaml",
			"Restart":     "on-failure",
			"LimitNOFILE": "65536",
			"TasksMax":    "infinity",
		}},
		{"agent", "berth-agent.service", map[string]string{
			"ExecStart":   "/usr/local/bin/berth agent --config /etc/berth/agent.yaml",
			"Restart":     "on-failure",
			"KillMode":    "process", // containers survive an agent restart
			"Delegate":    "yes",
			"LimitNOFILE": "1048576",
			"TasksMax":    "infinity",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := unitKeys(t, tt.file)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s: %s=%q, want %q", tt.file, k, got[k], v)
				}
			}
		})
	}
}

func TestInstallIntoDestdir(t *testing.T) {
	if _, err := exec.LookPath("install"); err != nil {
		t.Skip("coreutils install is missing")
	}
	self, err := os.Executable() // any real binary stands in for bin/berth
	if err != nil {
		t.Fatal(err)
	}
	dest := t.TempDir()
	run := func() string {
		t.Helper()
		cmd := exec.Command("sh", "install.sh", "--prefix", "/opt/berth", "--bin", self)
		cmd.Env = append(os.Environ(), "DESTDIR="+dest)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("install.sh: %v\n%s", err, out)
		}
		return string(out)
	}
	run()
	modes := []struct {
		path string
		mode os.FileMode
		dir  bool
	}{
		{"opt/berth/bin/berth", 0o755, false},
		{"etc/systemd/system/berth-server.service", 0o644, false},
		{"etc/systemd/system/berth-agent.service", 0o644, false},
		{"etc/berth", 0o755, true},
		{"etc/berth/server.yaml", 0o640, false},
		{"etc/berth/agent.yaml", 0o640, false},
		{"var/lib/berth", 0o700, true},
	}
	for _, m := range modes {
		st, err := os.Stat(filepath.Join(dest, m.path))
		if err != nil {
			t.Errorf("install.sh did not make %s: %v", m.path, err)
			continue
		}
		if st.IsDir() != m.dir || st.Mode().Perm() != m.mode {
			t.Errorf("%s: mode %v dir=%v, want %v dir=%v", m.path, st.Mode().Perm(), st.IsDir(), m.mode, m.dir)
		}
	}
	unit := unitKeys(t, filepath.Join(dest, "etc/systemd/system/berth-agent.service"))
	if got := unit["ExecStart"]; got != "/opt/berth/bin/berth agent --config /etc/berth/agent.yaml" {
		t.Errorf("installed agent unit runs %q, want the binary under --prefix", got)
	}
	// A second run is an upgrade: it keeps an edited config.
	conf := filepath.Join(dest, "etc/berth/server.yaml")
	if err := os.WriteFile(conf, []byte("bootstrap-expect: 1\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	if out := run(); !strings.Contains(out, "keeping") {
		t.Errorf("second run did not say it keeps the configs:\n%s", out)
	}
	if b, _ := os.ReadFile(conf); string(b) != "bootstrap-expect: 1\n" {
		t.Errorf("second run overwrote server.yaml: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dest, "opt/berth/bin/berth.new")); err == nil {
		t.Error("install.sh left berth.new behind")
	}
}

func TestInstallRefusesBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"relative prefix", []string{"--prefix", "usr", "--bin", "install.sh"}, "absolute path"},
		{"missing binary", []string{"--bin", "/nonexistent/berth"}, "no berth binary"},
		{"unknown flag", []string{"--frobnicate"}, "unknown argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("sh", append([]string{"install.sh"}, tt.args...)...)
			cmd.Env = append(os.Environ(), "DESTDIR="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("install.sh %v: err=%v, output %q, want failure mentioning %q", tt.args, err, out, tt.want)
			}
		})
	}
}
