package scheduler

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// startWithSecretsKey starts a leader whose data directory has a secrets
// key.
func startWithSecretsKey(t *testing.T) (*Server, *api.Client) {
	t.Helper()
	return startLeader(t, func(c *Config) {
		if err := GenerateSecretsKey(filepath.Join(c.DataDir, "server", secretKeyFile)); err != nil {
			t.Fatal(err)
		}
	})
}

func rawGet(t *testing.T, s *Server, path string) string {
	t.Helper()
	resp, err := http.Get("http://" + s.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	return string(b)
}

// TestSecretsSealedAndHandedToTheNode stores a secret and runs a job that
// mounts it: Raft (state and files) holds it sealed, only the node's
// allocation feed carries the value, and no other route shows it.
func TestSecretsSealedAndHandedToTheNode(t *testing.T) {
	s, c := startWithSecretsKey(t)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	const value = "pa55-w0rd-in-the-clear"
	if _, err := c.Secrets().Create("db-pw", []byte(value)); err != nil {
		t.Fatal(err)
	}
	sec, err := s.raft.State().SecretByName(nil, "db-pw")
	if err != nil || sec == nil || bytes.Contains(sec.Sealed, []byte(value)) {
		t.Fatalf("stored secret = %+v, %v", sec, err)
	}
	if list, err := c.Secrets().List(); err != nil || len(list) != 1 || list[0].Name != "db-pw" {
		t.Fatalf("list = %v, %v", list, err)
	}

	job := simpleJob("app", 1, 100, 64)
	job.Groups[0].Tasks[0].Secrets = []api.TaskSecret{{Name: "db-pw"}, {Name: "db-pw", Target: "/etc/pw"}}
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	waitLive(t, c, "app", 1)
	allocs, _, err := c.Nodes().Allocations("n1", nil)
	if err != nil || len(allocs) != 1 {
		t.Fatalf("node allocations: %d %v", len(allocs), err)
	}
	got := allocs[0].Job.Groups[0].Tasks[0].Secrets
	if len(got) != 2 || string(got[0].Value) != value || string(got[1].Value) != value || got[1].Target != "/etc/pw" {
		t.Fatalf("node feed secrets = %+v", got)
	}
	b64, _ := json.Marshal([]byte(value))
	for _, path := range []string{"/v1/jobs", "/v1/jobs/app", "/v1/jobs/app/allocations", "/v1/allocations", "/v1/secrets"} {
		body := rawGet(t, s, path)
		if strings.Contains(body, value) || strings.Contains(body, strings.Trim(string(b64), `"`)) {
			t.Fatalf("GET %s shows the secret: %s", path, body)
		}
	}
	raw := readRaftFiles(t, s)
	if bytes.Contains(raw, []byte(value)) || bytes.Contains(raw, []byte(strings.Trim(string(b64), `"`))) {
		t.Fatal("the Raft files hold the secret in the clear")
	}

	for _, tc := range []struct {
		name string
		ts   api.TaskSecret
	}{
		{"value in the job", api.TaskSecret{Name: "db-pw", Value: []byte("x")}},
		{"bad name", api.TaskSecret{Name: "../x"}},
		{"relative target", api.TaskSecret{Name: "db-pw", Target: "etc/pw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := simpleJob("bad-"+strings.ReplaceAll(tc.name, " ", "-"), 1, 100, 64)
			j.Groups[0].Tasks[0].Secrets = []api.TaskSecret{tc.ts}
			_, err := c.Jobs().Register(j)
			checkStatus(t, err, http.StatusBadRequest)
		})
	}

	// A deleted secret reaches the node without a value: the agent fails
	// the task instead of mounting an empty file.
	if err := c.Secrets().Delete("db-pw"); err != nil {
		t.Fatal(err)
	}
	allocs, _, _ = c.Nodes().Allocations("n1", nil)
	if v := allocs[0].Job.Groups[0].Tasks[0].Secrets[0].Value; len(v) != 0 {
		t.Fatalf("a deleted secret still has a value: %q", v)
	}
	checkStatus(t, c.Secrets().Delete("db-pw"), http.StatusNotFound)
}

// TestRegistryAuthSealedAtRest: with a secrets key, a task's registry
// password is sealed in Raft, opened on the node's feed, redacted
// elsewhere, and submitting the same job again is no new version.
func TestRegistryAuthSealedAtRest(t *testing.T) {
	s, c := startWithSecretsKey(t)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	const password = "registry-pa55word"
	job := simpleJob("private", 1, 100, 64)
	job.Groups[0].Tasks[0].Auth = &api.RegistryAuth{Username: "alice", Password: password}
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	waitLive(t, c, "private", 1)
	stored, _ := s.raft.State().JobByID(nil, "private")
	a := stored.Groups[0].Tasks[0].Auth
	if a.Username != "alice" || !strings.HasPrefix(a.Password, sealedAuthPrefix) {
		t.Fatalf("stored auth = %+v", a)
	}
	if bytes.Contains(readRaftFiles(t, s), []byte(password)) {
		t.Fatal("the Raft files hold the registry password")
	}
	allocs, _, err := c.Nodes().Allocations("n1", nil)
	if err != nil || allocs[0].Job.Groups[0].Tasks[0].Auth.Password != password {
		t.Fatalf("node feed auth: %v %v", allocs[0].Job.Groups[0].Tasks[0].Auth, err)
	}
	if body := rawGet(t, s, "/v1/jobs/private"); strings.Contains(body, password) || strings.Contains(body, sealedAuthPrefix) {
		t.Fatalf("job read shows the credential: %s", body)
	}
	v := stored.Version
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	if again, _ := s.raft.State().JobByID(nil, "private"); again.Version != v {
		t.Fatalf("registering the same job again made version %d from %d", again.Version, v)
	}
}
