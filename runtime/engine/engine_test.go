package engine

import (
	"context"
	"reflect"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

func TestMergeEnv(t *testing.T) {
	tests := []struct {
		name     string
		image    []string
		task     map[string]string
		hostname string
		want     []string
	}{
		{
			name: "defaults only",
			want: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		},
		{
			name:     "image PATH wins over the default, task over the image",
			image:    []string{"PATH=/opt/bin", "LANG=C", "A=1"},
			task:     map[string]string{"A": "2", "B": "3"},
			hostname: "abc",
			want:     []string{"PATH=/opt/bin", "HOSTNAME=abc", "LANG=C", "A=2", "B=3"},
		},
		{
			name:  "values keep their equals signs",
			image: []string{"X=a=b"},
			want:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "X=a=b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeEnv(tt.image, tt.task, tt.hostname)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("mergeEnv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetupNetworkModes(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "", want: "none"},
		{in: "bridge", want: "none"},
		{in: "none", want: "none"},
		{in: "host", want: "host"},
		{in: "mynet", bad: true},
	}
	e := &Engine{}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			spec := &container.Spec{}
			err := e.setupNetwork(context.Background(), &TaskRequest{ID: "x", Task: &api.Task{Network: tt.in}}, spec)
			if tt.bad {
				if err == nil {
					t.Fatalf("network %q accepted", tt.in)
				}
				return
			}
			if err != nil || spec.Network != tt.want {
				t.Fatalf("network %q gave %q, %v; want %q", tt.in, spec.Network, err, tt.want)
			}
		})
	}
}

func TestResources(t *testing.T) {
	r := resources(api.Resources{CPU: 1500, MemoryMB: 64, PidsLimit: 20})
	if r.MemoryLimit != 64<<20 {
		t.Errorf("memory limit %d, want %d", r.MemoryLimit, 64<<20)
	}
	if r.CPUQuota != 150000 || r.CPUPeriod != 100000 {
		t.Errorf("cpu quota %d/%d, want 150000/100000", r.CPUQuota, r.CPUPeriod)
	}
	if r.CPUShares != 1536 {
		t.Errorf("cpu shares %d, want 1536", r.CPUShares)
	}
	if r.PidsLimit != 20 {
		t.Errorf("pids limit %d, want 20", r.PidsLimit)
	}
	if z := resources(api.Resources{}); z.MemoryLimit != 0 || z.CPUQuota != 0 || z.PidsLimit != 0 {
		t.Errorf("zero request gave limits: %+v", z)
	}
}

func TestPullOptionsIncludeConfiguredInsecureRegistries(t *testing.T) {
	t.Setenv("BERTH_INSECURE_REGISTRIES", "env.example:5000")
	t.Setenv("BERTH_CONFIG", t.TempDir()+"/none.json")
	e := &Engine{InsecureRegistries: []string{"127.0.0.1:5000"}}
	got := e.PullOptions().InsecureRegistries
	want := map[string]bool{"env.example:5000": true, "127.0.0.1:5000": true}
	if len(got) != len(want) {
		t.Fatalf("insecure registries %v, want %v", got, want)
	}
	for _, r := range got {
		if !want[r] {
			t.Fatalf("insecure registries %v, want %v", got, want)
		}
	}
}
