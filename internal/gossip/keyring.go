package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"

	"github.com/berth-dev/berth/api"
)

// Keyring errors.
var (
	// ErrBadKey means a key is not base64 of 16, 24 or 32 bytes; make one
	// with `berth operator gossip keyring generate`.
	ErrBadKey = errors.New("gossip: key must be base64 of 16, 24 or 32 bytes (AES-128/192/256)")
	// ErrNoEncryption means a keyring operation was asked of a pool that
	// started without --encrypt; encryption is chosen when the cluster is
	// created.
	ErrNoEncryption = errors.New("gossip: this pool is not encrypted (start every member with --encrypt KEY)")
	// ErrKeyringOp means the operation failed on at least one member; the
	// response lists which and why.
	ErrKeyringOp = errors.New("gossip: keyring operation failed on some members")
	// ErrBadOp means an unknown keyring operation.
	ErrBadOp = errors.New("gossip: keyring operation must be install, use, remove or list")
)

// Keyring operations.
const (
	KeyInstall = "install"
	KeyUse     = "use"
	KeyRemove  = "remove"
	KeyList    = "list"
)

// ParseKey decodes a base64 gossip key and checks its length.
func ParseKey(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	if err := memberlist.ValidateKey(b); err != nil {
		return nil, fmt.Errorf("%w: got %d bytes", ErrBadKey, len(b))
	}
	return b, nil
}

// GenerateKey returns a new random 32-byte key, base64-encoded.
func GenerateKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("gossip: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// Keyring is a member's gossip encryption keys, kept in a JSON file (a
// list of base64 keys, the primary one first) so that rotations survive a
// restart. Its methods are safe for concurrent use.
type Keyring struct {
	path string
	mu   sync.Mutex
	ring *memberlist.Keyring
}

// LoadKeyring opens the keyring file at path. When the file exists it
// wins over encrypt (a rotated cluster must not fall back to the key it
// was started with) and fromFile is true; otherwise a non-empty encrypt
// key creates the file. It returns nil (no encryption) when neither is
// there.
func LoadKeyring(path, encrypt string) (kr *Keyring, fromFile bool, err error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var list []string
		if err := json.Unmarshal(b, &list); err != nil || len(list) == 0 {
			return nil, false, fmt.Errorf("gossip: keyring file %s is damaged (%v); restore it or remove it and pass --encrypt", path, err)
		}
		keys := make([][]byte, len(list))
		for i, s := range list {
			if keys[i], err = ParseKey(s); err != nil {
				return nil, false, fmt.Errorf("gossip: keyring file %s: %w", path, err)
			}
		}
		ring, err := memberlist.NewKeyring(keys[1:], keys[0])
		if err != nil {
			return nil, false, fmt.Errorf("gossip: keyring file %s: %w", path, err)
		}
		return &Keyring{path: path, ring: ring}, true, nil
	case !errors.Is(err, os.ErrNotExist):
		return nil, false, fmt.Errorf("gossip: read keyring: %w", err)
	case encrypt == "":
		return nil, false, nil
	}
	key, err := ParseKey(encrypt)
	if err != nil {
		return nil, false, fmt.Errorf("--encrypt: %w", err)
	}
	ring, err := memberlist.NewKeyring(nil, key)
	if err != nil {
		return nil, false, err
	}
	kr = &Keyring{path: path, ring: ring}
	if err := kr.save(); err != nil {
		return nil, false, err
	}
	return kr, false, nil
}

// Keys lists the installed keys, the primary one first.
func (k *Keyring) Keys() []string {
	keys := k.ring.GetKeys()
	out := make([]string, len(keys))
	for i, b := range keys {
		out[i] = base64.StdEncoding.EncodeToString(b)
	}
	return out
}

// Primary is the key messages are encrypted with.
func (k *Keyring) Primary() string {
	return base64.StdEncoding.EncodeToString(k.ring.GetPrimaryKey())
}

// apply runs one operation on this member's keyring and saves it.
func (k *Keyring) apply(op, key string) error {
	if op == KeyList {
		return nil
	}
	b, err := ParseKey(key)
	if err != nil {
		return err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	switch op {
	case KeyInstall:
		err = k.ring.AddKey(b)
	case KeyUse:
		err = k.ring.UseKey(b)
	case KeyRemove:
		if bytes.Equal(b, k.ring.GetPrimaryKey()) {
			return errors.New("gossip: the primary key cannot be removed; `use` another key first")
		}
		err = k.ring.RemoveKey(b)
	default:
		return ErrBadOp
	}
	if err != nil {
		return fmt.Errorf("gossip: %s key: %w", op, err)
	}
	return k.save()
}

func (k *Keyring) save() error {
	b, err := json.Marshal(k.Keys())
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("gossip: save keyring: %w", err)
	}
	tmp := k.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("gossip: save keyring: %w", err)
	}
	if err := os.Rename(tmp, k.path); err != nil {
		return fmt.Errorf("gossip: save keyring: %w", err)
	}
	return nil
}

// Message types of the keyring protocol, carried as memberlist user
// messages over the reliable (TCP) channel, encrypted like all gossip.
const (
	msgKeyringRequest byte = 'K'
	msgKeyringReply   byte = 'k'
)

