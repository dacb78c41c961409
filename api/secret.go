package api

import (
	"net/http"
	"net/url"
)

// DefaultSecretDir is where a task's secrets are mounted unless its
// TaskSecret names another target.
const DefaultSecretDir = "/run/secrets"

// TaskSecret mounts a cluster secret into a task's container as a file on
// a tmpfs, readable by the container's root only (mode 0400). Target
// defaults to /run/secrets/NAME. Value is never stored in a job: the
// servers fill it in only on the allocations they hand to the node that
// runs the task (GET /v1/nodes/{id}/allocations).
type TaskSecret struct {
	Name   string `json:"name"`
	Target string `json:"target,omitempty"`
	Value  []byte `json:"value,omitempty"`
}

// Secret is a secret as the API lists it: never its value.
type Secret struct {
	Name        string `json:"name"`
	CreateTime  int64  `json:"create_time,omitempty"` // unix nanoseconds
	CreateIndex uint64 `json:"create_index,omitempty"`
	ModifyIndex uint64 `json:"modify_index,omitempty"`
}

// SecretCreateRequest creates or replaces a secret.
type SecretCreateRequest struct {
	Name  string `json:"name"`
	Value []byte `json:"value"` // base64 in JSON
}

// Secrets is the client of the /v1/secrets routes.
type Secrets struct{ c *Client }

// Secrets returns the client of the secret routes.
func (c *Client) Secrets() *Secrets { return &Secrets{c} }

// Create stores a secret (encrypted by the servers) under name.
func (s *Secrets) Create(name string, value []byte) (*WriteResponse, error) {
	var out WriteResponse
	_, err := s.c.Do(http.MethodPost, "/v1/secrets", nil, &SecretCreateRequest{Name: name, Value: value}, &out)
	return &out, err
}

// List lists the secrets' names.
func (s *Secrets) List() ([]*Secret, error) {
	var out []*Secret
	_, err := s.c.Do(http.MethodGet, "/v1/secrets", nil, nil, &out)
	return out, err
}

// Delete removes a secret.
func (s *Secrets) Delete(name string) error {
	_, err := s.c.Do(http.MethodDelete, "/v1/secrets/"+url.PathEscape(name), nil, nil, nil)
	return err
}
