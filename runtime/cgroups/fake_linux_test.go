package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf/asm"
)

// Unit tests of the v1 and v2 logic against fake cgroupfs trees of plain
// files, pre-filled the way the kernel fills a fresh cgroup.

func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readTree(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return string(b)
}

func absent(t *testing.T, root, p string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(root, p)); !os.IsNotExist(err) {
		t.Errorf("%s was written (%v)", p, err)
	}
}

// fakeV2 makes a v2 root as a fresh unified host has it.
func fakeV2(t *testing.T, controllers string) (string, *v2Manager, *[]attachCall) {
	t.Helper()
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"cgroup.controllers":     controllers + "\n",
		"cgroup.subtree_control": "",
		"cgroup.procs":           "1\n",
	})
	m, err := NewV2(root)
	if err != nil {
		t.Fatal(err)
	}
	v2 := m.(*v2Manager)
	calls := &[]attachCall{}
	v2.attachDevices = func(dir string, insts asm.Instructions) error {
		*calls = append(*calls, attachCall{dir, insts})
		return nil
	}
	return root, v2, calls
}

type attachCall struct {
	dir   string
	insts asm.Instructions
}

func TestV2FakeCreate(t *testing.T) {
	full := "cpuset cpu io memory pids"
	tests := []struct {
		name        string
		controllers string
		pre         map[string]string // extra files before Create
		r           *Resources
		want        map[string]string // file -> content after Create
		absent      []string
		wantErr     error
	}{
		{
			name:        "all limits",
			controllers: full,
			r: &Resources{MemoryLimit: 256 << 20, CPUQuota: 150000, CPUPeriod: 100000, CPUShares: 512,
				PidsLimit: 100, CpusetCpus: "0-1", CpusetMems: "0"},
			want: map[string]string{
				"cgroup.subtree_control":       "+cpuset +cpu +memory +pids",
				"berth/cgroup.subtree_control": "+cpuset +cpu +memory +pids",
				"berth/c1/memory.max":          "268435456",
				"berth/c1/cpu.max":             "150000 100000",
				"berth/c1/cpu.weight":          "20",
				"berth/c1/pids.max":            "100",
				"berth/c1/cpuset.cpus":         "0-1",
				"berth/c1/cpuset.mems":         "0",
			},
		},
		{
			name:        "no limits",
			controllers: full,
			r:           &Resources{},
			want: map[string]string{
				"berth/c1/memory.max": "max",
				"berth/c1/cpu.max":    "max 100000",
				"berth/c1/cpu.weight": "100",
				"berth/c1/pids.max":   "max",
			},
			absent: []string{"berth/c1/cpuset.cpus", "berth/c1/cpuset.mems"},
		},
		{
			name:        "cpus 0.5 default period",
			controllers: full,
			r:           &Resources{CPUQuota: 50000},
			want:        map[string]string{"berth/c1/cpu.max": "50000 100000"},
		},
		{
			name:        "only what the kernel offers is enabled",
			controllers: "cpu memory io",
			r:           &Resources{MemoryLimit: 1 << 20},
			want: map[string]string{
				"cgroup.subtree_control":       "+cpu +memory",
				"berth/cgroup.subtree_control": "+cpu +memory",
				"berth/c1/memory.max":          "1048576",
			},
			absent: []string{"berth/c1/pids.max"},
		},
		{
			name:        "limit of a missing controller is refused",
			controllers: "cpu memory",
			r:           &Resources{PidsLimit: 10},
			wantErr:     ErrNotSupported,
			absent:      []string{"berth/c1"},
		},
		{
			name:        "already delegated: nothing rewritten",
			controllers: full,
			pre:         map[string]string{"cgroup.subtree_control": "cpuset cpu io memory pids\n"},
			r:           &Resources{},
			want:        map[string]string{"cgroup.subtree_control": "cpuset cpu io memory pids\n"},
		},
		{
			name:        "berth's controllers come from its cgroup.controllers",
			controllers: full,
			pre:         map[string]string{"berth/cgroup.controllers": "memory pids\n"},
			r:           &Resources{CPUShares: 2048},
			wantErr:     ErrNotSupported,
		},
		{
			name:        "negative limit",
			controllers: full,
			r:           &Resources{MemoryLimit: -5},
			absent:      []string{"berth/c1"},
			wantErr:     errors.New("negative"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, m, calls := fakeV2(t, tt.controllers)
			writeTree(t, root, tt.pre)
			cg, err := m.Create("c1", tt.r)
			if tt.wantErr != nil {
				if err == nil || (!errors.Is(err, tt.wantErr) && !strings.Contains(err.Error(), tt.wantErr.Error())) {
					t.Fatalf("Create = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for f, want := range tt.want {
				if got := readTree(t, root, f); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			for _, f := range tt.absent {
				absent(t, root, f)
			}
			if tt.wantErr != nil {
				return
			}
			if cg.Name() != "c1" || cg.(Pather).Path("memory") != filepath.Join(root, "berth", "c1") {
				t.Errorf("Name/Path = %q, %q", cg.Name(), cg.(Pather).Path("memory"))
			}
			want, _ := DeviceProgram(DefaultDevices())
			if len(*calls) != 1 || (*calls)[0].dir != filepath.Join(root, "berth", "c1") || !reflect.DeepEqual((*calls)[0].insts, want) {
				t.Errorf("device filter attach calls = %d, want one with Docker's defaults on berth/c1", len(*calls))
			}
		})
	}
}

func TestV2FakeUpdateKillDelete(t *testing.T) {
	root, m, calls := fakeV2(t, "cpuset cpu io memory pids")
	cg, err := m.Create("c1", &Resources{MemoryLimit: 1 << 30, CPUQuota: 200000, PidsLimit: 5})
	if err != nil {
		t.Fatal(err)
	}
	// Update replaces all limits; nil Devices keeps the filter.
	if err := cg.Update(&Resources{MemoryLimit: 512 << 20}); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{"memory.max": "536870912", "cpu.max": "max 100000", "pids.max": "max"} {
		if got := readTree(t, root, "berth/c1/"+f); got != want {
			t.Errorf("after Update %s = %q, want %q", f, got, want)
		}
	}
	if len(*calls) != 1 {
		t.Errorf("Update without Devices attached a filter (%d calls)", len(*calls))
	}
	rules := []DeviceRule{{Type: 'a'}, {Type: 'c', Major: 1, Minor: 3, Access: "rw", Allow: true}}
	if err := cg.Update(&Resources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	want, _ := DeviceProgram(rules)
	if len(*calls) != 2 || !reflect.DeepEqual((*calls)[1].insts, want) {
		t.Errorf("Update with Devices: %d attach calls", len(*calls))
	}
	if err := cg.Update(&Resources{Devices: []DeviceRule{{Type: 'c', Access: "q"}}}); err == nil {
		t.Error("Update accepted a bad device rule")
	}

	// Add, Pids.
	if err := cg.Add(4242); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, root, "berth/c1/cgroup.procs"); got != "4242" {
		t.Errorf("cgroup.procs = %q", got)
	}
	if err := cg.Add(0); err == nil {
		t.Error("Add(0) succeeded")
	}
	writeTree(t, root, map[string]string{"berth/c1/cgroup.procs": "12\n34\n"})
	if pids, err := cg.Pids(); err != nil || !slices.Equal(pids, []int{12, 34}) {
		t.Errorf("Pids() = %v, %v", pids, err)
	}
	if err := cg.Delete(); !errors.Is(err, ErrBusy) {
		t.Errorf("Delete with pids = %v, want ErrBusy", err)
	}

	// Kill through cgroup.kill.
	writeTree(t, root, map[string]string{"berth/c1/cgroup.procs": "", "berth/c1/cgroup.kill": ""})
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, root, "berth/c1/cgroup.kill"); got != "1" {
		t.Errorf("cgroup.kill = %q, want 1", got)
	}
	// Kill through the freezer where cgroup.kill is missing (< 5.14).
	os.Remove(filepath.Join(root, "berth/c1/cgroup.kill"))
	writeTree(t, root, map[string]string{"berth/c1/cgroup.freeze": "0", "berth/c1/cgroup.events": "populated 0\nfrozen 1\n"})
	if err := cg.Kill(); err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, root, "berth/c1/cgroup.freeze"); got != "0" {
		t.Errorf("cgroup.freeze after Kill = %q, want thawed", got)
	}

	// Load, Delete, Load.
	if _, err := m.Load("c1"); err != nil {
		t.Fatal(err)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	absent(t, root, "berth/c1")
	if err := cg.Delete(); err != nil {
		t.Errorf("second Delete = %v", err)
	}
	if _, err := m.Load("c1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load after Delete = %v", err)
	}
	if err := cg.Kill(); err != nil {
		t.Errorf("Kill of a deleted cgroup = %v", err)
	}
}

func TestV2FakeStats(t *testing.T) {
	tests := []struct {
		name    string
		files   map[string]string
		want    Stats
		wantErr bool
	}{
		{
			name: "all files",
			files: map[string]string{
				"memory.current": "1234\n", "memory.peak": "5678\n", "memory.max": "268435456\n",
				"cpu.stat":     "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 0\n",
				"pids.current": "3\n", "pids.max": "max\n",
				"memory.events": "low 0\nhigh 0\nmax 12\noom 4\noom_kill 3\noom_group_kill 0\n",
			},
			want: Stats{MemoryUsage: 1234, MemoryMaxUsage: 5678, MemoryLimit: 256 << 20, CPUUsageNanos: 2500000, Pids: 3, OOMKills: 3},
		},
		{
			name: "kernel without memory.peak, no limits",
			files: map[string]string{
				"memory.current": "4096\n", "memory.max": "max\n", "cpu.stat": "usage_usec 7\n",
				"pids.current": "1\n", "pids.max": "64\n", "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
			},
			want: Stats{MemoryUsage: 4096, CPUUsageNanos: 7000, Pids: 1, PidsLimit: 64},
		},
		{
			name:  "controllers absent",
			files: map[string]string{"cgroup.procs": ""},
			want:  Stats{},
		},
		{
			name:    "garbage",
			files:   map[string]string{"memory.current": "lots\n"},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, m, _ := fakeV2(t, "")
			if _, err := m.Create("c1", nil); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(root, "berth", "c1")
			for _, f := range []string{"memory.max", "pids.max", "cpu.max", "cpu.weight"} {
				os.Remove(filepath.Join(dir, f)) // no controller enabled: none written
			}
			writeTree(t, dir, tt.files)
			cg, err := m.Load("c1")
			if err != nil {
				t.Fatal(err)
			}
			st, err := cg.Stats()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Stats() = %+v, want an error", st)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if *st != tt.want {
				t.Fatalf("Stats() = %+v\nwant      %+v", *st, tt.want)
			}
			if n, err := cg.OOMKills(); err != nil || n != tt.want.OOMKills {
				t.Fatalf("OOMKills() = %d, %v", n, err)
			}
		})
	}
}

