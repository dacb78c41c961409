package scheduler

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
)

// ACLs: every request is checked by one middleware (enforce) against one
// table (routeRules) that maps each route, method and path pattern, to what
// it needs. A route missing from the table needs a management token: a new
// route is closed until someone decides who may call it, and the test that
// walks the router's route list fails until then.
//
// ACLs are off in berth dev, and elsewhere until `berth acl bootstrap`:
// then every request without a token that allows it gets 403 with
// errPermissionDenied, which names nothing (no job, no node, no reason).

// errPermissionDenied is the one answer to every refused request.
var errPermissionDenied = echo.NewHTTPError(http.StatusForbidden,
	"permission denied: the request's ACL token does not allow this (set BERTH_TOKEN or run `berth login --cluster`)")

// ctxAuthz is the echo context key of the request's *authz.
const ctxAuthz = "berth.acl"

// need says what a route needs.
type need int

const (
	needManagement need = iota // the zero value: fail closed
	needPublic                 // anyone, token or not
	needCluster                // any token that may read something, or a node token: nodes, members, status
	needNode                   // the node capability: agents
	needJob                    // cap on the job named by :id
	needJobBody                // submit on the job in the body (and :id when the route has one), privileged/secrets when it uses them
	needJobList                // any token; the answer is filtered to readable jobs
	needAlloc                  // cap on the job of allocation :id
	needEval                   // cap on the job of evaluation :id
	needTokenSelf              // management, or the token reading itself
	needProxy                  // decided by agentRules on the proxied path
)

// routeRule is one line of the table.
type routeRule struct {
	need need
	cap  string // for needJob, needAlloc, needEval
	// filterKey, for needJobList, is the JSON field of each list element
	// that names its job ("id" for jobs, "job_id" for allocations and
	// evaluations).
	filterKey string
}

// routeRules maps "METHOD PATH" (echo's route path; METHOD "*" matches
// any method) to what the route needs. Keep it in step with the routes:
// TestACLRouteTable fails for a route it does not list.
var routeRules = map[string]routeRule{
	"GET /v1/jobs":                             {need: needJobList, filterKey: "id"},
	"POST /v1/jobs":                            {need: needJobBody},
	"GET /v1/jobs/:id":                         {need: needJob, cap: api.CapRead},
	"DELETE /v1/jobs/:id":                      {need: needJob, cap: api.CapSubmit},
	"GET /v1/jobs/:id/allocations":             {need: needJob, cap: api.CapRead},
	"POST /v1/jobs/:id/plan":                   {need: needJobBody},
	"GET /v1/allocations":                      {need: needJobList, filterKey: "job_id"},
	"GET /v1/allocations/:id":                  {need: needAlloc, cap: api.CapRead},
	"PUT /v1/allocations/status":               {need: needNode},
	"GET /v1/evaluations":                      {need: needJobList, filterKey: "job_id"},
	"GET /v1/evaluations/:id":                  {need: needEval, cap: api.CapRead},
	"GET /v1/nodes":                            {need: needCluster},
	"POST /v1/nodes/register":                  {need: needNode},
	"GET /v1/nodes/:id":                        {need: needCluster},
	"PUT /v1/nodes/:id/heartbeat":              {need: needNode},
	"GET /v1/nodes/:id/allocations":            {need: needNode},
	"POST /v1/nodes/:id/drain":                 {need: needManagement},
	"POST /v1/nodes/:id/eligibility":           {need: needManagement},
	"* /v1/nodes/:id/agent/*":                  {need: needProxy},
	"GET /v1/status/leader":                    {need: needCluster},
	"GET /v1/status/peers":                     {need: needCluster},
	"GET /v1/operator/raft/peers":              {need: needCluster},
	"DELETE /v1/operator/raft/peers":           {need: needManagement},
	"GET /v1/operator/scheduler/configuration": {need: needCluster},
	"PUT /v1/operator/scheduler/configuration": {need: needManagement},
	"PUT /v1/system/gc":                        {need: needManagement},
	"GET /v1/members":                          {need: needCluster},
	"GET /v1/metrics":                          {need: needCluster},
	"GET /v1/agent/health":                     {need: needPublic},
	"GET /v1/operator/keyring":                 {need: needManagement},
	"POST /v1/operator/keyring/:op":            {need: needManagement},

	"POST /v1/acl/bootstrap":          {need: needPublic},
	"GET /v1/acl/policies":            {need: needManagement},
	"POST /v1/acl/policies":           {need: needManagement},
	"GET /v1/acl/policies/:name":      {need: needManagement},
	"DELETE /v1/acl/policies/:name":   {need: needManagement},
	"GET /v1/acl/tokens":              {need: needManagement},
	"POST /v1/acl/tokens":             {need: needManagement},
	"GET /v1/acl/tokens/:accessor":    {need: needTokenSelf},
	"DELETE /v1/acl/tokens/:accessor": {need: needManagement},
	"GET /v1/secrets":                 {need: needManagement},
	"POST /v1/secrets":                {need: needManagement},
	"DELETE /v1/secrets/:name":        {need: needManagement},
}