type keyringRequest struct {
	ID   string `json:"id"`
	From string `json:"from"`
	Op   string `json:"op"`
	Key  string `json:"key,omitempty"`
}

type keyringReply struct {
	ID      string   `json:"id"`
	From    string   `json:"from"`
	Error   string   `json:"error,omitempty"`
	Keys    []string `json:"keys,omitempty"`
	Primary string   `json:"primary,omitempty"`
}

// keyringState is the Pool's bookkeeping of its outstanding requests.
type keyringState struct {
	ring    *Keyring
	seq     atomic.Uint64
	mu      sync.Mutex
	pending map[string]chan keyringReply
}

// Keyring is the pool's keyring, or nil without encryption.
func (p *Pool) Keyring() *Keyring { return p.kr.ring }

// KeyringOp runs op (install, use, remove or list) with key on every live
// member and waits for their answers until ctx ends. Members that do not
// answer count in Members but not in Answered. It fails with ErrKeyringOp
// when any member reported an error or did not answer.
//
// Rotation without downtime: install the new key (every member can now
// read it), use it (every member now writes with it), then remove the old
// one.
func (p *Pool) KeyringOp(ctx context.Context, op, key string) (*api.KeyringResponse, error) {
	switch op {
	case KeyInstall, KeyUse, KeyRemove, KeyList:
	default:
		return nil, ErrBadOp
	}
	if p.kr.ring == nil {
		return nil, ErrNoEncryption
	}
	if op != KeyList {
		if _, err := ParseKey(key); err != nil {
			return nil, err
		}
	}
	id := p.name + "/" + strconv.FormatUint(p.kr.seq.Add(1), 10)
	req, _ := json.Marshal(keyringRequest{ID: id, From: p.name, Op: op, Key: key})
	msg := append([]byte{msgKeyringRequest}, req...)

	var targets []*memberlist.Node
	for _, n := range p.ml.Members() {
		if n.Name != p.name && n.State == memberlist.StateAlive {
			targets = append(targets, n)
		}
	}
	replies := make(chan keyringReply, len(targets)+1)
	p.kr.mu.Lock()
	p.kr.pending[id] = replies
	p.kr.mu.Unlock()
	defer func() {
		p.kr.mu.Lock()
		delete(p.kr.pending, id)
		p.kr.mu.Unlock()
	}()

	// Each operation is safe on its own in any order across members; what
	// keeps the pool talking is the order of operations (install, use,
	// remove), each acknowledged by every member before the next.
	resp := &api.KeyringResponse{Members: len(targets) + 1, Errors: map[string]string{},
		Keys: map[string]int{}, PrimaryKeys: map[string]int{}}
	replies <- p.localKeyring(id, op, key)
	for _, n := range targets {
		if err := p.ml.SendReliable(n, msg); err != nil {
			resp.Errors[n.Name] = "unreachable: " + err.Error()
		}
	}
	want := resp.Members - len(resp.Errors)
	for got := 0; got < want; got++ {
		select {
		case r := <-replies:
			resp.Answered++
			if r.Error != "" {
				resp.Errors[r.From] = r.Error
			}
			for _, k := range r.Keys {
				resp.Keys[k]++
			}
			if r.Primary != "" {
				resp.PrimaryKeys[r.Primary]++
			}
		case <-ctx.Done():
			got = want
		}
	}
	if op != KeyList {
		resp.Keys, resp.PrimaryKeys = nil, nil
	}
	if len(resp.Errors) > 0 || resp.Answered < resp.Members {
		return resp, fmt.Errorf("%w: %d of %d members answered, %d errors", ErrKeyringOp, resp.Answered, resp.Members, len(resp.Errors))
	}
	resp.Errors = nil
	return resp, nil
}

func (p *Pool) localKeyring(id, op, key string) keyringReply {
	r := keyringReply{ID: id, From: p.name}
	if err := p.kr.ring.apply(op, key); err != nil {
		r.Error = err.Error()
	}
	if op == KeyList {
		r.Keys, r.Primary = p.kr.ring.Keys(), p.kr.ring.Primary()
	}
	p.log.Info("gossip keyring "+op, "from", id, "err", r.Error)
	return r
}

// handleKeyringMsg is called by NotifyMsg; it must not block memberlist.
func (p *Pool) handleKeyringMsg(b []byte) {
	switch b[0] {
	case msgKeyringRequest:
		var req keyringRequest
		if json.Unmarshal(b[1:], &req) != nil || p.kr.ring == nil {
			return
		}
		go func() {
			reply := p.localKeyring(req.ID, req.Op, req.Key)
			out, _ := json.Marshal(reply)
			for _, n := range p.ml.Members() {
				if n.Name == req.From {
					if err := p.ml.SendReliable(n, append([]byte{msgKeyringReply}, out...)); err != nil {
						p.log.Warn("gossip keyring: reply failed", "to", req.From, "err", err)
					}
					return
				}
			}
		}()
	case msgKeyringReply:
		var r keyringReply
		if json.Unmarshal(b[1:], &r) != nil {
			return
		}
		p.kr.mu.Lock()
		ch := p.kr.pending[r.ID]
		p.kr.mu.Unlock()
		if ch != nil {
			select {
			case ch <- r:
			default:
			}
		}
	}
}
