package jobspec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// designExample is the job spec of DESIGN.md, verbatim.
const designExample = `name: web
type: service            # service | batch | system
priority: 50
datacenters: [dc1]
constraints:
  - {attribute: "${node.label.rack}", operator: "=", value: "r1"}
groups:
  - name: web
    count: 3
    restart: {attempts: 2, interval: 30m, delay: 15s, mode: fail}
    tasks:
      - name: nginx
        image: nginx:1.27
        command: ["nginx", "-g", "daemon off;"]   # replaces the image's Cmd
        entrypoint: []                            # replaces the image's Entrypoint
        env: {KEY: value}
        resources: {cpu: 500, memory: 256, gpus: {count: 1, model: "H100"}}
        ports: [{name: http, to: 80, static: 8080}]
        volumes: ["data:/var/lib/data"]
`

func TestDesignExample(t *testing.T) {
	job, err := Parse([]byte(designExample), ".yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &api.Job{
		Name: "web", Type: "service", Priority: 50, Datacenters: []string{"dc1"},
		Constraints: []api.Constraint{{Attribute: "${node.label.rack}", Operator: "=", Value: "r1"}},
		Groups: []*api.Group{{
			Name: "web", Count: 3,
			Restart: &api.RestartPolicy{Attempts: 2, Interval: api.Duration(30 * time.Minute), Delay: api.Duration(15 * time.Second), Mode: "fail"},
			Tasks: []*api.Task{{
				Name: "nginx", Image: "nginx:1.27",
				Command:    []string{"nginx", "-g", "daemon off;"},
				Entrypoint: []string{},
				Env:        map[string]string{"KEY": "value"},
				Resources:  api.Resources{CPU: 500, MemoryMB: 256, GPUs: &api.GPURequest{Count: 1, Model: "H100"}},
				Ports:      []api.Port{{Name: "http", To: 80, Static: 8080}},
				Volumes:    []string{"data:/var/lib/data"},
			}},
		}},
	}
	if !reflect.DeepEqual(job, want) {
		got, _ := json.Marshal(job)
		exp, _ := json.Marshal(want)
		t.Fatalf("parsed\n%s\nwant\n%s", got, exp)
	}
	// The same job as JSON parses to the same struct.
	js, _ := json.Marshal(want)
	job2, err := Parse(js, ".json")
	if err != nil || !reflect.DeepEqual(job2, want) {
		t.Fatalf("JSON round trip: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, ext, spec string
		want            string // substring of the error
	}{
		{"unknown top-level field", ".yaml", "name: a\nnmae: b\ngroups: []\n", `unknown field "nmae" at the top level`},
		{"unknown nested field", ".yaml", "name: a\ngroups:\n- name: g\n  tasks:\n  - name: t\n    image: x\n    resources: {cpu: 1, memroy: 5}\n",
			`unknown field "memroy" in groups[0].tasks[0].resources`},
		{"unknown field json", ".json", `{"name":"a","groups":[{"name":"g","cont":2}]}`, `unknown field "cont" in groups[0]`},
		{"wrong type", ".yaml", "name: a\ngroups:\n- name: g\n  count: three\n", "groups.count: want an integer, got string"},
		{"bad duration", ".yaml", "name: a\ngroups:\n- name: g\n  restart: {attempts: 1, delay: soon}\n", `invalid duration "soon"`},
		{"json syntax", ".json", "{\"name\": \"a\",\n \"groups\": [}", "syntax error at line 2"},
		{"trailing data", ".json", `{"name":"a"} {"name":"b"}`, "unexpected data after the job"},
		{"not an object", ".yaml", "- a\n- b\n", "top level must be an object"},
		{"empty", ".yaml", "  \n", "empty"},
		{"no name", ".yaml", "groups: []\n", "name is required"},
		{"yaml syntax", ".yaml", "name: [a\n", "job spec:"},
		{"duplicate key", ".yaml", "name: a\nname: b\n", "already"},
		{"bad extension", ".toml", "name = 'a'", "unknown job file format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.spec), tt.ext)
			if err == nil {
				t.Fatalf("Parse accepted %q", tt.spec)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			if tt.ext != ".toml" && !errors.Is(err, api.ErrJobSpec) {
				t.Fatalf("error %v is not ErrJobSpec", err)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, file, content string
		wantErr             string
	}{
		{"yaml", "a.yaml", "name: a\n", ""},
		{"yml", "a.yml", "name: a\n", ""},
		{"json", "a.json", `{"name":"a"}`, ""},
		{"no extension yaml", "jobfile", "name: a\n", ""},
		{"no extension json", "jobjson", `{"name":"a"}`, ""},
		{"error names file", "bad.yaml", "name: a\nbogus: 1\n", "bad.yaml: job spec: unknown field \"bogus\""},
		{"missing", "", "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, "missing.yaml")
			if tt.file != "" {
				p = filepath.Join(dir, tt.file)
				if err := os.WriteFile(p, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			job, err := ParseFile(p)
			if tt.wantErr == "" {
				if err != nil || job.Name != "a" {
					t.Fatalf("ParseFile = %v, %v", job, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := ParseFile(dir); err == nil || !strings.Contains(err.Error(), "directory") {
		t.Fatalf("ParseFile(dir) = %v", err)
	}
}

// FuzzParse feeds arbitrary bytes to both formats: the parser never panics,
// and a job it accepts survives a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(designExample), true)
	f.Add([]byte(`{"name":"a","groups":[{"name":"g","count":1,"tasks":[{"name":"t","image":"busybox","entrypoint":null}]}]}`), false)
	f.Add([]byte("name: a\ngroups:\n- name: g\n  restart: {delay: 5s}\n"), true)
	f.Add([]byte(`{"name":"a","NAME":"b"}`), false)
	f.Fuzz(func(t *testing.T, data []byte, yamlFormat bool) {
		ext := ".json"
		if yamlFormat {
			ext = ".yaml"
		}
		job, err := Parse(data, ext)
		if err != nil {
			if !errors.Is(err, api.ErrJobSpec) {
				t.Fatalf("error %v is not ErrJobSpec", err)
			}
			return
		}
		b1, err := json.Marshal(job)
		if err != nil {
			t.Fatalf("marshal accepted job: %v", err)
		}
		job2, err := api.DecodeJob(b1)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b1, err)
		}
		b2, _ := json.Marshal(job2)
		if string(b1) != string(b2) {
			t.Fatalf("round trip changed the job:\n%s\n%s", b1, b2)
		}
	})
}