// lookupRule finds the rule of a route; ok is false for routes the table
// does not know.
func lookupRule(method, path string) (routeRule, bool) {
	if r, ok := routeRules[method+" "+path]; ok {
		return r, true
	}
	r, ok := routeRules["* "+path]
	return r, ok
}

// authz is what one request's token allows.
type authz struct {
	accessor   string // "" for a request without a (valid) token
	management bool
	rules      []api.ACLRule
}

// ruleSelects reports whether a rule covers job.
func ruleSelects(r api.ACLRule, job string) bool {
	if r.Namespace != "" && r.Namespace != "*" && r.Namespace != aclNamespace {
		return false
	}
	return strings.HasPrefix(job, r.JobPrefix)
}

// ruleGlobal reports whether a rule covers every job.
func ruleGlobal(r api.ACLRule) bool {
	return (r.Namespace == "" || r.Namespace == "*" || r.Namespace == aclNamespace) && r.JobPrefix == ""
}

// aclNamespace is berth's only namespace.
const aclNamespace = "default"

func hasCap(r api.ACLRule, capability string) bool {
	for _, c := range r.Capabilities {
		if c == capability {
			return true
		}
	}
	return false
}

// allows reports whether the token may use capability on job.
func (a *authz) allows(capability, job string) bool {
	if a.management {
		return true
	}
	for _, r := range a.rules {
		if hasCap(r, capability) && ruleSelects(r, job) {
			return true
		}
	}
	return false
}

// allowsSecret reports whether the token may give job's tasks secret.
func (a *authz) allowsSecret(job, secret string) bool {
	if a.management {
		return true
	}
	for _, r := range a.rules {
		if hasCap(r, api.CapSecrets) && ruleSelects(r, job) && strings.HasPrefix(secret, r.SecretPrefix) {
			return true
		}
	}
	return false
}

// allowsAll reports whether the token may use capability on every job.
func (a *authz) allowsAll(capability string) bool {
	if a.management {
		return true
	}
	for _, r := range a.rules {
		if hasCap(r, capability) && ruleGlobal(r) {
			return true
		}
	}
	return false
}

// node reports whether the token is an agent's.
func (a *authz) node() bool {
	if a.management {
		return true
	}
	for _, r := range a.rules {
		if hasCap(r, api.CapNode) {
			return true
		}
	}
	return false
}

// cluster reports whether the token may read cluster-wide facts (nodes,
// members, leader): any token with a read right, or an agent's.
func (a *authz) cluster() bool {
	if a.management || a.node() {
		return true
	}
	for _, r := range a.rules {
		if hasCap(r, api.CapRead) {
			return true
		}
	}
	return false
}

