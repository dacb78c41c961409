package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// EnvToken is the environment variable that carries an ACL token's secret.
// It wins over a token stored by `berth login --cluster`.
const EnvToken = "BERTH_TOKEN"

// ACL capabilities a policy rule may grant. Logs, exec and attach are
// separate rights: reading a job's output does not allow running commands
// in its containers.
const (
	CapRead       = "read"       // see the job, its allocations, evaluations and containers
	CapSubmit     = "submit"     // register, plan and stop the job
	CapLogs       = "logs"       // read its containers' logs
	CapExec       = "exec"       // run commands in its containers
	CapAttach     = "attach"     // attach to its containers' terminals
	CapPrivileged = "privileged" // submit privileged tasks
	CapSecrets    = "secrets"    // let its tasks mount cluster secrets
	CapNode       = "node"       // agent: register, heartbeat, watch and report allocations
)

// ACL token types. A management token may do everything; a client token
// may do what its policies grant.
const (
	ACLTokenManagement = "management"
	ACLTokenClient     = "client"
)

// ACLPolicy is a named set of rules that tokens refer to.
type ACLPolicy struct {
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Rules       []ACLRule `json:"rules"`
	CreateIndex uint64    `json:"create_index,omitempty"`
	ModifyIndex uint64    `json:"modify_index,omitempty"`
}

// ACLRule grants capabilities on the jobs it selects. berth has one
// namespace, "default": Namespace "default" or "*" selects every job,
// JobPrefix the jobs whose name starts with it; an empty rule (neither set)
// selects every job too. The node capability ignores the selection.
type ACLRule struct {
	Namespace    string   `json:"namespace,omitempty"`
	JobPrefix    string   `json:"job_prefix,omitempty"`
	Capabilities []string `json:"capabilities"`
	// SecretPrefix narrows the secrets capability to the secrets whose
	// names start with it; empty means every secret.
	SecretPrefix string `json:"secret_prefix,omitempty"`
}

// ACLToken is a token as the API shows it: the accessor ID identifies it
// in lists and the audit log; SecretID is only ever returned once, by the
// call that created it (the servers keep only its SHA-256).
type ACLToken struct {
	AccessorID  string   `json:"accessor_id"`
	SecretID    string   `json:"secret_id,omitempty"`
	Name        string   `json:"name,omitempty"`
	Type        string   `json:"type"`
	Policies    []string `json:"policies,omitempty"`
	CreateTime  int64    `json:"create_time,omitempty"` // unix nanoseconds
	CreateIndex uint64   `json:"create_index,omitempty"`
	ModifyIndex uint64   `json:"modify_index,omitempty"`
}

// ACLTokenCreateRequest asks for a new token; the server makes its
// accessor and secret.
type ACLTokenCreateRequest struct {
	Name     string   `json:"name,omitempty"`
	Type     string   `json:"type,omitempty"` // client (default) or management
	Policies []string `json:"policies,omitempty"`
}

// ACLPolicyRequest creates or replaces a policy.
type ACLPolicyRequest struct {
	Policy *ACLPolicy `json:"policy"`
}

// ACL is the client of the /v1/acl routes.
type ACL struct{ c *Client }

// ACL returns the client of the ACL routes.
func (c *Client) ACL() *ACL { return &ACL{c} }

// Bootstrap turns ACLs on and returns the first management token, secret
// included. It succeeds once per cluster.
func (a *ACL) Bootstrap() (*ACLToken, error) {
	var out ACLToken
	_, err := a.c.Do(http.MethodPost, "/v1/acl/bootstrap", nil, struct{}{}, &out)
	return &out, err
}

// ApplyPolicy creates or replaces a policy.
func (a *ACL) ApplyPolicy(p *ACLPolicy) error {
	_, err := a.c.Do(http.MethodPost, "/v1/acl/policies", nil, &ACLPolicyRequest{Policy: p}, nil)
	return err
}

// Policies lists the policies.
func (a *ACL) Policies() ([]*ACLPolicy, error) {
	var out []*ACLPolicy
	_, err := a.c.Do(http.MethodGet, "/v1/acl/policies", nil, nil, &out)
	return out, err
}

// Policy reads one policy.
func (a *ACL) Policy(name string) (*ACLPolicy, error) {
	var out ACLPolicy
	_, err := a.c.Do(http.MethodGet, "/v1/acl/policies/"+url.PathEscape(name), nil, nil, &out)
	return &out, err
}

