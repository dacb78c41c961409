package placement

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

func validJob() *api.Job {
	return &api.Job{Name: "web", Groups: []*api.Group{{Name: "web", Count: 3, Tasks: []*api.Task{
		{Name: "nginx", Image: "nginx:1.27", Resources: api.Resources{CPU: 500, MemoryMB: 256},
			Ports: []api.Port{{Name: "http", To: 80, Static: 8080}}},
		{Name: "side", Image: "busybox"},
	}}}}
}

func TestValidateJob(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(j *api.Job)
		want   string // substring of the error; "" means valid
	}{
		{name: "valid", mutate: func(j *api.Job) {}},
		{name: "valid after canonicalize", mutate: func(j *api.Job) { Canonicalize(j) }},
		{name: "empty name", mutate: func(j *api.Job) { j.Name = "" }, want: "name: must not be empty"},
		{name: "bad name", mutate: func(j *api.Job) { j.Name = "web server" }, want: `name: "web server" may hold only`},
		{name: "long name", mutate: func(j *api.Job) { j.Name = strings.Repeat("a", 129) }, want: "name: is 129 characters long"},
		{name: "id differs", mutate: func(j *api.Job) { j.ID = "other" }, want: "id: must equal name"},
		{name: "bad type", mutate: func(j *api.Job) { j.Type = "daemon" }, want: `type: "daemon" is not a job type`},
		{name: "priority high", mutate: func(j *api.Job) { j.Priority = 101 }, want: "priority: 101 is out of range 1..100"},
		{name: "priority negative", mutate: func(j *api.Job) { j.Priority = -1 }, want: "priority: -1 is out of range"},
		{name: "no groups", mutate: func(j *api.Job) { j.Groups = nil }, want: "groups: at least one group is required"},
		{name: "duplicate group", mutate: func(j *api.Job) {
			g := *j.Groups[0]
			j.Groups = append(j.Groups, &g)
		}, want: `groups[1].name: "web" is also the name of groups[0]`},
		{name: "duplicate task", mutate: func(j *api.Job) { j.Groups[0].Tasks[1].Name = "nginx" }, want: `groups[0].tasks[1].name: "nginx" is also the name of groups[0].tasks[0]`},
		{name: "count negative", mutate: func(j *api.Job) { j.Groups[0].Count = -1 }, want: "groups[0].count: -1 is out of range 0..10000"},
		{name: "count huge", mutate: func(j *api.Job) { j.Groups[0].Count = 10001 }, want: "groups[0].count: 10001 is out of range"},
		{name: "no tasks", mutate: func(j *api.Job) { j.Groups[0].Tasks = nil }, want: "groups[0].tasks: at least one task is required"},
		{name: "bad userns", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Userns = "remap" }, want: `groups[0].tasks[0].userns: "remap" is not a user namespace mode`},
		{name: "userns private", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Userns = "private" }},
		{name: "seccomp not json", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Seccomp = "/etc/profile.json" }, want: "groups[0].tasks[0].seccomp: must be unconfined or a seccomp profile"},
		{name: "seccomp broken json", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Seccomp = `{"defaultAction":` }, want: "tasks[0].seccomp: must be unconfined"},
		{name: "seccomp profile", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Seccomp = `{"defaultAction":"SCMP_ACT_ERRNO"}` }},
		{name: "seccomp unconfined", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Seccomp = "unconfined" }},
		{name: "seccomp huge", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Seccomp = "{" + strings.Repeat(" ", MaxSeccompProfile) + "}" }, want: "tasks[0].seccomp: the profile is"},
		{name: "tmpfs relative", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Tmpfs = []string{"run:size=1m"} }, want: `groups[0].tasks[0].tmpfs[0]: "run:size=1m": the path must be absolute`},
		{name: "tmpfs root", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Tmpfs = []string{"/"} }, want: "tmpfs[0]"},
		{name: "tmpfs ok", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Tmpfs = []string{"/run:size=64m,mode=1777"} }},
		{name: "empty image", mutate: func(j *api.Job) { j.Groups[0].Tasks[1].Image = " " }, want: "groups[0].tasks[1].image: must not be empty"},
		{name: "negative memory", mutate: func(j *api.Job) { j.Groups[0].Tasks[1].Resources.MemoryMB = -5 }, want: "groups[0].tasks[1].resources.memory: must be >= 0"},
		{name: "negative cpu", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Resources.CPU = -1 }, want: "groups[0].tasks[0].resources.cpu: must be >= 0"},
		{name: "negative gpus", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: -1} }, want: "groups[0].tasks[0].resources.gpus.count: must be >= 0"},
		{name: "bad gpu regexp", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: 1, Model: "H100("} }, want: "resources.gpus.model"},
		{name: "bad topology", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Count: 2, Topology: "pcie"} }, want: "resources.gpus.topology"},
		{name: "bad operator", mutate: func(j *api.Job) {
			j.Constraints = []api.Constraint{{Attribute: "${node.label.rack}", Operator: "~=", Value: "r1"}}
		}, want: `constraints[0].operator: unknown operator "~="`},
		{name: "bad regexp", mutate: func(j *api.Job) {
			j.Groups[0].Constraints = []api.Constraint{{Attribute: "${attr.kernel.name}", Operator: "regexp", Value: "lin(ux"}}
		}, want: "groups[0].constraints[0].operator: regexp \"lin(ux\" does not compile"},
		{name: "bad version", mutate: func(j *api.Job) {
			j.Constraints = []api.Constraint{{Attribute: "${attr.kernel.version}", Operator: "version", Value: ">= banana"}}
		}, want: "constraints[0].operator: version constraint"},
		{name: "unknown attribute", mutate: func(j *api.Job) {
			j.Constraints = []api.Constraint{{Attribute: "${node.rack}", Operator: "=", Value: "r1"}}
		}, want: `constraints[0].attribute: "${node.rack}" is not an attribute`},
		{name: "distinct_hosts needs nothing", mutate: func(j *api.Job) {
			j.Constraints = []api.Constraint{{Operator: "distinct_hosts"}}
		}},
		{name: "bad port to", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Ports[0].To = 0 }, want: "groups[0].tasks[0].ports[0].to: 0 is not a port number"},
		{name: "bad static port", mutate: func(j *api.Job) { j.Groups[0].Tasks[0].Ports[0].Static = 70000 }, want: "ports[0].static: 70000 is not a port number"},
		{name: "duplicate static port", mutate: func(j *api.Job) {
			j.Groups[0].Tasks[1].Ports = []api.Port{{To: 81, Static: 8080}}
		}, want: "groups[0].tasks[1].ports[0].static: host port 8080/tcp is already taken by groups[0].tasks[0].ports[0]"},
		{name: "same static port other protocol", mutate: func(j *api.Job) {
			j.Groups[0].Tasks[1].Ports = []api.Port{{To: 81, Static: 8080, Protocol: "udp"}}
		}},
		{name: "bad restart mode", mutate: func(j *api.Job) { j.Groups[0].Restart = &api.RestartPolicy{Mode: "always"} }, want: `groups[0].restart.mode: "always" is not a restart mode`},
		{name: "negative reschedule attempts", mutate: func(j *api.Job) { j.Groups[0].Reschedule = &api.ReschedulePolicy{Attempts: -1} }, want: `groups[0].reschedule.attempts: must be >= 0`},
		{name: "affinity weight", mutate: func(j *api.Job) {
			j.Affinities = []api.Affinity{{Attribute: "${node.label.rack}", Value: "r1", Weight: 200}}
		}, want: "affinities[0].weight: 200 is out of range"},
		{name: "several problems", mutate: func(j *api.Job) { j.Name = ""; j.Groups[0].Count = -1 }, want: "name: must not be empty; groups[0].count"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.mutate(j)
			err := ValidateJob(j)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("ValidateJob: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("ValidateJob = nil, want %q", tc.want)
			}
			if !errors.Is(err, ErrInvalidJob) {
				t.Errorf("error %v does not match ErrInvalidJob", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	if err := ValidateJob(nil); err == nil {
		t.Error("ValidateJob(nil) = nil")
	}
}

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name  string
		typ   string
		check func(t *testing.T, j *api.Job)
	}{
		{name: "service defaults", typ: "", check: func(t *testing.T, j *api.Job) {
			g, task := j.Groups[0], j.Groups[0].Tasks[1]
			if j.ID != "web" || j.Type != api.JobTypeService || j.Priority != 50 || len(j.Datacenters) != 1 || j.Datacenters[0] != "dc1" {
				t.Errorf("job defaults: id %q type %q priority %d dcs %v", j.ID, j.Type, j.Priority, j.Datacenters)
			}
			want := api.RestartPolicy{Attempts: 2, Interval: api.Duration(30 * time.Minute), Delay: api.Duration(15 * time.Second), Mode: "fail"}
			if *g.Restart != want {
				t.Errorf("restart %+v, want %+v", *g.Restart, want)
			}
			if task.Resources.CPU != 100 || task.Resources.MemoryMB != 128 {
				t.Errorf("task resources %+v, want cpu 100 memory 128", task.Resources)
			}
			if r := j.Groups[0].Tasks[0].Resources; r.CPU != 500 || r.MemoryMB != 256 {
				t.Errorf("set resources changed: %+v", r)
			}
			if j.Groups[0].Tasks[0].Ports[0].Protocol != "tcp" {
				t.Errorf("port protocol %q, want tcp", j.Groups[0].Tasks[0].Ports[0].Protocol)
			}
		}},
		{name: "batch restart", typ: "batch", check: func(t *testing.T, j *api.Job) {
			want := api.RestartPolicy{Attempts: 3, Interval: api.Duration(24 * time.Hour), Delay: api.Duration(15 * time.Second), Mode: "fail"}
			if *j.Groups[0].Restart != want {
				t.Errorf("restart %+v, want %+v", *j.Groups[0].Restart, want)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			j.Type = tc.typ
			j.Groups[0].Count = 0
			Canonicalize(j)
			if j.Groups[0].Count != 1 {
				t.Errorf("count %d, want 1", j.Groups[0].Count)
			}
			tc.check(t, j)
			if err := ValidateJob(j); err != nil {
				t.Errorf("canonical job does not validate: %v", err)
			}
		})
	}
	t.Run("gpu count defaults to 1 only when something is asked", func(t *testing.T) {
		j := validJob()
		j.Groups[0].Tasks[0].Resources.GPUs = &api.GPURequest{Model: "H100"}
		j.Groups[0].Tasks[1].Resources.GPUs = &api.GPURequest{}
		Canonicalize(j)
		if g := j.Groups[0].Tasks[0].Resources.GPUs; g == nil || g.Count != 1 {
			t.Errorf("gpus %+v, want count 1", g)
		}
		if g := j.Groups[0].Tasks[1].Resources.GPUs; g != nil {
			t.Errorf("empty gpus %+v, want nil", g)
		}
	})
}
