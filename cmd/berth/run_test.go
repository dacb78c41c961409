package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

func TestParseMemoryMiB(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		err      string
	}{
		{"megabytes", "512m", 512, ""},
		{"gigabytes", "1g", 1024, ""},
		{"upper and b", "2GB", 2048, ""},
		{"binary suffix", "64MiB", 64, ""},
		{"kilobytes round up", "7000k", 7, ""},
		{"bytes", "8388608", 8, ""},
		{"minimum", "6m", 6, ""},
		{"too small", "5m", 0, "minimum memory limit is 6m"},
		{"tiny bytes", "100", 0, "minimum"},
		{"garbage", "lots", 0, "invalid size"},
		{"negative", "-1g", 0, "invalid size"},
		{"empty unit junk", "1x", 0, "invalid size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMemoryMiB(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("parseMemoryMiB(%q) = %d, %v; want error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseMemoryMiB(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		name, in string
		want     int
		ok       bool
	}{
		{"half", "0.5", 500, true},
		{"two", "2", 2000, true},
		{"fraction", "1.25", 1250, true},
		{"zero", "0", 0, false},
		{"negative", "-1", 0, false},
		{"nan", "NaN", 0, false},
		{"word", "two", 0, false},
		{"too fine", "0.0001", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCPUs(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseCPUs(%q) = %d, %v", tt.in, got, err)
			}
		})
	}
}