func TestNewV2RefusesNonCgroup2(t *testing.T) {
	if _, err := NewV2(t.TempDir()); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("NewV2(empty dir) = %v", err)
	}
	if _, err := NewV1(t.TempDir()); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("NewV1(empty dir) = %v", err)
	}
}

func TestInvalidNames(t *testing.T) {
	_, m, _ := fakeV2(t, "memory")
	for _, name := range []string{"", ".", "..", "a/b", "../x", "a\x00b"} {
		t.Run(name, func(t *testing.T) {
			if _, err := m.Create(name, nil); err == nil {
				t.Errorf("Create(%q) succeeded", name)
			}
			if _, err := m.Load(name); err == nil {
				t.Errorf("Load(%q) succeeded", name)
			}
		})
	}
}

// fakeV1 makes per-controller hierarchies as a v1 host mounts them.
func fakeV1(t *testing.T, controllers ...string) (string, Manager) {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{}
	for _, c := range controllers {
		files[c+"/cgroup.procs"] = "1\n"
	}
	if slices.Contains(controllers, "cpuset") {
		files["cpuset/cpuset.cpus"] = "0-3\n"
		files["cpuset/cpuset.mems"] = "0\n"
	}
	writeTree(t, root, files)
	m, err := NewV1(root)
	if err != nil {
		t.Fatal(err)
	}
	return root, m
}

