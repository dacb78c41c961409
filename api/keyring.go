package api

import "net/http"

// Gossip keyring routes (any server answers; it fans the operation out to
// every member of the gossip pool, servers and agents alike):
//
//	GET  /v1/operator/keyring                  KeyringResponse (list)
//	POST /v1/operator/keyring/install          KeyringRequest → KeyringResponse
//	POST /v1/operator/keyring/use              KeyringRequest → KeyringResponse
//	POST /v1/operator/keyring/remove           KeyringRequest → KeyringResponse

// KeyringRequest names a base64 gossip key.
type KeyringRequest struct {
	Key string `json:"key"`
}

// KeyringResponse says what a keyring operation did across the pool.
type KeyringResponse struct {
	// Members is how many members were asked; Answered how many replied.
	Members  int `json:"members"`
	Answered int `json:"answered"`
	// Errors maps a member's name to what failed there.
	Errors map[string]string `json:"errors,omitempty"`
	// Keys maps each installed key to how many members hold it (list).
	Keys map[string]int `json:"keys,omitempty"`
	// PrimaryKeys maps each primary key to how many members use it (list).
	PrimaryKeys map[string]int `json:"primary_keys,omitempty"`
}

// KeyringList lists the gossip keys of every member.
func (o *Operator) KeyringList() (*KeyringResponse, error) {
	var out KeyringResponse
	_, err := o.c.Do(http.MethodGet, "/v1/operator/keyring", nil, nil, &out)
	return &out, err
}

// KeyringOp runs install, use or remove with key on every member.
func (o *Operator) KeyringOp(op, key string) (*KeyringResponse, error) {
	var out KeyringResponse
	_, err := o.c.Do(http.MethodPost, "/v1/operator/keyring/"+esc(op), nil, &KeyringRequest{Key: key}, &out)
	return &out, err
}