func TestParseGPUs(t *testing.T) {
	tests := []struct {
		name, in string
		want     *api.GPURequest
	}{
		{"count", "2", &api.GPURequest{Count: 2}},
		{"full", "count=2,model=H100,memory>=40GiB", &api.GPURequest{Count: 2, Model: "H100", MinMemoryMiB: 40960}},
		{"model only", "model=A100", &api.GPURequest{Count: 1, Model: "A100"}},
		{"mig", "mig=1g.10gb", &api.GPURequest{Count: 1, MIGProfile: "1g.10gb"}},
		{"nvlink", "count=4,topology=nvlink", &api.GPURequest{Count: 4, Topology: "nvlink"}},
		{"zero", "0", nil},
		{"all", "all", nil},
		{"unknown key", "colour=red", nil},
		{"bad count", "count=x", nil},
		{"bad memory", "memory>=lots", nil},
		{"bad topology", "topology=pcie", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseGPUs(tt.in)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), "--gpus") {
					t.Fatalf("parseGPUs(%q) = %+v, %v; want an error", tt.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("parseGPUs(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestParsePublish(t *testing.T) {
	tests := []struct {
		name, in string
		want     api.Port
		ok       bool
	}{
		{"host and container", "8080:80", api.Port{To: 80, Static: 8080, Protocol: "tcp"}, true},
		{"container only", "80", api.Port{To: 80, Protocol: "tcp"}, true},
		{"udp", "53:53/udp", api.Port{To: 53, Static: 53, Protocol: "udp"}, true},
		{"host ip", "127.0.0.1:8080:80", api.Port{To: 80, Static: 8080, Protocol: "tcp", HostIP: "127.0.0.1"}, true},
		{"ipv6", "[::1]:8080:80", api.Port{To: 80, Static: 8080, Protocol: "tcp", HostIP: "::1"}, true},
		{"bad proto", "80/sctp", api.Port{}, false},
		{"port zero", "0:80", api.Port{}, false},
		{"port too big", "70000", api.Port{}, false},
		{"bad ip", "300.1.1.1:80:80", api.Port{}, false},
		{"too many", "1:2:3:4", api.Port{}, false},
		{"word", "http", api.Port{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePublish(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parsePublish(%q) = %+v, %v", tt.in, got, err)
			}
		})
	}
}

func TestParseConstraint(t *testing.T) {
	tests := []struct {
		name, in string
		want     api.Constraint
		ok       bool
	}{
		{"node name", "node.name=foo", api.Constraint{Attribute: "${node.name}", Operator: "=", Value: "foo"}, true},
		{"label", "rack=r1", api.Constraint{Attribute: "${node.label.rack}", Operator: "=", Value: "r1"}, true},
		{"not equal", "node.datacenter!=dc2", api.Constraint{Attribute: "${node.datacenter}", Operator: "!=", Value: "dc2"}, true},
		{"interpolated", "${attr.kernel.name}=linux", api.Constraint{Attribute: "${attr.kernel.name}", Operator: "=", Value: "linux"}, true},
		{"no operator", "rack", api.Constraint{}, false},
		{"empty attribute", "=x", api.Constraint{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseConstraint(tt.in)
			if (err == nil) != tt.ok || got != tt.want {
				t.Fatalf("parseConstraint(%q) = %+v, %v", tt.in, got, err)
			}
		})
	}
}

func TestParseRestart(t *testing.T) {
	tests := []struct {
		name, in, typ string
		attempts      int
		onSuccess     bool
		ok            bool
	}{
		{"no", "no", api.JobTypeBatch, 0, false, true},
		{"always", "always", api.JobTypeService, 1<<31 - 1, true, true},
		{"on-failure:3", "on-failure:3", api.JobTypeService, 3, false, true},
		{"on-failure", "on-failure", api.JobTypeService, 1<<31 - 1, false, true},
		{"bad count", "on-failure:x", "", 0, false, false},
		{"unknown", "sometimes", "", 0, false, false},
		{"always with count", "always:3", "", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			typ, p, err := parseRestart(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("parseRestart(%q): %v", tt.in, err)
			}
			if !tt.ok {
				return
			}
			if typ != tt.typ || p.Attempts != tt.attempts || p.OnSuccess != tt.onSuccess {
				t.Fatalf("parseRestart(%q) = %s %+v", tt.in, typ, p)
			}
		})
	}
}

func TestCheckVolumeAndImage(t *testing.T) {
	for _, v := range []string{"data:/data", "data:/data:ro", "/srv/x:/x", "/srv/x:/x:rw", "my.vol-1:/v"} {
		if err := checkVolumeSpec(v); err != nil {
			t.Errorf("volume %q refused: %v", v, err)
		}
	}
	for _, v := range []string{"/data", "data:rel", "data:/", "a:/b:rx", "a:/b:ro:x", "-bad:/x", ":/x"} {
		if err := checkVolumeSpec(v); err == nil {
			t.Errorf("volume %q accepted", v)
		}
	}
	for _, r := range []string{"busybox", "busybox:1.36", "localhost:5000/team/app:v1", "a/b/c", "sha256:abcdef", "reg.io/x@sha256:" + strings.Repeat("a", 64)} {
		if err := checkImageRef(r); err != nil {
			t.Errorf("image %q refused: %v", r, err)
		}
	}
	for _, r := range []string{"", "BusyBox", "bad image", "x:", "a//b", ":tag", "sha256:xyz"} {
		if err := checkImageRef(r); err == nil {
			t.Errorf("image %q accepted", r)
		}
	}
}

func TestBuildRunJob(t *testing.T) {
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	if err := os.WriteFile(envFile, []byte("# comment\n\nFROM_FILE=1\nOVERRIDE=file\nFROM_SHELL\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FROM_SHELL", "shell")
	t.Setenv("PASSED", "yes")
	f := &runFlags{
		name: "web", env: []string{"OVERRIDE=flag", "PASSED", "UNSET_VAR_XYZ"}, envFiles: []string{envFile},
		volumes: []string{"data:/data"}, workdir: "/tmp", user: "1000:1000", entrypoint: "",
		cpus: "0.5", memory: "256m", pidsLimit: 64, gpus: "1", labels: []string{"team=a"},
		restart: "on-failure:2", stopTimeout: "3", network: "none",
		constraints: []string{"node.name=n1"}, publish: []string{"8080:80"}, capAdd: []string{"net_admin"}, capDrop: []string{"CAP_CHOWN"},
	}
	changed := func(n string) bool { return n == "entrypoint" || n == "user" || n == "pids-limit" }
	j, err := buildRunJob(f, "busybox", []string{"sh", "-c", "exit 3"}, changed)
	if err != nil {
		t.Fatal(err)
	}
	task := j.Groups[0].Tasks[0]
	if j.ID != "web" || j.Type != api.JobTypeService || j.Groups[0].Count != 1 || j.Groups[0].Restart.Attempts != 2 {
		t.Errorf("job %+v group %+v", j, j.Groups[0])
	}
	wantEnv := map[string]string{"FROM_FILE": "1", "OVERRIDE": "flag", "FROM_SHELL": "shell", "PASSED": "yes"}
	if !reflect.DeepEqual(task.Env, wantEnv) {
		t.Errorf("env %v, want %v", task.Env, wantEnv)
	}
	if task.Entrypoint == nil || len(task.Entrypoint) != 0 {
		t.Errorf("--entrypoint \"\" should clear: %#v", task.Entrypoint)
	}
	if task.Resources.CPU != 500 || task.Resources.MemoryMB != 256 || task.Resources.PidsLimit != 64 || task.Resources.GPUs.Count != 1 {
		t.Errorf("resources %+v", task.Resources)
	}
	if time.Duration(task.StopTimeout) != 3*time.Second || task.Network != "none" || task.User != "1000:1000" || task.WorkingDir != "/tmp" {
		t.Errorf("task %+v", task)
	}
	if j.Constraints[0].Attribute != "${node.name}" || task.Ports[0].Static != 8080 || task.CapAdd[0] != "NET_ADMIN" || task.CapDrop[0] != "CHOWN" {
		t.Errorf("constraints %+v ports %+v caps %v %v", j.Constraints, task.Ports, task.CapAdd, task.CapDrop)
	}

	plain, err := buildRunJob(&runFlags{restart: "no"}, "busybox", nil, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if plain.Type != api.JobTypeBatch || plain.Groups[0].Tasks[0].Entrypoint != nil || plain.Name != "" {
		t.Errorf("plain job %+v", plain)
	}

	it, err := buildRunJob(&runFlags{tty: true, interactive: true, restart: "no"}, "busybox", []string{"sh"}, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	if task := it.Groups[0].Tasks[0]; !task.Tty || !task.Interactive {
		t.Errorf("-it task %+v: want Tty and Interactive", task)
	}

	bad := []struct {
		name string
		f    runFlags
		want string
	}{
		{"rm and restart", runFlags{rm: true, restart: "always"}, "--rm"},
		{"bad name", runFlags{name: "-x"}, "invalid container name"},
		{"relative workdir", runFlags{workdir: "tmp"}, "absolute"},
		{"small memory", runFlags{memory: "1m"}, "6m"},
		{"bad env", runFlags{env: []string{"=x"}}, "environment variable"},
		{"missing env file", runFlags{envFiles: []string{filepath.Join(dir, "nope")}}, "--env-file"},
		{"bad label", runFlags{labels: []string{"=v"}}, "--label"},
		{"bad network", runFlags{network: "a b"}, "--network"},
		{"bad container network", runFlags{network: "container:"}, "--network"},
		{"bad network alias", runFlags{networkAliases: []string{"a b"}}, "--network-alias"},
		{"bad stop timeout", runFlags{stopTimeout: "soon"}, "--stop-timeout"},
		{"bad cap", runFlags{capAdd: []string{"net admin"}}, "--cap-add"},
		{"bad signal", runFlags{stopSignal: "SIGNOPE"}, "--stop-signal"},
		{"bad priority", runFlags{priority: 101}, "--priority"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if tt.f.restart == "" {
				tt.f.restart = "no"
			}
			_, err := buildRunJob(&tt.f, "busybox", nil, func(string) bool { return false })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one with %q", err, tt.want)
			}
		})
	}
	if _, err := buildRunJob(&runFlags{restart: "no"}, "Bad Image", nil, func(string) bool { return false }); err == nil {
		t.Error("bad image accepted")
	}
}

func TestFindCtr(t *testing.T) {
	mk := func(allocID, job string, idx uint64, state string) *api.Allocation {
		return &api.Allocation{
			ID: allocID, JobID: job, Name: job + ".main[0]", Group: "main", CreateIndex: idx, NodeID: "n1",
			DesiredStatus: api.AllocDesiredRun, ClientStatus: api.AllocClientRunning,
			Job:        &api.Job{ID: job, Name: job, Groups: []*api.Group{{Name: "main", Count: 1, Tasks: []*api.Task{{Name: "main", Image: "busybox"}}}}},
			TaskStates: map[string]*api.TaskState{"main": {State: state}},
		}
	}
	var all []*ctr
	old := mk("aaaa1111-0000", "web", 5, api.TaskStateDead)
	old.ClientStatus = api.AllocClientComplete
	for _, a := range []*api.Allocation{mk("bbbb2222-0000", "web", 9, api.TaskStateRunning), mk("cccc3333-0000", "db", 7, api.TaskStateRunning), old} {
		all = append(all, ctrsOf(a)...)
	}
	web, err := findCtr(all, "web")
	if err != nil || web.Alloc.ID != "bbbb2222-0000" {
		t.Fatalf("by name: %v %v", web, err)
	}
	if web.ID != ctrID("bbbb2222-0000", "main") || len(web.ID) != 64 {
		t.Errorf("container ID %q", web.ID)
	}
	if x, err := findCtr(all, web.ID[:10]); err != nil || x != web {
		t.Errorf("by ID prefix: %v %v", x, err)
	}
	if x, err := findCtr(all, "cccc"); err != nil || x.Name != "db" {
		t.Errorf("by alloc prefix: %v %v", x, err)
	}
	if _, err := findCtr(all, "nope"); err == nil || !strings.Contains(err.Error(), "no such container") {
		t.Errorf("missing: %v", err)
	}
	// Find a one-character prefix shared by two container IDs.
	seen := map[byte]int{}
	for _, x := range all {
		seen[x.ID[0]]++
	}
	for b, n := range seen {
		if n > 1 {
			if _, err := findCtr(all, string(b)); err == nil || !strings.Contains(err.Error(), "matches") {
				t.Errorf("ambiguous prefix %q: %v", b, err)
			}
		}
	}
}

func TestHumanDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{500 * time.Millisecond, "Less than a second"},
		{time.Second, "1 second"},
		{42 * time.Second, "42 seconds"},
		{61 * time.Second, "About a minute"},
		{3 * time.Minute, "3 minutes"},
		{time.Hour, "About an hour"},
		{5 * time.Hour, "5 hours"},
		{72 * time.Hour, "3 days"},
	}
	for _, tt := range tests {
		if got := humanDuration(tt.d); got != tt.want {
			t.Errorf("humanDuration(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

// FuzzRunFlags feeds arbitrary text to the flag parsers of berth run: none
// may panic, and whatever they accept must be in range.
func FuzzRunFlags(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:53:53/udp", "[::1]:1:2", "512m", "1.5g", "count=2,model=H100,memory>=40GiB",
		"node.name=x", "rack!=r1", "on-failure:3", "data:/data:ro", "0.5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := parsePublish(s); err == nil {
			if p.To < 1 || p.To > 65535 || p.Static < 0 || p.Static > 65535 || (p.Protocol != "tcp" && p.Protocol != "udp") {
				t.Fatalf("parsePublish(%q) accepted %+v", s, p)
			}
		}
		if mb, err := parseMemoryMiB(s); err == nil && mb < 6 {
			t.Fatalf("parseMemoryMiB(%q) = %d, below the minimum", s, mb)
		}
		if g, err := parseGPUs(s); err == nil && (g.Count < 1 || g.MinMemoryMiB < 0) {
			t.Fatalf("parseGPUs(%q) = %+v", s, g)
		}
		if c, err := parseConstraint(s); err == nil && (!strings.HasPrefix(c.Attribute, "${") || (c.Operator != "=" && c.Operator != "!=")) {
			t.Fatalf("parseConstraint(%q) = %+v", s, c)
		}
		if mc, err := parseCPUs(s); err == nil && mc < 1 {
			t.Fatalf("parseCPUs(%q) = %d", s, mc)
		}
		_, _, _ = parseRestart(s)
		_ = checkVolumeSpec(s)
		_ = checkImageRef(s)
	})
}

func TestRmiLines(t *testing.T) {
	tests := []struct {
		name string
		in   api.ImageRemoveResponse
		want []string
	}{
		{"plain", api.ImageRemoveResponse{Untagged: []string{"a:1"}, Deleted: []string{"sha256:ab"}}, []string{"Untagged: a:1", "Deleted: sha256:ab"}},
		{"prefixed", api.ImageRemoveResponse{Untagged: []string{"Untagged: a:1", "Deleted: sha256:ab"}}, []string{"Untagged: a:1", "Deleted: sha256:ab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rmiLines(&tt.in); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("rmiLines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCtrStatus(t *testing.T) {
	now := time.Now()
	mk := func(client, desired string, st *api.TaskState) *ctr {
		a := &api.Allocation{ID: "a1", JobID: "web", Name: "web.main[0]", Group: "main", NodeID: "n1",
			ClientStatus: client, DesiredStatus: desired,
			Job:        &api.Job{ID: "web", Groups: []*api.Group{{Name: "main", Count: 1, Tasks: []*api.Task{{Name: "main"}}}}},
			TaskStates: map[string]*api.TaskState{"main": st}}
		return ctrsOf(a)[0]
	}
	tests := []struct {
		name, want, word string
		x                *ctr
	}{
		{"up", "Up 3 minutes", "running", mk("running", "run", &api.TaskState{State: "running", StartedAt: now.Add(-3 * time.Minute).UnixNano()})},
		{"healthy", "Up 3 minutes (healthy)", "running", mk("running", "run", &api.TaskState{State: "running", Health: "healthy", StartedAt: now.Add(-3 * time.Minute).UnixNano()})},
		{"unhealthy", "Up 3 minutes (unhealthy)", "running", mk("running", "run", &api.TaskState{State: "running", Health: "unhealthy", StartedAt: now.Add(-3 * time.Minute).UnixNano()})},
		{"health starting", "Up 3 minutes (health: starting)", "running", mk("running", "run", &api.TaskState{State: "running", Health: "starting", StartedAt: now.Add(-3 * time.Minute).UnixNano()})},
		{"stopping", "Up 2 seconds (stopping)", "running", mk("running", "stop", &api.TaskState{State: "running", StartedAt: now.Add(-2 * time.Second).UnixNano()})},
		{"exited", "Exited (3) 5 seconds ago", "exited", mk("failed", "run", &api.TaskState{State: "dead", ExitCode: 3, StartedAt: 1, FinishedAt: now.Add(-5 * time.Second).UnixNano()})},
		{"oom", "Exited (137) OOMKilled 1 second ago", "exited", mk("failed", "run", &api.TaskState{State: "dead", ExitCode: 137, OOMKilled: true, StartedAt: 1, FinishedAt: now.Add(-time.Second).UnixNano()})},
		{"never started", "Failed: image not found", "exited", mk("failed", "run", &api.TaskState{State: "dead", Failed: true, Message: "image not found"})},
		{"created", "Created", "created", mk("pending", "run", &api.TaskState{State: "pending"})},
		{"lost", "Lost", "exited", mk("lost", "run", &api.TaskState{State: "pending"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ctrStatus(tt.x); got != tt.want {
				t.Errorf("ctrStatus = %q, want %q", got, tt.want)
			}
			if got := ctrStateWord(tt.x); got != tt.word {
				t.Errorf("ctrStateWord = %q, want %q", got, tt.word)
			}
			if tt.x.Name != "web" || len(tt.x.ID) != 64 {
				t.Errorf("name %q id %q", tt.x.Name, tt.x.ID)
			}
		})
	}
}

func TestRunNetworkContainerModeAndAliases(t *testing.T) {
	f := runFlags{restart: "no", network: "container:web", networkAliases: []string{"api", "api.v1"}}
	job, err := buildRunJob(&f, "busybox", nil, func(string) bool { return false })
	if err != nil {
		t.Fatal(err)
	}
	task := job.Groups[0].Tasks[0]
	if task.Network != "container:web" || len(task.NetworkAliases) != 2 || task.NetworkAliases[1] != "api.v1" {
		t.Fatalf("network %q aliases %v", task.Network, task.NetworkAliases)
	}
}