// hashSecret is how a token's secret is stored and looked up: hex SHA-256.
func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// newSecretID makes a token secret: 256 random bits, hex.
func newSecretID() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// requestToken returns the token of an HTTP request: Authorization:
// Bearer TOKEN.
func requestToken(r *http.Request) string {
	h := strings.TrimSpace(r.Header.Get("Authorization"))
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// aclEnabled reports whether requests are checked: never in berth dev,
// elsewhere once bootstrapped.
func (s *Server) aclEnabled() bool {
	return !s.cfg.Dev && s.raft != nil && s.raft.State().ACLBootstrapped()
}

// resolveToken builds the authz of a request's token. An unknown token
// is treated as no token: both are refused the same way.
func (s *Server) resolveToken(secret string) (*authz, error) {
	a := &authz{}
	if secret == "" {
		return a, nil
	}
	st := s.raft.State()
	tk, err := st.ACLTokenBySecretHash(hashSecret(secret))
	if err != nil || tk == nil {
		return a, err
	}
	a.accessor = tk.AccessorID
	a.management = tk.Type == api.ACLTokenManagement
	for _, name := range tk.Policies {
		p, err := st.ACLPolicyByName(nil, name)
		if err != nil {
			return a, err
		}
		if p != nil {
			a.rules = append(a.rules, p.Rules...)
		}
	}
	return a, nil
}

// requestAuthz is the authz that enforce stored for this request; nil
// when ACLs are off.
func requestAuthz(c echo.Context) *authz {
	a, _ := c.Get(ctxAuthz).(*authz)
	return a
}

// enforce is the ACL middleware.
func (s *Server) enforce(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if !s.aclEnabled() {
			return next(c)
		}
		secret := requestToken(c.Request())
		a, err := s.resolveToken(secret)
		if err != nil {
			return err
		}
		if secret != "" && a.accessor == "" && !s.raft.IsLeader() && c.Request().Header.Get(headerForwarded) == "" {
			// A token made a moment ago may not have reached this
			// follower yet: the leader decides.
			if _, lerr := s.leaderHTTPAddr(); lerr == nil {
				return s.forward(c)
			}
		}
		c.Set(ctxAuthz, a)
		rule, ok := lookupRule(c.Request().Method, c.Path())
		if !ok {
			rule = routeRule{need: needManagement}
		}
		allowed, filter, err := s.check(c, a, rule)
		if err != nil {
			return err
		}
		if !allowed {
			return errPermissionDenied
		}
		if filter == nil || a.management {
			return next(c)
		}
		return filterResponse(c, next, filter)
	}
}

// check decides one request. filter, when not nil, must keep only the
// list elements it returns true for.
func (s *Server) check(c echo.Context, a *authz, rule routeRule) (allowed bool, filter func(json.RawMessage) bool, err error) {
	if rule.need == needPublic {
		return true, nil, nil
	}
	if a.accessor == "" {
		return false, nil, nil
	}
	st := s.raft.State()
	switch rule.need {
	case needManagement:
		return a.management, nil, nil
	case needCluster:
		return a.cluster(), nil, nil
	case needNode:
		if !a.node() {
			return false, nil, nil
		}
		if id := c.Param("id"); id != "" {
			ok, err := s.nodeBound(a, id)
			return ok, nil, err
		}
		return true, nil, nil
	case needJob:
		return a.allows(rule.cap, c.Param("id")), nil, nil
	case needJobBody:
		ok, err := s.checkJobBody(c, a)
		return ok, nil, err
	case needJobList:
		return true, jobFilter(a, rule.filterKey), nil
	case needAlloc:
		al, err := st.AllocByID(nil, c.Param("id"))
		if err != nil {
			return false, nil, err
		}
		if al == nil {
			return a.allowsAll(rule.cap), nil, nil
		}
		return a.allows(rule.cap, al.JobID), nil, nil
	case needEval:
		ev, err := st.EvalByID(nil, c.Param("id"))
		if err != nil {
			return false, nil, err
		}
		if ev == nil {
			return a.allowsAll(rule.cap), nil, nil
		}
		return a.allows(rule.cap, ev.JobID), nil, nil
	case needTokenSelf:
		return a.management || c.Param("accessor") == a.accessor || c.Param("accessor") == "self", nil, nil
	case needProxy:
		return s.checkProxy(c, a)
	}
	return false, nil, nil
}

// checkJobBody reads a submitted job (leaving the body for the handler)
// and checks submit on it, and privileged or secrets when its tasks use
// them. A body that does not decode is left to the handler's 400, but
// only for a token that may submit something.
func (s *Server) checkJobBody(c echo.Context, a *authz) (bool, error) {
	body, err := peekBody(c)
	if err != nil {
		return false, err
	}
	var req api.JobRegisterRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Job == nil {
		return a.management || anyCap(a, api.CapSubmit), nil
	}
	job := req.Job
	names := []string{job.Name}
	if job.ID != "" {
		names = append(names, job.ID)
	}
	if id := c.Param("id"); id != "" {
		names = append(names, id)
	}
	for _, name := range names {
		if !a.allows(api.CapSubmit, name) {
			return false, nil
		}
		for _, t := range job.Tasks() {
			if t.Privileged && !a.allows(api.CapPrivileged, name) {
				return false, nil
			}
			for _, ts := range t.Secrets {
				if !a.allowsSecret(name, ts.Name) {
					return false, nil
				}
			}
		}
	}
	return true, nil
}

