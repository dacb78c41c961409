package scheduler

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

// aclFixture is a bootstrapped server with a node, two jobs placed on it
// and one token per policy of the route × policy test.
type aclFixture struct {
	s      *Server
	mgmt   *api.Client
	tokens map[string]string // name → secret ("anon" has none)
	webCtr string            // container ID of web-1's task on n1
	dbCtr  string
}

// Token names of the route × policy test.
const (
	tAnon      = "anon"      // no token
	tBogus     = "bogus"     // a token the cluster does not know
	tWebRead   = "webread"   // read, logs on web-*
	tWebSubmit = "websubmit" // read, submit, exec on web-*
	tNode      = "node"      // node
	tAllRead   = "allread"   // read on every job
	tMgmt      = "mgmt"      // management
)

var allTokens = []string{tAnon, tBogus, tWebRead, tWebSubmit, tNode, tAllRead, tMgmt}

func bootstrapACL(t *testing.T, s *Server) (*api.Client, string) {
	t.Helper()
	anon := client(t, s)
	anon.SetToken("")
	tk, err := anon.ACL().Bootstrap()
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if tk.SecretID == "" || tk.AccessorID == "" || tk.Type != api.ACLTokenManagement {
		t.Fatalf("bootstrap token = %+v", tk)
	}
	mgmt := client(t, s)
	mgmt.SetToken(tk.SecretID)
	return mgmt, tk.SecretID
}

func newACLFixture(t *testing.T) *aclFixture {
	t.Helper()
	s, c := startLeader(t, nil)
	c.SetToken("")
	// Before the bootstrap, ACLs are off.
	registerNodes(t, c, simNode("n1", 8000, 8192))
	mgmt, secret := bootstrapACL(t, s)
	f := &aclFixture{s: s, mgmt: mgmt, tokens: map[string]string{tMgmt: secret, tBogus: strings.Repeat("ab", 32)}}

	policies := map[string][]api.ACLRule{
		tWebRead:   {{JobPrefix: "web-", Capabilities: []string{api.CapRead, api.CapLogs}}},
		tWebSubmit: {{JobPrefix: "web-", Capabilities: []string{api.CapRead, api.CapSubmit, api.CapExec}}},
		tNode:      {{Capabilities: []string{api.CapNode}}},
		tAllRead:   {{Namespace: "*", Capabilities: []string{api.CapRead}}},
	}
	for name, rules := range policies {
		if err := mgmt.ACL().ApplyPolicy(&api.ACLPolicy{Name: name, Rules: rules}); err != nil {
			t.Fatalf("policy %s: %v", name, err)
		}
		tk, err := mgmt.ACL().CreateToken(&api.ACLTokenCreateRequest{Name: name, Policies: []string{name}})
		if err != nil {
			t.Fatalf("token %s: %v", name, err)
		}
		f.tokens[name] = tk.SecretID
	}
	node := f.as(t, tNode)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // the node token keeps n1 alive, as an agent would
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
				_, _ = node.Nodes().Heartbeat("n1")
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	for _, name := range []string{"web-1", "db-1"} {
		if _, err := mgmt.Jobs().Register(simpleJob(name, 1, 100, 64)); err != nil {
			t.Fatal(err)
		}
	}
	f.webCtr = agentContainerID(waitLive(t, mgmt, "web-1", 1)[0].ID, "t")
	f.dbCtr = agentContainerID(waitLive(t, mgmt, "db-1", 1)[0].ID, "t")
	return f
}

// as returns a client that sends the named token.
func (f *aclFixture) as(t *testing.T, name string) *api.Client {
	c := client(t, f.s)
	c.SetToken(f.tokens[name])
	return c
}

