package consensus

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
)

// ACL and secret message types. They are numbered from 30, clear of the
// scheduler's, and are part of the on-disk format: never renumber them.
const (
	ACLBootstrapRequestType    MessageType = 30 // ACLBootstrapRequest
	ACLPolicyUpsertRequestType MessageType = 31 // ACLPolicyUpsertRequest
	ACLPolicyDeleteRequestType MessageType = 32 // ACLPolicyDeleteRequest
	ACLTokenUpsertRequestType  MessageType = 33 // ACLTokenUpsertRequest
	ACLTokenDeleteRequestType  MessageType = 34 // ACLTokenDeleteRequest
	SecretUpsertRequestType    MessageType = 35 // SecretUpsertRequest
	SecretDeleteRequestType    MessageType = 36 // SecretDeleteRequest
)

// Tables of the ACL system and the secrets.
const (
	TableACLPolicies = "acl_policies"
	TableACLTokens   = "acl_tokens"
	TableACLMeta     = "acl_meta"
	TableSecrets     = "secrets"
)

// ACL and secret errors the FSM answers with; nothing was changed.
var (
	// ErrACLBootstrapped means ACLs were bootstrapped before: the first
	// management token exists (or existed) and cannot be made again.
	ErrACLBootstrapped = errors.New("consensus: ACLs are already bootstrapped")
	// ErrACLPolicyNotFound names a policy that does not exist.
	ErrACLPolicyNotFound = errors.New("consensus: ACL policy not found")
	// ErrACLTokenNotFound names a token accessor that does not exist.
	ErrACLTokenNotFound = errors.New("consensus: ACL token not found")
	// ErrSecretNotFound names a secret that does not exist.
	ErrSecretNotFound = errors.New("consensus: secret not found")
)

// ACLToken is a token as the state store keeps it: the API's view (with
// SecretID always empty) and the hex SHA-256 of the secret, which is what
// a request's token is looked up by. The secret itself is never stored.
type ACLToken struct {
	api.ACLToken
	SecretHash string `json:"secret_hash"`
}

// Secret is a stored secret: its value sealed with AES-256-GCM under the
// servers' shared secrets key (nonce || ciphertext, the name as
// additional data). KeyID names the key (a hash of it), so a server with
// another key says so instead of failing to open it.
type Secret struct {
	api.Secret
	Sealed []byte `json:"sealed"`
	KeyID  string `json:"key_id"`
}

// aclMeta is the single row of acl_meta: when ACLs were bootstrapped.
type aclMeta struct {
	ID             string
	BootstrapIndex uint64
}

const aclMetaRowID = "acl"

// ACLBootstrapRequest turns ACLs on with the first management token; it is
// refused (ErrACLBootstrapped) once it has succeeded.
type ACLBootstrapRequest struct {
	Token *ACLToken `json:"token"`
}

// ACLPolicyUpsertRequest creates or replaces policies.
type ACLPolicyUpsertRequest struct {
	Policies []*api.ACLPolicy `json:"policies"`
}

// ACLPolicyDeleteRequest deletes policies; an unknown name refuses it.
type ACLPolicyDeleteRequest struct {
	Names []string `json:"names"`
}

// ACLTokenUpsertRequest creates or replaces tokens (accessor, hash and
// times made by the caller).
type ACLTokenUpsertRequest struct {
	Tokens []*ACLToken `json:"tokens"`
}

// ACLTokenDeleteRequest revokes tokens by accessor ID.
type ACLTokenDeleteRequest struct {
	AccessorIDs []string `json:"accessor_ids"`
}

// SecretUpsertRequest creates or replaces a secret, sealed by the caller.
type SecretUpsertRequest struct {
	Secret *Secret `json:"secret"`
}

// SecretDeleteRequest deletes a secret.
type SecretDeleteRequest struct {
	Name string `json:"name"`
}

func aclTables() map[string]*memdb.TableSchema {
	return map[string]*memdb.TableSchema{
		TableACLPolicies: {Name: TableACLPolicies, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("Name"),
		}},
		TableACLTokens: {Name: TableACLTokens, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("AccessorID"),
			"hash": {Name: "hash", Unique: true, Indexer: &memdb.StringFieldIndex{Field: "SecretHash"}},
		}},
		TableACLMeta: {Name: TableACLMeta, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("ID"),
		}},
		TableSecrets: {Name: TableSecrets, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("Name"),
		}},
	}
}