func anyCap(a *authz, capability string) bool {
	for _, r := range a.rules {
		if hasCap(r, capability) {
			return true
		}
	}
	return false
}

// jobFilter keeps the list elements whose key field names a job the token
// may read.
func jobFilter(a *authz, key string) func(json.RawMessage) bool {
	return func(raw json.RawMessage) bool {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return false
		}
		var job string
		if json.Unmarshal(m[key], &job) != nil {
			return false
		}
		return a.allows(api.CapRead, job)
	}
}

// captureWriter holds a response back so that a list can be filtered
// before it is sent.
type captureWriter struct {
	header http.Header
	code   int
	buf    bytes.Buffer
}

func (w *captureWriter) Header() http.Header         { return w.header }
func (w *captureWriter) Write(b []byte) (int, error) { return w.buf.Write(b) }
func (w *captureWriter) WriteHeader(code int)        { w.code = code }
func (w *captureWriter) Flush()                      {}

// filterResponse runs next with the response held back, and sends it with
// only the JSON array elements keep accepts. Anything but a 200 JSON
// array goes out as it came.
func filterResponse(c echo.Context, next echo.HandlerFunc, keep func(json.RawMessage) bool) error {
	return rewriteResponse(c, next, func(body []byte) []byte {
		var list []json.RawMessage
		if json.Unmarshal(body, &list) != nil {
			return body
		}
		out := make([]json.RawMessage, 0, len(list))
		for _, el := range list {
			if keep(el) {
				out = append(out, el)
			}
		}
		b, err := json.Marshal(out)
		if err != nil {
			return body
		}
		return append(b, '\n')
	})
}

// rewriteResponse runs next with the response held back and sends a 200
// answer's body through edit. The Content-Length, if any, is dropped.
func rewriteResponse(c echo.Context, next echo.HandlerFunc, edit func([]byte) []byte) error {
	res := c.Response()
	orig := res.Writer
	cw := &captureWriter{header: orig.Header()}
	res.Writer = cw
	err := next(c)
	res.Writer = orig
	if !res.Committed {
		return err
	}
	body := cw.buf.Bytes()
	code := cw.code
	if code == 0 {
		code = http.StatusOK
	}
	if code == http.StatusOK {
		body = edit(body)
	}
	orig.Header().Del("Content-Length")
	orig.WriteHeader(code)
	if _, werr := orig.Write(body); werr != nil && err == nil {
		err = werr
	}
	return err
}

// --- ACL routes

// aclRoutes registers the ACL and secret routes on /v1.
func (s *Server) aclRoutes(v *echo.Group) {
	v.POST("/acl/bootstrap", s.leaderOnly(s.aclBootstrap))
	v.GET("/acl/policies", s.aclPolicyList)
	v.POST("/acl/policies", s.leaderOnly(s.aclPolicyApply))
	v.GET("/acl/policies/:name", s.aclPolicyGet)
	v.DELETE("/acl/policies/:name", s.leaderOnly(s.aclPolicyDelete))
	v.GET("/acl/tokens", s.aclTokenList)
	v.POST("/acl/tokens", s.leaderOnly(s.aclTokenCreate))
	v.GET("/acl/tokens/:accessor", s.aclTokenGet)
	v.DELETE("/acl/tokens/:accessor", s.leaderOnly(s.aclTokenDelete))
	s.secretRoutes(v)
}

// aclError maps the FSM's ACL refusals to HTTP answers.
func aclError(err error) error {
	switch {
	case errors.Is(err, consensus.ErrACLBootstrapped):
		return echo.NewHTTPError(http.StatusConflict, "ACLs are already bootstrapped: the management token was made once; create more with `berth acl token create`")
	case errors.Is(err, consensus.ErrACLPolicyNotFound), errors.Is(err, consensus.ErrACLTokenNotFound), errors.Is(err, consensus.ErrSecretNotFound):
		return echo.NewHTTPError(http.StatusNotFound, strings.TrimPrefix(err.Error(), "consensus: "))
	}
	return err
}