func TestV1FakeCreate(t *testing.T) {
	all := v1Controllers
	tests := []struct {
		name        string
		controllers []string
		r           *Resources
		want        map[string]string
		absent      []string
		wantErr     error
	}{
		{
			name:        "all limits",
			controllers: all,
			r:           &Resources{MemoryLimit: 64 << 20, CPUQuota: 150000, CPUShares: 512, PidsLimit: 20, CpusetCpus: "1", CpusetMems: "0"},
			want: map[string]string{
				"memory/berth/c1/memory.limit_in_bytes": "67108864",
				"cpu/berth/c1/cpu.cfs_period_us":        "100000",
				"cpu/berth/c1/cpu.cfs_quota_us":         "150000",
				"cpu/berth/c1/cpu.shares":               "512",
				"pids/berth/c1/pids.max":                "20",
				"cpuset/berth/cpuset.cpus":              "0-3", // copied into the parent
				"cpuset/berth/cpuset.mems":              "0",
				"cpuset/berth/c1/cpuset.cpus":           "1",
				"cpuset/berth/c1/cpuset.mems":           "0",
				"devices/berth/c1/devices.allow":        "c 10:200 rwm", // the last allow rule
				"devices/berth/c1/devices.deny":         "c 10:229 rwm", // the last deny rule
			},
		},
		{
			name:        "no limits: cpuset copied, limits lifted",
			controllers: all,
			r:           nil,
			want: map[string]string{
				"memory/berth/c1/memory.limit_in_bytes": "-1",
				"cpu/berth/c1/cpu.cfs_quota_us":         "-1",
				"cpu/berth/c1/cpu.shares":               "1024",
				"pids/berth/c1/pids.max":                "max",
				"cpuset/berth/c1/cpuset.cpus":           "0-3",
			},
		},
		{
			name:        "missing controller refused",
			controllers: []string{"memory", "pids"},
			r:           &Resources{CPUQuota: 1000},
			wantErr:     ErrNotSupported,
			absent:      []string{"memory/berth/c1"},
		},
		{
			name:        "missing controllers skipped",
			controllers: []string{"memory", "pids"},
			r:           &Resources{MemoryLimit: 1 << 20},
			want:        map[string]string{"memory/berth/c1/memory.limit_in_bytes": "1048576", "pids/berth/c1/pids.max": "max"},
			absent:      []string{"cpu"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, m := fakeV1(t, tt.controllers...)
			cg, err := m.Create("c1", tt.r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Create = %v, want %v", err, tt.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			for f, want := range tt.want {
				if got := readTree(t, root, f); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			for _, f := range tt.absent {
				absent(t, root, f)
			}
			if cg == nil {
				return
			}
			if err := cg.Add(77); err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.controllers {
				if got := readTree(t, root, c+"/berth/c1/cgroup.procs"); got != "77" {
					t.Errorf("%s cgroup.procs = %q", c, got)
				}
			}
			if err := cg.Delete(); !errors.Is(err, ErrBusy) {
				t.Errorf("Delete with a pid = %v, want ErrBusy", err)
			}
			for _, c := range tt.controllers {
				writeTree(t, root, map[string]string{c + "/berth/c1/cgroup.procs": ""})
			}
			if err := cg.Delete(); err != nil {
				t.Fatal(err)
			}
			for _, c := range tt.controllers {
				absent(t, root, c+"/berth/c1")
			}
		})
	}
}

func TestV1FakeStatsAndOOM(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  Stats
	}{
		{
			name: "kernel with oom_kill",
			files: map[string]string{
				"memory/berth/c1/memory.usage_in_bytes":     "1000\n",
				"memory/berth/c1/memory.max_usage_in_bytes": "2000\n",
				"memory/berth/c1/memory.limit_in_bytes":     "9223372036854771712\n",
				"memory/berth/c1/memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
				"memory/berth/c1/memory.failcnt":            "9\n",
				"cpuacct/berth/c1/cpuacct.usage":            "123456789\n",
				"pids/berth/c1/pids.current":                "4\n",
				"pids/berth/c1/pids.max":                    "max\n",
			},
			want: Stats{MemoryUsage: 1000, MemoryMaxUsage: 2000, CPUUsageNanos: 123456789, Pids: 4, OOMKills: 2},
		},
		{
			name: "old kernel: failcnt fallback",
			files: map[string]string{
				"memory/berth/c1/memory.limit_in_bytes": "1048576\n",
				"memory/berth/c1/memory.oom_control":    "oom_kill_disable 0\nunder_oom 0\n",
				"memory/berth/c1/memory.failcnt":        "5\n",
				"pids/berth/c1/pids.max":                "10\n",
			},
			want: Stats{MemoryLimit: 1 << 20, PidsLimit: 10, OOMKills: 1},
		},
		{
			name: "old kernel, limit never hit",
			files: map[string]string{
				"memory/berth/c1/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n",
				"memory/berth/c1/memory.failcnt":     "0\n",
			},
			want: Stats{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root, m := fakeV1(t, "memory", "cpuacct", "pids")
			if err := os.MkdirAll(filepath.Join(root, "memory/berth/c1"), 0o755); err != nil {
				t.Fatal(err)
			}
			writeTree(t, root, tt.files)
			cg, err := m.Load("c1")
			if err != nil {
				t.Fatal(err)
			}
			st, err := cg.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if *st != tt.want {
				t.Fatalf("Stats() = %+v\nwant      %+v", *st, tt.want)
			}
		})
	}
}

