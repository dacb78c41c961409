package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// DefaultAddr is the server the client talks to when neither the caller nor
// BERTH_ADDR names one.
const DefaultAddr = "http://127.0.0.1:9470"

// EnvAddr is the environment variable that chooses the server.
const EnvAddr = "BERTH_ADDR"

// Client errors. Check them with errors.Is.
var (
	// ErrUnreachable means no HTTP answer came back from the server: it is
	// not running, the address is wrong, or the network is cut.
	ErrUnreachable = errors.New("api: cannot reach the berth server")
	// ErrBadAddress means the server address could not be parsed.
	ErrBadAddress = errors.New("api: invalid server address")
)

// StatusError is a non-2xx answer from the server. Message is the server's
// {"error": ...} text, or the response status when the body had none.
type StatusError struct {
	Code    int
	Message string
	Method  string
	Path    string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Code)
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == http.StatusNotFound
}

// QueryOptions tune a read. A non-zero WaitIndex turns the read into a
// blocking query: the server answers once its state passes WaitIndex, or
// after WaitTime (the server's default when zero) with the old state.
type QueryOptions struct {
	WaitIndex uint64
	WaitTime  time.Duration
}

// QueryMeta is what a read observed: LastIndex, from X-Berth-Index, is the
// index to pass as the next blocking query's WaitIndex.
type QueryMeta struct {
	LastIndex   uint64
	RequestTime time.Duration
}

// Client talks to one berth server over HTTP. It is safe for concurrent use
// by many goroutines. Writes sent to a follower are forwarded to the leader
// by the server, so any server will do.
type Client struct {
	addr string // scheme://host:port, no trailing slash
	http *http.Client
	ctx  context.Context
	// token is the ACL token sent as Authorization: Bearer (acl.go).
	token string
}

// NewClient returns a client for addr. An empty addr means $BERTH_ADDR, and
// then DefaultAddr. A bare host:port gets http://.
func NewClient(addr string) (*Client, error) {
	if addr == "" {
		addr = os.Getenv(EnvAddr)
	}
	if addr == "" {
		addr = DefaultAddr
	}
	norm, err := normalizeAddr(addr)
	if err != nil {
		return nil, err
	}
	tr, err := transportFor(norm, 64)
	if err != nil {
		return nil, err
	}
	return &Client{
		addr: norm,
		// No overall timeout: blocking queries legitimately take as long
		// as their wait. Callers bound a request with WithContext.
		http:  &http.Client{Transport: tr},
		ctx:   context.Background(),
		token: DefaultToken(norm),
	}, nil
}

func normalizeAddr(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if !strings.Contains(addr, "://") {
		addr = defaultScheme() + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", fmt.Errorf("%w %q: %v; use http://HOST:PORT", ErrBadAddress, addr, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%w %q: scheme must be http or https", ErrBadAddress, addr)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%w %q: no host; use http://HOST:PORT", ErrBadAddress, addr)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "9470")
	}
	return u.Scheme + "://" + u.Host + strings.TrimRight(u.Path, "/"), nil
}

// Address is the server URL the client uses.
func (c *Client) Address() string { return c.addr }

// WithContext returns a copy of the client whose requests are bound to ctx
// (cancel it to abort a blocking query).
func (c *Client) WithContext(ctx context.Context) *Client {
	cp := *c
	cp.ctx = ctx
	return &cp
}

// SetHTTPClient replaces the underlying HTTP client (TLS, proxies, tests).
func (c *Client) SetHTTPClient(h *http.Client) { c.http = h }