// do sends one request with the named token and returns status and body.
func (f *aclFixture) do(t *testing.T, token, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+f.s.HTTPAddr()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if sec := f.tokens[token]; sec != "" {
		req.Header.Set("Authorization", "Bearer "+sec)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkDenied asserts a request got the one generic refusal.
func checkDenied(t *testing.T, method string, code int, body string, secrets ...string) {
	t.Helper()
	if code != http.StatusForbidden {
		t.Fatalf("status %d, want 403: %s", code, body)
	}
	var e api.Error
	if body != "" || method != http.MethodHead {
		if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error != errPermissionDenied.Message {
			t.Fatalf("refusal body %q is not the generic message", body)
		}
	}
	for _, leak := range append([]string{"web-1", "db-1", "n1", "name-n1"}, secrets...) {
		if leak != "" && strings.Contains(body, leak) {
			t.Fatalf("refusal leaks %q: %s", leak, body)
		}
	}
}

// routeCase is a concrete request for one route and who may make it.
type routeCase struct {
	path, body string
	allow      []string
}

var (
	withToken = []string{tWebRead, tWebSubmit, tNode, tAllRead, tMgmt}
	readers   = []string{tWebRead, tWebSubmit, tNode, tAllRead, tMgmt} // cluster reads: any read right or node
	everyone  = allTokens
	mgmtOnly  = []string{tMgmt}
)

// routeCases lists, for every route the server has, a request and the
// tokens that may make it. TestACLRouteTable walks the router's own route
// list, so a route added without a line here (and in routeRules) fails.
func routeCases(f *aclFixture) map[string]routeCase {
	job := func(name string) string {
		b, _ := json.Marshal(api.JobRegisterRequest{Job: simpleJob(name, 1, 100, 64)})
		return string(b)
	}
	return map[string]routeCase{
		"GET /v1/jobs":                             {"/v1/jobs", "", withToken},
		"POST /v1/jobs":                            {"/v1/jobs", job("db-1"), mgmtOnly},
		"GET /v1/jobs/:id":                         {"/v1/jobs/db-1", "", []string{tAllRead, tMgmt}},
		"DELETE /v1/jobs/:id":                      {"/v1/jobs/web-gone", "", []string{tWebSubmit, tMgmt}},
		"GET /v1/jobs/:id/allocations":             {"/v1/jobs/web-1/allocations", "", []string{tWebRead, tWebSubmit, tAllRead, tMgmt}},
		"POST /v1/jobs/:id/plan":                   {"/v1/jobs/web-2/plan", job("web-2"), []string{tWebSubmit, tMgmt}},
		"GET /v1/allocations":                      {"/v1/allocations", "", withToken},
		"GET /v1/allocations/:id":                  {"/v1/allocations/no-such-alloc", "", []string{tAllRead, tMgmt}},
		"PUT /v1/allocations/status":               {"/v1/allocations/status", `{"allocs":[]}`, []string{tNode, tMgmt}},
		"GET /v1/evaluations":                      {"/v1/evaluations", "", withToken},
		"GET /v1/evaluations/:id":                  {"/v1/evaluations/no-such-eval", "", []string{tAllRead, tMgmt}},
		"GET /v1/nodes":                            {"/v1/nodes", "", readers},
		"POST /v1/nodes/register":                  {"/v1/nodes/register", `{"node":{"id":"n2","name":"n2"}}`, []string{tNode, tMgmt}},
		"GET /v1/nodes/:id":                        {"/v1/nodes/n1", "", readers},
		"PUT /v1/nodes/:id/heartbeat":              {"/v1/nodes/n1/heartbeat", "", []string{tNode, tMgmt}},
		"GET /v1/nodes/:id/allocations":            {"/v1/nodes/n1/allocations", "", []string{tNode, tMgmt}},
		"POST /v1/nodes/:id/drain":                 {"/v1/nodes/nx/drain", `{"enable":true}`, mgmtOnly},
		"POST /v1/nodes/:id/eligibility":           {"/v1/nodes/nx/eligibility", `{"eligible":false}`, mgmtOnly},
		"GET /v1/nodes/:id/agent/*":                {"/v1/nodes/n1/agent/health", "", readers},
		"* /v1/nodes/:id/agent/*":                  {"/v1/nodes/n1/agent/health", "", mgmtOnly}, // no agent route /health but GET
		"GET /v1/status/leader":                    {"/v1/status/leader", "", readers},
		"GET /v1/status/peers":                     {"/v1/status/peers", "", readers},
		"GET /v1/operator/raft/peers":              {"/v1/operator/raft/peers", "", readers},
		"DELETE /v1/operator/raft/peers":           {"/v1/operator/raft/peers", "", mgmtOnly},
		"GET /v1/operator/scheduler/configuration": {"/v1/operator/scheduler/configuration", "", readers},
		"PUT /v1/operator/scheduler/configuration": {"/v1/operator/scheduler/configuration", `{"algorithm":"binpack"}`, mgmtOnly},
		"PUT /v1/system/gc":                        {"/v1/system/gc", "", mgmtOnly},
		"GET /v1/operator/keyring":                 {"/v1/operator/keyring", "", mgmtOnly},
		"POST /v1/operator/keyring/:op":            {"/v1/operator/keyring/use", `{"key":""}`, mgmtOnly},
		"GET /v1/members":                          {"/v1/members", "", readers},
		"GET /v1/metrics":                          {"/v1/metrics", "", readers},
		"GET /v1/agent/health":                     {"/v1/agent/health", "", everyone},
		"POST /v1/acl/bootstrap":                   {"/v1/acl/bootstrap", "{}", everyone}, // 409 for all: once only
		"GET /v1/acl/policies":                     {"/v1/acl/policies", "", mgmtOnly},
		"POST /v1/acl/policies":                    {"/v1/acl/policies", `{}`, mgmtOnly},
		"GET /v1/acl/policies/:name":               {"/v1/acl/policies/node", "", mgmtOnly},
		"DELETE /v1/acl/policies/:name":            {"/v1/acl/policies/no-such-policy", "", mgmtOnly},
		"GET /v1/acl/tokens":                       {"/v1/acl/tokens", "", mgmtOnly},
		"POST /v1/acl/tokens":                      {"/v1/acl/tokens", `{}`, mgmtOnly},
		"GET /v1/acl/tokens/:accessor":             {"/v1/acl/tokens/self", "", withToken},
		"DELETE /v1/acl/tokens/:accessor":          {"/v1/acl/tokens/no-such-token", "", mgmtOnly},
		"GET /v1/secrets":                          {"/v1/secrets", "", mgmtOnly},
		"POST /v1/secrets":                         {"/v1/secrets", `{}`, mgmtOnly},
		"DELETE /v1/secrets/:name":                 {"/v1/secrets/no-such-secret", "", mgmtOnly},
	}
}

// TestACLRouteTable checks every route of the router against every
// policy: the router's route list is the source, so a new route without a
// decision (in routeRules) or without a line in routeCases fails here, and
// the middleware refuses it to all but management tokens meanwhile.
func TestACLRouteTable(t *testing.T) {
	f := newACLFixture(t)
	cases := routeCases(f)
	seen := map[string]bool{}
	for _, r := range f.s.echo.Routes() {
		if r.Method == echo.RouteNotFound {
			continue
		}
		key := r.Method + " " + r.Path
		if _, ok := lookupRule(r.Method, r.Path); !ok {
			t.Errorf("route %s is not in routeRules: decide what it needs (it is closed to all but management until then)", key)
		}
		tc, ok := cases[key]
		if !ok {
			tc, ok = cases["* "+r.Path]
		}
		if !ok {
			t.Errorf("route %s has no line in routeCases", key)
			continue
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		t.Run(key, func(t *testing.T) {
			for _, tok := range allTokens {
				code, body := f.do(t, tok, r.Method, tc.path, tc.body)
				want := slices.Contains(tc.allow, tok)
				if want && code == http.StatusForbidden {
					t.Errorf("token %s: refused, want allowed: %s", tok, body)
				}
				if !want {
					if code != http.StatusForbidden {
						t.Errorf("token %s: status %d, want 403: %.200s", tok, code, body)
						continue
					}
					checkDenied(t, r.Method, code, body, f.tokens[tok])
				}
			}
		})
	}
}

// TestACLAgentProxyRoutes checks the proxied agent routes: container
// rights follow the container's job, found from the allocations.
func TestACLAgentProxyRoutes(t *testing.T) {
	f := newACLFixture(t)
	web, db := "/v1/nodes/n1/agent/containers/"+f.webCtr, "/v1/nodes/n1/agent/containers/"+f.dbCtr
	for _, tc := range []struct {
		name, method, path string
		allow              []string
	}{
		{"logs of web", http.MethodGet, web + "/logs", []string{tWebRead, tMgmt}},
		{"logs of web by name", http.MethodGet, "/v1/nodes/n1/agent/containers/web-1/logs", []string{tWebRead, tMgmt}},
		{"logs of web by prefix", http.MethodGet, web[:len(web)-50] + "/logs", []string{tWebRead, tMgmt}},
		{"logs of db", http.MethodGet, db + "/logs", mgmtOnly},
		{"inspect web", http.MethodGet, web, []string{tWebRead, tWebSubmit, tAllRead, tMgmt}},
		{"exec in web", http.MethodPost, web + "/exec", []string{tWebSubmit, tMgmt}},
		{"exec attach in web", http.MethodPost, web + "/exec/attach", []string{tWebSubmit, tMgmt}},
		{"exec in db", http.MethodPost, db + "/exec", mgmtOnly},
		{"attach to web", http.MethodPost, web + "/attach", mgmtOnly},
		{"kill web", http.MethodPost, web + "/kill", []string{tWebSubmit, tMgmt}},
		{"logs of unknown container", http.MethodGet, "/v1/nodes/n1/agent/containers/feedface/logs", mgmtOnly},
		{"list containers", http.MethodGet, "/v1/nodes/n1/agent/containers", withToken},
		{"list images", http.MethodGet, "/v1/nodes/n1/agent/images", readers},
		{"inspect image", http.MethodGet, "/v1/nodes/n1/agent/images/busybox:latest", readers},
		{"inspect image with slashes", http.MethodGet, "/v1/nodes/n1/agent/images/reg:5000/a/b:1", readers},
		{"inspect escaped image", http.MethodGet, "/v1/nodes/n1/agent/images/reg:5000%2Fa%2Fb:1", readers},
		{"remove image with slashes", http.MethodDelete, "/v1/nodes/n1/agent/images/reg:5000/a/b:1", mgmtOnly},
		{"pull image", http.MethodPost, "/v1/nodes/n1/agent/images/pull", mgmtOnly},
		{"create volume", http.MethodPost, "/v1/nodes/n1/agent/volumes", mgmtOnly},
		{"system prune", http.MethodPost, "/v1/nodes/n1/agent/system/prune", mgmtOnly},
		{"unknown agent route", http.MethodGet, "/v1/nodes/n1/agent/secret-route", mgmtOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, tok := range allTokens {
				code, body := f.do(t, tok, tc.method, tc.path, "")
				if slices.Contains(tc.allow, tok) {
					if code == http.StatusForbidden {
						t.Errorf("token %s: refused, want allowed: %s", tok, body)
					}
					continue
				}
				if code != http.StatusForbidden {
					t.Errorf("token %s: status %d, want 403", tok, code)
					continue
				}
				checkDenied(t, tc.method, code, body, f.webCtr, f.dbCtr)
			}
		})
	}
}

// TestACLBehaviour covers what the route table does not: bootstrap once,
// hashed tokens, list filtering, the privileged and secrets rights, node
// registration and the audit log.
func TestACLBehaviour(t *testing.T) {
	f := newACLFixture(t)

	t.Run("bootstrap only once", func(t *testing.T) {
		code, body := f.do(t, tAnon, http.MethodPost, "/v1/acl/bootstrap", "{}")
		if code != http.StatusConflict || strings.Contains(body, "secret_id") {
			t.Fatalf("second bootstrap: %d %s", code, body)
		}
	})

	t.Run("tokens are stored hashed", func(t *testing.T) {
		st := f.s.raft.State()
		toks, err := st.ACLTokens(nil)
		if err != nil || len(toks) != 5 {
			t.Fatalf("%d tokens, %v", len(toks), err)
		}
		enc, _ := json.Marshal(toks)
		for name, secret := range f.tokens {
			if name != tBogus && strings.Contains(string(enc), secret) {
				t.Fatalf("the state store holds the secret of token %s", name)
			}
		}
		if tk, _ := st.ACLTokenBySecretHash(hashSecret(f.tokens[tMgmt])); tk == nil || tk.Type != api.ACLTokenManagement {
			t.Fatalf("management token not found by its hash: %+v", tk)
		}
		// Nor does the Raft log on disk.
		raw := readRaftFiles(t, f.s)
		for name, secret := range f.tokens {
			if name != tBogus && bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("the Raft log on disk holds the secret of token %s", name)
			}
		}
		// The API shows accessors only.
		list, err := f.mgmt.ACL().Tokens()
		if err != nil || len(list) != 5 {
			t.Fatalf("token list: %d, %v", len(list), err)
		}
		for _, tk := range list {
			if tk.SecretID != "" {
				t.Fatalf("token list shows a secret: %+v", tk)
			}
		}
		self, err := f.as(t, tWebRead).ACL().Token("self")
		if err != nil || self.Name != tWebRead || self.SecretID != "" {
			t.Fatalf("self = %+v, %v", self, err)
		}
	})

	t.Run("lists are filtered", func(t *testing.T) {
		c := f.as(t, tWebRead)
		jobs, _, err := c.Jobs().List(nil)
		if err != nil || len(jobs) != 1 || jobs[0].ID != "web-1" {
			t.Fatalf("webread sees jobs %v, %v", jobNames(jobs), err)
		}
		allocs, _, err := c.Allocations().List(nil)
		if err != nil || len(allocs) != 1 || allocs[0].JobID != "web-1" {
			t.Fatalf("webread sees %d allocations, %v", len(allocs), err)
		}
		_, body := f.do(t, tWebRead, http.MethodGet, "/v1/evaluations", "")
		if strings.Contains(body, "db-1") || !strings.Contains(body, "web-1") {
			t.Fatalf("webread's evaluations: %s", body)
		}
		jobs, _, err = f.as(t, tAllRead).Jobs().List(nil)
		if err != nil || len(jobs) != 2 {
			t.Fatalf("allread sees jobs %v, %v", jobNames(jobs), err)
		}
		// Blocking queries are checked and filtered the same way.
		code, _ := f.do(t, tWebRead, http.MethodGet, "/v1/jobs/db-1?index=1&wait=10ms", "")
		if code != http.StatusForbidden {
			t.Fatalf("blocking read of db-1: %d", code)
		}
		_, body = f.do(t, tWebRead, http.MethodGet, "/v1/jobs?index=1&wait=10ms", "")
		if strings.Contains(body, "db-1") {
			t.Fatalf("blocking list shows db-1: %s", body)
		}
	})

	t.Run("submit follows the job prefix", func(t *testing.T) {
		c := f.as(t, tWebSubmit)
		if _, err := c.Jobs().Register(simpleJob("web-2", 1, 100, 64)); err != nil {
			t.Fatalf("submit web-2: %v", err)
		}
		_, err := c.Jobs().Register(simpleJob("db-2", 1, 100, 64))
		checkStatus(t, err, http.StatusForbidden)
		if j, _ := f.s.raft.State().JobByID(nil, "db-2"); j != nil {
			t.Fatal("a refused submit stored its job")
		}
	})

	t.Run("secrets need the right, per secret prefix", func(t *testing.T) {
		job := simpleJob("web-sec", 1, 100, 64)
		job.Groups[0].Tasks[0].Secrets = []api.TaskSecret{{Name: "web-db"}}
		_, err := f.as(t, tWebSubmit).Jobs().Register(job)
		checkStatus(t, err, http.StatusForbidden)
		if err := f.mgmt.ACL().ApplyPolicy(&api.ACLPolicy{Name: "sec", Rules: []api.ACLRule{
			{JobPrefix: "web-", Capabilities: []string{api.CapSubmit, api.CapSecrets}, SecretPrefix: "web-"}}}); err != nil {
			t.Fatal(err)
		}
		tk, err := f.mgmt.ACL().CreateToken(&api.ACLTokenCreateRequest{Name: "sec", Policies: []string{"sec"}})
		if err != nil {
			t.Fatal(err)
		}
		c := client(t, f.s)
		c.SetToken(tk.SecretID)
		if _, err := c.Jobs().Register(job); err != nil {
			t.Fatalf("a web- secret with the right: %v", err)
		}
		job.Groups[0].Tasks[0].Secrets = append(job.Groups[0].Tasks[0].Secrets, api.TaskSecret{Name: "db-root"})
		_, err = c.Jobs().Register(job)
		checkStatus(t, err, http.StatusForbidden)
	})

	t.Run("privileged needs the right", func(t *testing.T) {
		job := simpleJob("web-priv", 1, 100, 64)
		job.Groups[0].Tasks[0].Privileged = true
		_, err := f.as(t, tWebSubmit).Jobs().Register(job)
		checkStatus(t, err, http.StatusForbidden)
		if err := f.mgmt.ACL().ApplyPolicy(&api.ACLPolicy{Name: "priv", Rules: []api.ACLRule{
			{JobPrefix: "web-", Capabilities: []string{api.CapSubmit, api.CapPrivileged}}}}); err != nil {
			t.Fatal(err)
		}
		tk, err := f.mgmt.ACL().CreateToken(&api.ACLTokenCreateRequest{Name: "priv", Policies: []string{"priv"}})
		if err != nil {
			t.Fatal(err)
		}
		c := client(t, f.s)
		c.SetToken(tk.SecretID)
		if _, err := c.Jobs().Register(job); err != nil {
			t.Fatalf("privileged submit with the right: %v", err)
		}
		logged := false
		for _, r := range readAudit(t, f.s) {
			logged = logged || (r.Path == "/v1/jobs" && r.Status == http.StatusOK && r.Privileged && r.Accessor == tk.AccessorID)
		}
		if !logged {
			t.Fatal("the privileged submission is not marked in the audit log")
		}
		if err := f.mgmt.ACL().DeleteToken(tk.AccessorID); err != nil {
			t.Fatal(err)
		}
		_, err = c.Jobs().Register(job)
		checkStatus(t, err, http.StatusForbidden)
	})

	t.Run("an agent without a node token cannot register", func(t *testing.T) {
		for _, tok := range []string{tAnon, tBogus, tWebSubmit} {
			c := f.as(t, tok)
			_, err := c.Nodes().Register(simNode("n9", 1000, 1024))
			checkStatus(t, err, http.StatusForbidden)
		}
		if n, _ := f.s.raft.State().NodeByID(nil, "n9"); n != nil {
			t.Fatal("a refused registration stored the node")
		}
		if _, err := f.as(t, tNode).Nodes().Register(simNode("n9", 1000, 1024)); err != nil {
			t.Fatalf("node token register: %v", err)
		}
	})

	t.Run("a node belongs to the token that registered it", func(t *testing.T) {
		rules := []api.ACLRule{{Capabilities: []string{api.CapNode}}}
		for _, name := range []string{"node2", "node3"} {
			if err := f.mgmt.ACL().ApplyPolicy(&api.ACLPolicy{Name: name, Rules: rules}); err != nil {
				t.Fatal(err)
			}
			tk, err := f.mgmt.ACL().CreateToken(&api.ACLTokenCreateRequest{Name: name, Policies: []string{name}})
			if err != nil {
				t.Fatal(err)
			}
			f.tokens[name] = tk.SecretID
		}
		// n1 was registered before the bootstrap, by no token: the node
		// token that registers it next owns it.
		n1 := simNode("n1", 8000, 8192)
		if _, err := f.as(t, tNode).Nodes().Register(n1); err != nil {
			t.Fatalf("owner re-registers n1: %v", err)
		}
		if n, _ := f.s.raft.State().NodeByID(nil, "n1"); n == nil || n.TokenAccessor == "" {
			t.Fatalf("n1 is not bound to its token: %+v", n)
		}
		alloc := jobAllocs(t, f.mgmt, "web-1")[0]
		status := `{"allocs":[{"id":"` + alloc.ID + `","client_status":"running"}]}`
		for _, tc := range []struct{ method, path, body string }{
			{http.MethodPut, "/v1/nodes/n1/heartbeat", ""},
			{http.MethodGet, "/v1/nodes/n1/allocations", ""},
			{http.MethodPost, "/v1/nodes/register", `{"node":{"id":"n1","name":"name-n1","resources":{"cpu":8000,"memory":8192}}}`},
			{http.MethodPut, "/v1/allocations/status", status},
		} {
			code, body := f.do(t, "node2", tc.method, tc.path, tc.body)
			checkDenied(t, tc.method+" "+tc.path, code, body, "n1", "web-1")
			if code, body := f.do(t, tNode, tc.method, tc.path, tc.body); code != http.StatusOK {
				t.Fatalf("the owner's %s %s: %d %s", tc.method, tc.path, code, body)
			}
			if code, body := f.do(t, tMgmt, tc.method, tc.path, tc.body); code != http.StatusOK {
				t.Fatalf("management's %s %s: %d %s", tc.method, tc.path, code, body)
			}
		}
		// A node whose token is deleted can be taken over: a rotation.
		if _, err := f.as(t, "node3").Nodes().Register(simNode("n10", 1000, 1024)); err != nil {
			t.Fatal(err)
		}
		if _, err := f.as(t, "node2").Nodes().Register(simNode("n10", 1000, 1024)); err == nil {
			t.Fatal("node2 took over node3's node")
		}
		n10, _ := f.s.raft.State().NodeByID(nil, "n10")
		if err := f.mgmt.ACL().DeleteToken(n10.TokenAccessor); err != nil {
			t.Fatal(err)
		}
		if _, err := f.as(t, "node2").Nodes().Register(simNode("n10", 1000, 1024)); err != nil {
			t.Fatalf("register after the owner's token was deleted: %v", err)
		}
	})

	t.Run("audit records writes and exec", func(t *testing.T) {
		f.do(t, tWebSubmit, http.MethodPost, "/v1/nodes/n1/agent/containers/"+f.webCtr+"/exec", `{"cmd":["id"]}`)
		f.do(t, tWebRead, http.MethodPost, "/v1/nodes/n1/agent/containers/"+f.webCtr+"/exec", `{"cmd":["id"]}`)
		recs := readAudit(t, f.s)
		accessor := func(name string) string {
			tk, err := f.as(t, name).ACL().Token("self")
			if err != nil {
				t.Fatal(err)
			}
			return tk.AccessorID
		}
		find := func(method, path, acc string, status int) {
			t.Helper()
			for _, r := range recs {
				if r.Method == method && r.Path == path && r.Accessor == acc && r.Status == status && r.SourceIP == "127.0.0.1" && !r.Time.IsZero() {
					return
				}
			}
			t.Errorf("no audit record %s %s by %s with status %d", method, path, acc, status)
		}
		find(http.MethodPost, "/v1/jobs", accessor(tWebSubmit), http.StatusOK)
		find(http.MethodPost, "/v1/jobs", accessor(tWebSubmit), http.StatusForbidden)
		find(http.MethodPost, "/v1/nodes/n1/agent/containers/"+f.webCtr+"/exec", accessor(tWebRead), http.StatusForbidden)
		// simNode has no agent address: the allowed exec reaches the
		// proxy, which answers 502.
		find(http.MethodPost, "/v1/nodes/n1/agent/containers/"+f.webCtr+"/exec", accessor(tWebSubmit), http.StatusBadGateway)
		raw, _ := os.ReadFile(f.s.auditLogPath())
		for name, secret := range f.tokens {
			if name != tBogus && bytes.Contains(raw, []byte(secret)) {
				t.Fatalf("the audit log holds the secret of token %s", name)
			}
		}
		if bytes.Contains(raw, []byte(`"cmd"`)) || bytes.Contains(raw, []byte("busybox")) {
			t.Fatal("the audit log holds request bodies")
		}
	})
}

func jobNames(jobs []*api.Job) []string {
	var out []string
	for _, j := range jobs {
		out = append(out, j.ID)
	}
	return out
}

func checkStatus(t *testing.T, err error, code int) {
	t.Helper()
	var se *api.StatusError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("err = %v, want HTTP %d", err, code)
	}
}