// TestV1FakeJoinedHierarchies covers hosts that mount cpu and cpuacct as
// one hierarchy "cpu,cpuacct" with two symlinks to it.
func TestV1FakeJoinedHierarchies(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{"cpu,cpuacct/cgroup.procs": "", "memory/cgroup.procs": ""})
	for _, l := range []string{"cpu", "cpuacct"} {
		if err := os.Symlink("cpu,cpuacct", filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewV1(root)
	if err != nil {
		t.Fatal(err)
	}
	cg, err := m.Create("c1", &Resources{CPUQuota: 20000})
	if err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, root, "cpu,cpuacct/berth/c1/cpu.cfs_quota_us"); got != "20000" {
		t.Errorf("cpu.cfs_quota_us = %q", got)
	}
	if got := len(cg.(*v1Cgroup).unique()); got != 2 {
		t.Errorf("%d distinct directories, want 2 (memory, cpu,cpuacct)", got)
	}
	writeTree(t, root, map[string]string{"cpu,cpuacct/berth/c1/cpuacct.usage": "99\n"})
	if st, err := cg.Stats(); err != nil || st.CPUUsageNanos != 99 {
		t.Errorf("Stats() = %+v, %v", st, err)
	}
	if err := cg.Delete(); err != nil {
		t.Fatal(err)
	}
	absent(t, root, "cpu,cpuacct/berth/c1")
	absent(t, root, "memory/berth/c1")
}