// Do sends one JSON request and decodes a JSON answer into out (when out is
// non-nil). body, when non-nil, is encoded as JSON. It is the building block
// of the typed methods and is exported for routes they do not cover.
func (c *Client) Do(method, path string, query url.Values, body, out any) (*QueryMeta, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("api: encode %s %s body: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	start := time.Now()
	resp, err := c.Raw(method, path, query, rd)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	meta := &QueryMeta{RequestTime: time.Since(start)}
	if v := resp.Header.Get(HeaderIndex); v != "" {
		meta.LastIndex, _ = strconv.ParseUint(v, 10, 64)
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return meta, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if err == io.EOF {
			return meta, nil // an empty 2xx answer leaves out as it was
		}
		return meta, fmt.Errorf("api: decode answer of %s %s from %s: %w", method, path, c.addr, err)
	}
	return meta, nil
}

// Raw sends a request with a raw body and returns the response of a 2xx
// answer (the caller closes its Body: use it for streams such as logs).
// A non-2xx answer becomes a *StatusError.
func (c *Client) Raw(method, path string, query url.Values, body io.Reader) (*http.Response, error) {
	u := c.addr + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(c.ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("api: build request %s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	setToken(req, c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		if ctxErr := c.ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("api: %s %s: %w", method, path, ctxErr)
		}
		if hint := tlsHint(err); hint != "" {
			return nil, fmt.Errorf("%w at %s (%s %s: %w)%s", ErrUnreachable, c.addr, method, path, unwrapURLError(err), hint)
		}
		return nil, fmt.Errorf("%w at %s (%s %s: %w); start one with `berth dev`, or set %s to a running server",
			ErrUnreachable, c.addr, method, path, unwrapURLError(err), EnvAddr)
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, statusError(resp, method, path)
	}
	return resp, nil
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func statusError(resp *http.Response, method, path string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	se := &StatusError{Code: resp.StatusCode, Method: method, Path: path}
	var e Error
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		se.Message = e.Error
	} else if s := strings.TrimSpace(string(b)); s != "" && len(s) < 300 && !strings.ContainsAny(s, "\n<") {
		se.Message = s
	} else {
		se.Message = fmt.Sprintf("%s %s: %s", method, path, http.StatusText(resp.StatusCode))
	}
	return se
}

func (q *QueryOptions) values() url.Values {
	if q == nil {
		return nil
	}
	v := url.Values{}
	if q.WaitIndex > 0 {
		v.Set("index", strconv.FormatUint(q.WaitIndex, 10))
	}
	if q.WaitTime > 0 {
		v.Set("wait", q.WaitTime.String())
	}
	return v
}

func (c *Client) get(path string, q *QueryOptions, out any) (*QueryMeta, error) {
	return c.Do(http.MethodGet, path, q.values(), nil, out)
}

func esc(s string) string { return url.PathEscape(s) }

// Jobs returns the job endpoints.
func (c *Client) Jobs() *Jobs { return &Jobs{c} }

// Nodes returns the node endpoints.
func (c *Client) Nodes() *Nodes { return &Nodes{c} }

// Allocations returns the allocation endpoints.
func (c *Client) Allocations() *Allocations { return &Allocations{c} }

// Evaluations returns the evaluation endpoints.
func (c *Client) Evaluations() *Evaluations { return &Evaluations{c} }

// Status returns the cluster status endpoints.
func (c *Client) Status() *Status { return &Status{c} }

// Operator returns the operator endpoints.
func (c *Client) Operator() *Operator { return &Operator{c} }

// Members lists the gossip pool, servers and agents.
func (c *Client) Members() ([]Member, error) {
	var out []Member
	_, err := c.get("/v1/members", nil, &out)
	return out, err
}

// Health asks the server whether it is up, and who it thinks leads.
func (c *Client) Health() (*Health, error) {
	var out Health
	if _, err := c.get("/v1/agent/health", nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Jobs is the /v1/jobs endpoints.
type Jobs struct{ c *Client }

// Register submits or updates a job. Once it returns, the job is committed.
func (j *Jobs) Register(job *Job) (*JobRegisterResponse, error) {
	var out JobRegisterResponse
	if _, err := j.c.Do(http.MethodPost, "/v1/jobs", nil, &JobRegisterRequest{Job: job}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Plan is a dry run of Register: what would be placed, stopped or fail.
func (j *Jobs) Plan(job *Job) (*JobPlanResponse, error) {
	id := job.ID
	if id == "" {
		id = job.Name
	}
	var out JobPlanResponse
	if _, err := j.c.Do(http.MethodPost, "/v1/jobs/"+esc(id)+"/plan", nil, &JobRegisterRequest{Job: job}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every job.
func (j *Jobs) List(q *QueryOptions) ([]*Job, *QueryMeta, error) {
	var out []*Job
	m, err := j.c.get("/v1/jobs", q, &out)
	return out, m, err
}

// Info returns one job by ID (its name).
func (j *Jobs) Info(id string, q *QueryOptions) (*Job, *QueryMeta, error) {
	var out Job
	m, err := j.c.get("/v1/jobs/"+esc(id), q, &out)
	if err != nil {
		return nil, m, err
	}
	return &out, m, nil
}

// Allocations returns a job's allocations, terminal ones included.
func (j *Jobs) Allocations(id string, q *QueryOptions) ([]*Allocation, *QueryMeta, error) {
	var out []*Allocation
	m, err := j.c.get("/v1/jobs/"+esc(id)+"/allocations", q, &out)
	return out, m, err
}

// Deregister stops a job; purge also removes it from the state.
func (j *Jobs) Deregister(id string, purge bool) (*JobDeregisterResponse, error) {
	var v url.Values
	if purge {
		v = url.Values{"purge": {"true"}}
	}
	var out JobDeregisterResponse
	if _, err := j.c.Do(http.MethodDelete, "/v1/jobs/"+esc(id), v, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Nodes is the /v1/nodes endpoints.
type Nodes struct{ c *Client }

// Register registers or re-registers a node (agents call it).
func (n *Nodes) Register(node *Node) (*NodeRegisterResponse, error) {
	var out NodeRegisterResponse
	if _, err := n.c.Do(http.MethodPost, "/v1/nodes/register", nil, &NodeRegisterRequest{Node: node}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Heartbeat tells the server the node is alive.
func (n *Nodes) Heartbeat(id string) (*NodeRegisterResponse, error) {
	var out NodeRegisterResponse
	if _, err := n.c.Do(http.MethodPut, "/v1/nodes/"+esc(id)+"/heartbeat", nil, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// List returns every node.
func (n *Nodes) List(q *QueryOptions) ([]*Node, *QueryMeta, error) {
	var out []*Node
	m, err := n.c.get("/v1/nodes", q, &out)
	return out, m, err
}

// Info returns one node by ID, unique ID prefix, or name.
func (n *Nodes) Info(idOrName string, q *QueryOptions) (*Node, *QueryMeta, error) {
	var out Node
	m, err := n.c.get("/v1/nodes/"+esc(idOrName), q, &out)
	if err != nil {
		return nil, m, err
	}
	return &out, m, nil
}

// Allocations returns the allocations placed on a node; agents block on it.
func (n *Nodes) Allocations(id string, q *QueryOptions) ([]*Allocation, *QueryMeta, error) {
	var out []*Allocation
	m, err := n.c.get("/v1/nodes/"+esc(id)+"/allocations", q, &out)
	return out, m, err
}

// Drain turns a node's drain on (move its service allocations away, take
// no new ones) or off.
func (n *Nodes) Drain(id string, enable bool) (*WriteResponse, error) {
	var out WriteResponse
	if _, err := n.c.Do(http.MethodPost, "/v1/nodes/"+esc(id)+"/drain", nil, &NodeDrainRequest{Enable: enable}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Eligibility marks a node eligible or ineligible for new placements.
func (n *Nodes) Eligibility(id string, eligible bool) (*WriteResponse, error) {
	var out WriteResponse
	if _, err := n.c.Do(http.MethodPost, "/v1/nodes/"+esc(id)+"/eligibility", nil, &NodeEligibilityRequest{Eligible: eligible}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Allocations is the /v1/allocations endpoints.
type Allocations struct{ c *Client }

// List returns every allocation.
func (a *Allocations) List(q *QueryOptions) ([]*Allocation, *QueryMeta, error) {
	var out []*Allocation
	m, err := a.c.get("/v1/allocations", q, &out)
	return out, m, err
}

// Info returns one allocation.
func (a *Allocations) Info(id string, q *QueryOptions) (*Allocation, *QueryMeta, error) {
	var out Allocation
	m, err := a.c.get("/v1/allocations/"+esc(id), q, &out)
	if err != nil {
		return nil, m, err
	}
	return &out, m, nil
}

// UpdateStatus reports allocations' client status (agents call it). Only
// ID, ClientStatus, ClientDescription and TaskStates are read.
func (a *Allocations) UpdateStatus(allocs []*Allocation) (*WriteResponse, error) {
	var out WriteResponse
	if _, err := a.c.Do(http.MethodPut, "/v1/allocations/status", nil, &AllocUpdateRequest{Allocs: allocs}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Evaluations is the /v1/evaluations endpoints.
type Evaluations struct{ c *Client }

// List returns every evaluation.
func (e *Evaluations) List(q *QueryOptions) ([]*Evaluation, *QueryMeta, error) {
	var out []*Evaluation
	m, err := e.c.get("/v1/evaluations", q, &out)
	return out, m, err
}

// Info returns one evaluation.
func (e *Evaluations) Info(id string, q *QueryOptions) (*Evaluation, *QueryMeta, error) {
	var out Evaluation
	m, err := e.c.get("/v1/evaluations/"+esc(id), q, &out)
	if err != nil {
		return nil, m, err
	}
	return &out, m, nil
}

// Status is the /v1/status endpoints.
type Status struct{ c *Client }

// Leader returns the leader's Raft address ("IP:PORT"), or "" when the
// cluster has none.
func (s *Status) Leader() (string, error) {
	var out string
	_, err := s.c.get("/v1/status/leader", nil, &out)
	return out, err
}

// Peers returns the Raft addresses of the servers.
func (s *Status) Peers() ([]string, error) {
	var out []string
	_, err := s.c.get("/v1/status/peers", nil, &out)
	return out, err
}

// Operator is the /v1/operator endpoints.
type Operator struct{ c *Client }

// RaftPeers returns the Raft configuration.
func (o *Operator) RaftPeers() ([]RaftPeer, error) {
	var out []RaftPeer
	_, err := o.c.get("/v1/operator/raft/peers", nil, &out)
	return out, err
}

// RemoveRaftPeer removes a server (by Raft ID) from the configuration.
func (o *Operator) RemoveRaftPeer(id string) (*WriteResponse, error) {
	var out WriteResponse
	if _, err := o.c.Do(http.MethodDelete, "/v1/operator/raft/peers", url.Values{"id": {id}}, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