// applyACL applies the ACL and secret message types.
func (w *writer) applyACL(index uint64, t MessageType, body []byte) error {
	switch t {
	case ACLBootstrapRequestType:
		return w.aclBootstrap(decode[ACLBootstrapRequest](index, t, body))
	case ACLPolicyUpsertRequestType:
		return w.aclPolicyUpsert(decode[ACLPolicyUpsertRequest](index, t, body))
	case ACLPolicyDeleteRequestType:
		return w.aclPolicyDelete(decode[ACLPolicyDeleteRequest](index, t, body))
	case ACLTokenUpsertRequestType:
		return w.aclTokenUpsert(decode[ACLTokenUpsertRequest](index, t, body).Tokens)
	case ACLTokenDeleteRequestType:
		return w.aclTokenDelete(decode[ACLTokenDeleteRequest](index, t, body))
	case SecretUpsertRequestType:
		return w.secretUpsert(decode[SecretUpsertRequest](index, t, body))
	case SecretDeleteRequestType:
		return w.secretDelete(decode[SecretDeleteRequest](index, t, body))
	}
	panic(fmt.Sprintf("consensus: applyACL given message type %s", t))
}

func (w *writer) aclBootstrap(req *ACLBootstrapRequest) error {
	if w.first(TableACLMeta, aclMetaRowID) != nil {
		return ErrACLBootstrapped
	}
	if req.Token == nil || req.Token.Type != api.ACLTokenManagement {
		return fmt.Errorf("%w: ACL bootstrap without a management token", ErrInvalidRequest)
	}
	if err := w.aclTokenUpsert([]*ACLToken{req.Token}); err != nil {
		return err
	}
	w.insert(TableACLMeta, &aclMeta{ID: aclMetaRowID, BootstrapIndex: w.index})
	return nil
}

func (w *writer) aclPolicyUpsert(req *ACLPolicyUpsertRequest) error {
	for _, p := range req.Policies {
		if p == nil || p.Name == "" {
			return fmt.Errorf("%w: ACL policy without a name", ErrInvalidRequest)
		}
	}
	for _, p := range req.Policies {
		p.CreateIndex = w.index
		if obj := w.first(TableACLPolicies, p.Name); obj != nil {
			p.CreateIndex = obj.(*api.ACLPolicy).CreateIndex
		}
		p.ModifyIndex = w.index
		w.insert(TableACLPolicies, p)
	}
	return nil
}

func (w *writer) aclPolicyDelete(req *ACLPolicyDeleteRequest) error {
	return w.deleteAll(TableACLPolicies, req.Names, ErrACLPolicyNotFound)
}

// deleteAll deletes the rows of table with the IDs ids, all or none: an
// ID that is not there refuses the whole request with notFound.
func (w *writer) deleteAll(table string, ids []string, notFound error) error {
	gone := make([]any, 0, len(ids))
	for _, id := range ids {
		obj := w.first(table, id)
		if obj == nil {
			return fmt.Errorf("%w: %q", notFound, id)
		}
		gone = append(gone, obj)
	}
	for _, obj := range gone {
		w.delete(table, obj)
	}
	return nil
}

func (w *writer) aclTokenUpsert(tokens []*ACLToken) error {
	for _, tk := range tokens {
		if tk == nil || tk.AccessorID == "" || tk.SecretHash == "" {
			return fmt.Errorf("%w: ACL token without an accessor or secret hash", ErrInvalidRequest)
		}
		if tk.Type != api.ACLTokenManagement && tk.Type != api.ACLTokenClient {
			return fmt.Errorf("%w: ACL token type %q", ErrInvalidRequest, tk.Type)
		}
		if obj, err := w.txn.First(TableACLTokens, "hash", tk.SecretHash); err == nil && obj != nil &&
			obj.(*ACLToken).AccessorID != tk.AccessorID {
			return fmt.Errorf("%w: ACL token secret hash already in use", ErrInvalidRequest)
		}
	}
	for _, tk := range tokens {
		tk.SecretID = "" // never stored, whatever a caller sent
		tk.CreateIndex = w.index
		if obj := w.first(TableACLTokens, tk.AccessorID); obj != nil {
			tk.CreateIndex = obj.(*ACLToken).CreateIndex
		}
		tk.ModifyIndex = w.index
		w.insert(TableACLTokens, tk)
	}
	return nil
}