func TestCheckBeforeWriting(t *testing.T) {
	tests := []struct {
		name string
		r    *Resources
	}{
		{"negative memory", &Resources{MemoryLimit: -1}},
		{"quota below 1ms", &Resources{CPUQuota: 999}},
		{"period too long", &Resources{CPUQuota: 5000, CPUPeriod: 2000000}},
		{"bad device rule", &Resources{MemoryLimit: 1 << 20, Devices: []DeviceRule{{Type: 'c', Major: 1, Minor: 3, Access: "x"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root1, m1 := fakeV1(t, "memory", "cpu", "devices")
			root2, m2, _ := fakeV2(t, "cpu memory")
			for i, m := range []Manager{m1, m2} {
				if _, err := m.Create("c1", tt.r); err == nil {
					t.Fatalf("v%d Create accepted %+v", m.Version(), tt.r)
				}
				root := []string{root1, root2}[i]
				cgDir := map[int]string{1: "memory/berth/c1", 2: "berth/c1"}[m.Version()]
				absent(t, root, cgDir)
				cg, err := m.Create("c2", nil)
				if err != nil {
					t.Fatal(err)
				}
				before := readTree(t, root, filepath.Join(filepath.Dir(cgDir), "c2", map[int]string{1: "memory.limit_in_bytes", 2: "memory.max"}[m.Version()]))
				if err := cg.Update(tt.r); err == nil {
					t.Fatalf("v%d Update accepted %+v", m.Version(), tt.r)
				}
				after := readTree(t, root, filepath.Join(filepath.Dir(cgDir), "c2", map[int]string{1: "memory.limit_in_bytes", 2: "memory.max"}[m.Version()]))
				if before != after {
					t.Errorf("v%d: a refused Update changed the memory limit %q -> %q", m.Version(), before, after)
				}
			}
		})
	}
	// Update checks controllers too.
	_, m := fakeV1(t, "memory")
	cg, err := m.Create("c1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Update(&Resources{PidsLimit: 3}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("v1 Update with an unmounted pids controller = %v", err)
	}
}
