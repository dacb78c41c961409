package scheduler

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// TestReadRoutesRedactRegistryAuth registers a job whose task carries
// registry credentials: every read route shows them redacted except the
// node's own allocations, which the agent pulls with.
func TestReadRoutesRedactRegistryAuth(t *testing.T) {
	s, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")

	const password, token = "s3cret-pass-word", "id-token-t0ken"
	job := simpleJob("private", 1, 100, 64)
	job.Groups[0].Tasks[0].Auth = &api.RegistryAuth{Username: "alice", Password: password}
	job.Groups[0].Tasks = append(job.Groups[0].Tasks, &api.Task{Name: "t2", Image: "busybox:latest",
		Auth: &api.RegistryAuth{IdentityToken: token}})
	if _, err := c.Jobs().Register(job); err != nil {
		t.Fatal(err)
	}
	live := waitLive(t, c, "private", 1)
	marker, _ := json.Marshal(redactedSecret) // "\u003credacted\u003e": echo escapes HTML

	get := func(path string) string {
		t.Helper()
		resp, err := http.Get("http://" + s.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v %s", path, resp.StatusCode, err, b)
		}
		return string(b)
	}
	for _, path := range []string{
		"/v1/jobs", "/v1/jobs/private", "/v1/jobs/private/allocations",
		"/v1/allocations", "/v1/allocations/" + live[0].ID,
		"/v1/evaluations", "/v1/nodes", "/v1/nodes/n1",
	} {
		t.Run(path, func(t *testing.T) {
			body := get(path)
			if strings.Contains(body, password) || strings.Contains(body, token) {
				t.Fatalf("GET %s shows a registry secret: %s", path, body)
			}
			if strings.Contains(path, "jobs") || strings.Contains(path, "allocations") {
				if !strings.Contains(body, `"password":`+string(marker)) || !strings.Contains(body, `"identity_token":`+string(marker)) || !strings.Contains(body, `"username":"alice"`) {
					t.Fatalf("GET %s: want the credentials shown redacted: %s", path, body)
				}
			}
		})
	}

	// The agent's route carries them, after all the reads above: the
	// redaction never changed the stored job.
	body := get("/v1/nodes/n1/allocations")
	if !strings.Contains(body, password) || !strings.Contains(body, token) || strings.Contains(body, string(marker)) {
		t.Fatalf("node allocations lack the credentials: %s", body)
	}
	allocs, _, err := c.Nodes().Allocations("n1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := allocs[0].Job.Groups[0].Tasks[0].Auth; a == nil || a.Username != "alice" || a.Password != password {
		t.Fatalf("node allocation's auth = %v", a)
	}
	if a := allocs[0].Job.Groups[0].Tasks[1].Auth; a == nil || a.IdentityToken != token {
		t.Fatalf("node allocation's second task auth = %v", a)
	}
}