func (w *writer) aclTokenDelete(req *ACLTokenDeleteRequest) error {
	return w.deleteAll(TableACLTokens, req.AccessorIDs, ErrACLTokenNotFound)
}

func (w *writer) secretUpsert(req *SecretUpsertRequest) error {
	s := req.Secret
	if s == nil || s.Name == "" || len(s.Sealed) == 0 {
		return fmt.Errorf("%w: secret without a name or value", ErrInvalidRequest)
	}
	s.CreateIndex = w.index
	if obj := w.first(TableSecrets, s.Name); obj != nil {
		s.CreateIndex = obj.(*Secret).CreateIndex
		s.CreateTime = obj.(*Secret).CreateTime
	}
	s.ModifyIndex = w.index
	w.insert(TableSecrets, s)
	return nil
}

func (w *writer) secretDelete(req *SecretDeleteRequest) error {
	return w.deleteAll(TableSecrets, []string{req.Name}, ErrSecretNotFound)
}

// --- reads

// ACLBootstrapped reports whether ACLs were bootstrapped, which turns them
// on for good.
func (s *StateStore) ACLBootstrapped() bool {
	obj, err := s.txn().First(TableACLMeta, "id", aclMetaRowID)
	return err == nil && obj != nil
}

// ACLPolicies returns every policy, sorted by name.
func (s *StateStore) ACLPolicies(ws memdb.WatchSet) ([]*api.ACLPolicy, error) {
	return listAll[api.ACLPolicy](s.txn(), ws, TableACLPolicies)
}

// ACLPolicyByName returns a policy, or nil, nil.
func (s *StateStore) ACLPolicyByName(ws memdb.WatchSet, name string) (*api.ACLPolicy, error) {
	return firstOf[api.ACLPolicy](s.txn(), ws, TableACLPolicies, "id", name)
}

// ACLTokens returns every token, sorted by accessor ID.
func (s *StateStore) ACLTokens(ws memdb.WatchSet) ([]*ACLToken, error) {
	return listAll[ACLToken](s.txn(), ws, TableACLTokens)
}

// ACLTokenByAccessor returns a token, or nil, nil.
func (s *StateStore) ACLTokenByAccessor(ws memdb.WatchSet, id string) (*ACLToken, error) {
	return firstOf[ACLToken](s.txn(), ws, TableACLTokens, "id", id)
}

// ACLTokenBySecretHash returns the token whose secret hashes to hash (hex
// SHA-256), or nil, nil.
func (s *StateStore) ACLTokenBySecretHash(hash string) (*ACLToken, error) {
	return firstOf[ACLToken](s.txn(), nil, TableACLTokens, "hash", hash)
}

// Secrets returns every secret (sealed), sorted by name.
func (s *StateStore) Secrets(ws memdb.WatchSet) ([]*Secret, error) {
	return listAll[Secret](s.txn(), ws, TableSecrets)
}

// SecretByName returns a sealed secret, or nil, nil.
func (s *StateStore) SecretByName(ws memdb.WatchSet, name string) (*Secret, error) {
	return firstOf[Secret](s.txn(), ws, TableSecrets, "id", name)
}

func firstOf[T any](txn *memdb.Txn, ws memdb.WatchSet, table, index, key string) (*T, error) {
	ch, obj, err := txn.FirstWatch(table, index, key)
	if err != nil {
		return nil, readErr(table+" "+key, err)
	}
	ws.Add(ch)
	if obj == nil {
		return nil, nil
	}
	return obj.(*T), nil
}

func listAll[T any](txn *memdb.Txn, ws memdb.WatchSet, table string) ([]*T, error) {
	it, err := txn.Get(table, "id")
	if err != nil {
		return nil, readErr(table, err)
	}
	ws.Add(it.WatchCh())
	var out []*T
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj.(*T))
	}
	return out, nil
}