// DeletePolicy deletes a policy.
func (a *ACL) DeletePolicy(name string) error {
	_, err := a.c.Do(http.MethodDelete, "/v1/acl/policies/"+url.PathEscape(name), nil, nil, nil)
	return err
}

// CreateToken makes a token; the answer carries its secret, shown once.
func (a *ACL) CreateToken(req *ACLTokenCreateRequest) (*ACLToken, error) {
	var out ACLToken
	_, err := a.c.Do(http.MethodPost, "/v1/acl/tokens", nil, req, &out)
	return &out, err
}

// Tokens lists the tokens (accessors only).
func (a *ACL) Tokens() ([]*ACLToken, error) {
	var out []*ACLToken
	_, err := a.c.Do(http.MethodGet, "/v1/acl/tokens", nil, nil, &out)
	return out, err
}

// Token reads one token by accessor ID ("self": the caller's own token).
func (a *ACL) Token(accessor string) (*ACLToken, error) {
	var out ACLToken
	_, err := a.c.Do(http.MethodGet, "/v1/acl/tokens/"+url.PathEscape(accessor), nil, nil, &out)
	return &out, err
}

// DeleteToken revokes a token by accessor ID.
func (a *ACL) DeleteToken(accessor string) error {
	_, err := a.c.Do(http.MethodDelete, "/v1/acl/tokens/"+url.PathEscape(accessor), nil, nil, nil)
	return err
}

// clusterTokensKey is the key of berth's client config file (the file
// `berth login` writes, $BERTH_CONFIG or ~/.berth/config.json) under which
// `berth login --cluster` keeps ACL tokens, by server address.
const clusterTokensKey = "cluster-tokens"

// DefaultToken returns the ACL token a client for addr sends: $BERTH_TOKEN,
// else the token `berth login --cluster` stored for addr, else "" (no
// token; fine while ACLs are off).
func DefaultToken(addr string) string {
	if t := strings.TrimSpace(os.Getenv(EnvToken)); t != "" {
		return t
	}
	tokens, err := ClusterTokens(ClientConfigPath())
	if err != nil {
		return ""
	}
	if norm, err := normalizeAddr(addr); err == nil {
		addr = norm
	}
	return tokens[addr]
}

// ClientConfigPath returns $BERTH_CONFIG, else ~/.berth/config.json, the
// file berth's login commands write.
func ClientConfigPath() string {
	if p := os.Getenv("BERTH_CONFIG"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/"
	}
	return filepath.Join(home, ".berth", "config.json")
}

// ClusterTokens reads the tokens stored by `berth login --cluster` in the
// config file at path, keyed by normalized server address. A missing file
// holds none.
func ClusterTokens(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return map[string]string{}, nil
		}
		return nil, err
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, err
	}
	out := map[string]string{}
	if raw, ok := cfg[clusterTokensKey]; ok {
		if err := json.Unmarshal(raw, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SaveClusterToken stores (or, with an empty token, removes) the token for
// the server at addr in the config file at path, keeping every other key,
// with mode 0600. It returns the normalized address it stored it under.
func SaveClusterToken(path, addr, token string) (string, error) {
	norm, err := normalizeAddr(addr)
	if err != nil {
		return "", err
	}
	cfg := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return "", err
		}
	} else if !os.IsNotExist(err) {
		return "", err
	}
	tokens := map[string]string{}
	if raw, ok := cfg[clusterTokensKey]; ok {
		if err := json.Unmarshal(raw, &tokens); err != nil {
			return "", err
		}
	}
	if token == "" {
		delete(tokens, norm)
	} else {
		tokens[norm] = token
	}
	raw, err := json.Marshal(tokens)
	if err != nil {
		return "", err
	}
	cfg[clusterTokensKey] = raw
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.json")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	return norm, os.Rename(tmp.Name(), path)
}

// setToken puts token in req's Authorization header.
func setToken(req *http.Request, token string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
}

// SetToken sets the ACL token the client sends (NewClient starts with
// DefaultToken); "" sends none.
func (c *Client) SetToken(token string) { c.token = token }

// Token is the ACL token the client sends.
func (c *Client) Token() string { return c.token }

// SetToken sets the ACL token the agent client sends; "" sends none.
func (c *AgentClient) SetToken(token string) { c.token = token }