// readRaftFiles returns the bytes of every file under the server's Raft
// directory: its log, stable store and snapshots.
func readRaftFiles(t *testing.T, s *Server) []byte {
	t.Helper()
	var all []byte
	err := filepath.Walk(filepath.Join(s.cfg.DataDir, "server"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || strings.HasSuffix(p, "audit.log") {
			return err
		}
		b, err := os.ReadFile(p)
		all = append(all, b...)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func readAudit(t *testing.T, s *Server) []AuditRecord {
	t.Helper()
	fh, err := os.Open(s.auditLogPath())
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []AuditRecord
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		var r AuditRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, r)
	}
	return out
}

// TestACLThroughFollowers: ACL requests reach the leader through
// followers with their token (writes and consistent reads are
// forwarded), and a token made a moment ago works on a follower that
// has not applied it yet.
func TestACLThroughFollowers(t *testing.T) {
	s1 := startServer(t, clusterConfig(t, "s1", 3))
	s2 := startServer(t, clusterConfig(t, "s2", 3, s1.GossipAddr()))
	s3 := startServer(t, clusterConfig(t, "s3", 3, s2.GossipAddr()))
	servers := []*Server{s1, s2, s3}
	leader := findLeader(t, servers)
	var followers []*Server
	for _, s := range servers {
		if s != leader {
			followers = append(followers, s)
		}
	}
	waitUntil(t, 10*time.Second, "followers know the leader's address", func() bool {
		for _, f := range followers {
			if _, err := f.leaderHTTPAddr(); err != nil {
				return false
			}
		}
		return true
	})
	mgmt, _ := bootstrapACL(t, followers[0])
	if err := mgmt.ACL().ApplyPolicy(&api.ACLPolicy{Name: "web", Rules: []api.ACLRule{
		{JobPrefix: "web-", Capabilities: []string{api.CapRead, api.CapSubmit}}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tk, err := mgmt.ACL().CreateToken(&api.ACLTokenCreateRequest{Policies: []string{"web"}})
		if err != nil {
			t.Fatal(err)
		}
		c := client(t, followers[1])
		c.SetToken(tk.SecretID)
		name := fmt.Sprintf("web-%d", i)
		if _, err := c.Jobs().Register(simpleJob(name, 1, 100, 64)); err != nil {
			t.Fatalf("register %s with a fresh token through a follower: %v", name, err)
		}
		if _, _, err := c.Jobs().Info(name, nil); err != nil {
			t.Fatalf("read %s through a follower: %v", name, err)
		}
		_, err = c.Jobs().Register(simpleJob(fmt.Sprintf("db-%d", i), 1, 100, 64))
		checkStatus(t, err, http.StatusForbidden)
	}
	anon := client(t, followers[1])
	anon.SetToken("")
	_, _, err := anon.Jobs().List(nil)
	checkStatus(t, err, http.StatusForbidden)
}