// publicToken is what the API shows of a stored token: never its hash.
func publicToken(tk *consensus.ACLToken) *api.ACLToken {
	out := tk.ACLToken
	out.SecretID = ""
	out.Policies = append([]string(nil), tk.Policies...)
	return &out
}

func (s *Server) aclBootstrap(c echo.Context) error {
	if s.cfg.Dev {
		return badRequest("ACLs are off in berth dev; run `berth server` to use them")
	}
	if s.raft.State().ACLBootstrapped() {
		return aclError(consensus.ErrACLBootstrapped)
	}
	tk, secret, err := s.newToken("bootstrap management token", api.ACLTokenManagement, nil)
	if err != nil {
		return err
	}
	idx, err := s.raft.Apply(consensus.ACLBootstrapRequestType, &consensus.ACLBootstrapRequest{Token: tk}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	s.log.Info("ACLs bootstrapped", "accessor", tk.AccessorID, "index", idx)
	out := publicToken(tk)
	out.SecretID = secret
	out.CreateIndex, out.ModifyIndex = idx, idx
	return s.reply(c, http.StatusOK, idx, out)
}

// newToken makes a token's accessor and secret (here, never in the FSM).
func (s *Server) newToken(name, typ string, policies []string) (*consensus.ACLToken, string, error) {
	secret, err := newSecretID()
	if err != nil {
		return nil, "", err
	}
	tk := &consensus.ACLToken{
		ACLToken: api.ACLToken{AccessorID: newID(), Name: name, Type: typ, Policies: policies,
			CreateTime: time.Now().UnixNano()},
		SecretHash: hashSecret(secret),
	}
	return tk, secret, nil
}

var validCaps = map[string]bool{
	api.CapRead: true, api.CapSubmit: true, api.CapLogs: true, api.CapExec: true, api.CapAttach: true,
	api.CapPrivileged: true, api.CapSecrets: true, api.CapNode: true,
}

// validName accepts the names of policies and secrets: letters, digits,
// '-', '_' and '.', up to 128 characters, not starting with '.'.
func validName(n string) bool {
	if n == "" || len(n) > 128 || n[0] == '.' {
		return false
	}
	for _, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func validatePolicy(p *api.ACLPolicy) error {
	if p == nil {
		return badRequest("policy: is missing; send {\"policy\": {...}}")
	}
	if !validName(p.Name) {
		return badRequest("policy.name: %q must be 1-128 letters, digits, '-', '_' or '.'", p.Name)
	}
	if len(p.Rules) == 0 {
		return badRequest("policy.rules: give at least one rule")
	}
	for i, r := range p.Rules {
		if r.Namespace != "" && r.Namespace != "*" && r.Namespace != aclNamespace {
			return badRequest("policy.rules[%d].namespace: %q is not %q or \"*\" (berth has one namespace)", i, r.Namespace, aclNamespace)
		}
		if len(r.Capabilities) == 0 {
			return badRequest("policy.rules[%d].capabilities: give at least one of read, submit, logs, exec, attach, privileged, secrets, node", i)
		}
		for _, c := range r.Capabilities {
			if !validCaps[c] {
				return badRequest("policy.rules[%d].capabilities: %q is not one of read, submit, logs, exec, attach, privileged, secrets, node", i, c)
			}
		}
	}
	return nil
}

func (s *Server) aclPolicyApply(c echo.Context) error {
	var req api.ACLPolicyRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if err := validatePolicy(req.Policy); err != nil {
		return err
	}
	p := req.Policy
	p.CreateIndex, p.ModifyIndex = 0, 0
	idx, err := s.raft.Apply(consensus.ACLPolicyUpsertRequestType, &consensus.ACLPolicyUpsertRequest{Policies: []*api.ACLPolicy{p}}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

func (s *Server) aclPolicyList(c echo.Context) error {
	ps, err := s.raft.State().ACLPolicies(nil)
	if err != nil {
		return err
	}
	if ps == nil {
		ps = []*api.ACLPolicy{}
	}
	return s.reply(c, http.StatusOK, 0, ps)
}

func (s *Server) aclPolicyGet(c echo.Context) error {
	p, err := s.raft.State().ACLPolicyByName(nil, c.Param("name"))
	if err != nil {
		return err
	}
	if p == nil {
		return notFound("ACL policy %q not found", c.Param("name"))
	}
	return s.reply(c, http.StatusOK, p.ModifyIndex, p)
}

func (s *Server) aclPolicyDelete(c echo.Context) error {
	idx, err := s.raft.Apply(consensus.ACLPolicyDeleteRequestType, &consensus.ACLPolicyDeleteRequest{Names: []string{c.Param("name")}}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

func (s *Server) aclTokenCreate(c echo.Context) error {
	var req api.ACLTokenCreateRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if req.Type == "" {
		req.Type = api.ACLTokenClient
	}
	switch req.Type {
	case api.ACLTokenClient:
		if len(req.Policies) == 0 {
			return badRequest("policies: a client token needs at least one policy")
		}
	case api.ACLTokenManagement:
		if len(req.Policies) > 0 {
			return badRequest("policies: a management token may do everything; give it no policies")
		}
	default:
		return badRequest("type: %q is not client or management", req.Type)
	}
	if len(req.Name) > 256 {
		return badRequest("name: longer than 256 characters")
	}
	st := s.raft.State()
	for _, name := range req.Policies {
		if p, err := st.ACLPolicyByName(nil, name); err != nil {
			return err
		} else if p == nil {
			return badRequest("policies: policy %q does not exist; create it with `berth acl policy apply`", name)
		}
	}
	tk, secret, err := s.newToken(req.Name, req.Type, req.Policies)
	if err != nil {
		return err
	}
	idx, err := s.raft.Apply(consensus.ACLTokenUpsertRequestType, &consensus.ACLTokenUpsertRequest{Tokens: []*consensus.ACLToken{tk}}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	out := publicToken(tk)
	out.SecretID = secret
	out.CreateIndex, out.ModifyIndex = idx, idx
	return s.reply(c, http.StatusOK, idx, out)
}

func (s *Server) aclTokenList(c echo.Context) error {
	toks, err := s.raft.State().ACLTokens(nil)
	if err != nil {
		return err
	}
	out := make([]*api.ACLToken, 0, len(toks))
	for _, tk := range toks {
		out = append(out, publicToken(tk))
	}
	return s.reply(c, http.StatusOK, 0, out)
}

func (s *Server) aclTokenGet(c echo.Context) error {
	id := c.Param("accessor")
	if a := requestAuthz(c); id == "self" {
		if a == nil || a.accessor == "" {
			return notFound("no ACL token: ACLs are off, or the request carried none")
		}
		id = a.accessor
	}
	tk, err := s.raft.State().ACLTokenByAccessor(nil, id)
	if err != nil {
		return err
	}
	if tk == nil {
		return notFound("ACL token %q not found", id)
	}
	return s.reply(c, http.StatusOK, tk.ModifyIndex, publicToken(tk))
}

func (s *Server) aclTokenDelete(c echo.Context) error {
	idx, err := s.raft.Apply(consensus.ACLTokenDeleteRequestType, &consensus.ACLTokenDeleteRequest{AccessorIDs: []string{c.Param("accessor")}}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

// peekBody reads the request body (up to the API's limit) and puts it
// back for the handler.
func peekBody(c echo.Context) ([]byte, error) {
	r := c.Request()
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, badRequest("read request body: %v", err)
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body, nil
}

// nodeBound reports whether a node token may act for node nodeID: a node
// belongs to the token that registered it, so one agent's token cannot
// read another node's allocations (and the secrets in them) or speak for
// it. A management token may act for any node; a node whose token was
// deleted may be taken over by the next one (how a node token rotates).
func (s *Server) nodeBound(a *authz, nodeID string) (bool, error) {
	if a == nil || a.management {
		return true, nil
	}
	st := s.raft.State()
	n, err := st.NodeByID(nil, nodeID)
	if err != nil || n == nil || n.TokenAccessor == "" || n.TokenAccessor == a.accessor {
		return err == nil, err
	}
	owner, err := st.ACLTokenByAccessor(nil, n.TokenAccessor)
	if err != nil {
		return false, err
	}
	return owner == nil, nil
}
