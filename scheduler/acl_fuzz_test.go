package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
)

// fuzzRequest is one request type of the API: a route that decodes a JSON
// body.
type fuzzRequest struct {
	method, path string
	seed         string // a valid body
}

// fuzzRequests are the API's request types, each a route whose body is
// decoded into one (api/requests.go, api/acl.go, api/secret.go).
var fuzzRequests = []fuzzRequest{
	{http.MethodPost, "/v1/jobs", `{"job":{"name":"web","groups":[{"name":"g","count":1,"tasks":[{"name":"t","image":"busybox","resources":{"cpu":100,"memory":64},"secrets":[{"name":"pw"}]}]}]}}`},
	{http.MethodPost, "/v1/jobs/web/plan", `{"job":{"name":"web","groups":[{"name":"g","count":2,"tasks":[{"name":"t","image":"busybox","privileged":true}]}]}}`},
	{http.MethodPut, "/v1/allocations/status", `{"allocs":[{"id":"a1","client_status":"running"}]}`},
	{http.MethodPost, "/v1/nodes/register", `{"node":{"id":"n2","name":"n2","resources":{"cpu":1000,"memory":1024}}}`},
	{http.MethodPost, "/v1/nodes/n1/drain", `{"enable":true}`},
	{http.MethodPost, "/v1/nodes/n1/eligibility", `{"eligible":false}`},
	{http.MethodPost, "/v1/acl/policies", `{"policy":{"name":"p","rules":[{"job_prefix":"web-","capabilities":["read","exec"]}]}}`},
	{http.MethodPost, "/v1/acl/tokens", `{"name":"t","policies":["p"]}`},
	{http.MethodPost, "/v1/secrets", `{"name":"pw","value":"aHVudGVyMg=="}`},
}

// fuzzTables are the tables only API writes change (the scheduler writes
// evaluations and allocations on its own, in the background).
var fuzzTables = []string{consensus.TableJobs, consensus.TableNodes, consensus.TableSchedulerConfig,
	consensus.TableACLPolicies, consensus.TableACLTokens, consensus.TableACLMeta, consensus.TableSecrets}

func tableIndexes(st *consensus.StateStore) string {
	var b strings.Builder
	for _, t := range fuzzTables {
		fmt.Fprintf(&b, "%s=%d ", t, st.Index(t))
	}
	return b.String()
}

// FuzzAPIRequest sends arbitrary bodies for every request type through
// the real middleware (audit, ACL, secrets) and handlers of a running,
// ACL-bootstrapped leader. Whatever comes in, the server must not panic
// or fail (no 5xx), must refuse bad input with a 4xx, and a refused
// request must leave the state as it was.
func FuzzAPIRequest(f *testing.F) {
	for i, r := range fuzzRequests {
		f.Add(uint8(i), r.seed)
		f.Add(uint8(i), `{}`)
		f.Add(uint8(i), `[]`)
		f.Add(uint8(i), ``)
		f.Add(uint8(i), r.seed+`{}`)
		f.Add(uint8(i), strings.Replace(r.seed, `"`, `'`, 1))
	}
	f.Add(uint8(0), `{"job":{"name":"x","groups":[{"name":"g","tasks":[{"name":"t","image":"i","secrets":[{"name":"../etc"}]}]}]}}`)
	f.Add(uint8(0), `{"job":{"name":"x","groups":[{"name":"g","tasks":[{"name":"t","image":"i","secrets":[{"name":"pw","value":"eA=="}]}]}]}}`)
	f.Add(uint8(0), `{"job":{"name":"x","groups":[{"name":"g","tasks":[{"name":"t","image":"i","secrets":[{"name":"pw","target":"rel/path"}]}]}]}}`)
	f.Add(uint8(6), `{"policy":{"name":"p","rules":[{"namespace":"ops","capabilities":["read"]}]}}`)
	f.Add(uint8(7), `{"type":"management","policies":["p"]}`)
	f.Add(uint8(8), `{"name":"pw","value":"not base64!"}`)

	dir := f.TempDir()
	if err := GenerateSecretsKey(filepath.Join(dir, "server", secretKeyFile)); err != nil {
		f.Fatal(err)
	}
	s, err := New(Config{NodeName: "fuzz", DataDir: dir, BindAddr: "127.0.0.1", BootstrapExpect: 1,
		HeartbeatTTL: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = s.Shutdown() })
	deadline := time.Now().Add(10 * time.Second)
	for !s.IsLeader() {
		if time.Now().After(deadline) {
			f.Fatal("no leadership")
		}
		time.Sleep(10 * time.Millisecond)
	}
	send := func(token, method, path, body string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		s.echo.ServeHTTP(rec, req)
		return rec
	}
	// The node the node routes name, then ACLs on.
	if rec := send("", http.MethodPost, "/v1/nodes/register", `{"node":{"id":"n1","name":"n1","resources":{"cpu":1000,"memory":1024}}}`); rec.Code != http.StatusOK {
		f.Fatalf("register n1: %d %s", rec.Code, rec.Body)
	}
	c, err := api.NewClient(s.HTTPAddr())
	if err != nil {
		f.Fatal(err)
	}
	c.SetToken("")
	boot, err := c.ACL().Bootstrap()
	if err != nil {
		f.Fatal(err)
	}
	mgmt := boot.SecretID

	f.Fuzz(func(t *testing.T, kind uint8, body string) {
		r := fuzzRequests[int(kind)%len(fuzzRequests)]
		st := s.raft.State()
		before := tableIndexes(st)
		rec := send(mgmt, r.method, r.path, body)
		switch {
		case rec.Code >= 500:
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		case rec.Code >= 400:
			if after := tableIndexes(st); after != before {
				t.Fatalf("%s %s %q refused with %d but changed the state: %s → %s", r.method, r.path, body, rec.Code, before, after)
			}
			if !strings.Contains(rec.Body.String(), `"error"`) {
				t.Fatalf("%s %s %q: %d without an error body: %s", r.method, r.path, body, rec.Code, rec.Body)
			}
		case rec.Code >= 300 || rec.Code < 200:
			t.Fatalf("%s %s %q: unexpected status %d", r.method, r.path, body, rec.Code)
		}
	})
}
