package scheduler

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
)

// Secrets are stored in Raft sealed with AES-256-GCM under a key that all
// servers share: the file named by --secrets-key-file, else
// DATA_DIR/server/secrets.key. berth dev makes that file on first use;
// a cluster's operator makes one (`berth secret keygen FILE`) and gives
// it to every server. The key never enters Raft, so a copy of the Raft
// log or of a snapshot holds no secret in the clear.
//
// A secret's value leaves the servers only on the allocations a node's
// agent reads (GET /v1/nodes/{id}/allocations): tasks that list it in
// their secrets get it in TaskSecret.Value, and the agent mounts it as a
// file on a tmpfs. Every other route shows only the names.

// Secret limits.
const (
	maxSecretBytes = 64 << 10
	secretKeyFile  = "secrets.key"
	// secretKeyContext separates the key ID from other uses of the key.
	secretKeyContext = "berth secrets key id v1\x00"
)

// Secret errors.
var (
	// ErrNoSecretsKey means this server has no secrets key file.
	ErrNoSecretsKey = errors.New("scheduler: no secrets key; create one with `berth secret keygen FILE` and start every server with --secrets-key-file FILE")
	// ErrSecretsKey means the key file is unreadable or malformed.
	ErrSecretsKey = errors.New("scheduler: invalid secrets key file: it must hold 32 bytes, base64 or hex encoded")
)

// secretsKeyPath is the key file of this server.
func (s *Server) secretsKeyPath() string {
	if p := s.cfg.SecretsKeyFile; p != "" {
		return p
	}
	return filepath.Join(s.cfg.DataDir, "server", secretKeyFile)
}

// GenerateSecretsKey writes a new random secrets key to path (mode 0600).
// It refuses to replace an existing file: secrets sealed under the old key
// would be lost.
func GenerateSecretsKey(path string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("scheduler: secrets key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("scheduler: secrets key: %w", err)
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// parseSecretsKey decodes a key file's contents.
func parseSecretsKey(b []byte) ([]byte, error) {
	txt := strings.TrimSpace(string(b))
	if k, err := base64.StdEncoding.DecodeString(txt); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := hex.DecodeString(txt); err == nil && len(k) == 32 {
		return k, nil
	}
	if len(b) == 32 {
		return b, nil
	}
	return nil, ErrSecretsKey
}

// secretsKey reads this server's key; berth dev makes one when there is
// none. The file is read on each use (it is tiny, and used only to seal
// a secret or to hand secrets to an agent), so a replaced file takes
// effect at once.
func (s *Server) secretsKey() (key []byte, keyID string, err error) {
	path := s.secretsKeyPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && s.cfg.Dev {
		if gerr := GenerateSecretsKey(path); gerr != nil && !errors.Is(gerr, os.ErrExist) {
			return nil, "", gerr
		}
		b, err = os.ReadFile(path)
	}
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", fmt.Errorf("%w (looked for %s)", ErrNoSecretsKey, path)
	}
	if err != nil {
		return nil, "", fmt.Errorf("scheduler: read secrets key %s: %w", path, err)
	}
	key, err = parseSecretsKey(b)
	if err != nil {
		return nil, "", fmt.Errorf("%w (%s)", err, path)
	}
	sum := sha256.Sum256(append([]byte(secretKeyContext), key...))
	return key, hex.EncodeToString(sum[:8]), nil
}

// sealSecret encrypts value with a fresh random nonce; the name is bound
// in as additional data, so a sealed value cannot be moved to another
// name.
func sealSecret(key []byte, name string, value []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, value, []byte(name)), nil
}

// openSecret decrypts what sealSecret made.
func openSecret(key []byte, name string, sealed []byte) ([]byte, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < gcm.NonceSize() {
		return nil, errors.New("sealed secret too short")
	}
	return gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(name))
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// secretRoutes registers the /v1/secrets routes.
func (s *Server) secretRoutes(v *echo.Group) {
	v.GET("/secrets", s.secretList)
	v.POST("/secrets", s.leaderOnly(s.secretCreate))
	v.DELETE("/secrets/:name", s.leaderOnly(s.secretDelete))
}

func (s *Server) secretCreate(c echo.Context) error {
	var req api.SecretCreateRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if !validName(req.Name) {
		return badRequest("name: %q must be 1-128 letters, digits, '-', '_' or '.'", req.Name)
	}
	if len(req.Value) == 0 {
		return badRequest("value: is empty")
	}
	if len(req.Value) > maxSecretBytes {
		return badRequest("value: %d bytes is more than the %d a secret may hold", len(req.Value), maxSecretBytes)
	}
	key, keyID, err := s.secretsKey()
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, err.Error())
	}
	sealed, err := sealSecret(key, req.Name, req.Value)
	if err != nil {
		return err
	}
	sec := &consensus.Secret{Secret: api.Secret{Name: req.Name, CreateTime: time.Now().UnixNano()}, Sealed: sealed, KeyID: keyID}
	idx, err := s.raft.Apply(consensus.SecretUpsertRequestType, &consensus.SecretUpsertRequest{Secret: sec}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	s.log.Info("secret stored", "secret", req.Name, "index", idx)
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

func (s *Server) secretList(c echo.Context) error {
	secs, err := s.raft.State().Secrets(nil)
	if err != nil {
		return err
	}
	out := make([]*api.Secret, 0, len(secs))
	for _, sec := range secs {
		v := sec.Secret
		out = append(out, &v)
	}
	return s.reply(c, http.StatusOK, 0, out)
}

func (s *Server) secretDelete(c echo.Context) error {
	idx, err := s.raft.Apply(consensus.SecretDeleteRequestType, &consensus.SecretDeleteRequest{Name: c.Param("name")}, applyTimeout)
	if err != nil {
		return aclError(err)
	}
	return s.reply(c, http.StatusOK, idx, &api.WriteResponse{Index: idx})
}

// validateTaskSecrets checks the secrets a submitted job's tasks mount.
// It is called by the secret feed's guard on job submission.
func validateTaskSecrets(job *api.Job) error {
	for _, t := range job.Tasks() {
		targets := map[string]bool{}
		for i, ts := range t.Secrets {
			if !validName(ts.Name) {
				return fmt.Errorf("task %s: secrets[%d].name: %q must be 1-128 letters, digits, '-', '_' or '.'", t.Name, i, ts.Name)
			}
			if len(ts.Value) > 0 {
				return fmt.Errorf("task %s: secrets[%d]: a job cannot carry a secret's value; create it with `berth secret create %s`", t.Name, i, ts.Name)
			}
			target := ts.Target
			if target == "" {
				target = api.DefaultSecretDir + "/" + ts.Name
			}
			if !strings.HasPrefix(target, "/") || filepath.Clean(target) != target || target == "/" {
				return fmt.Errorf("task %s: secrets[%d].target: %q must be a clean absolute file path", t.Name, i, ts.Target)
			}
			if targets[target] {
				return fmt.Errorf("task %s: secrets[%d].target: %q is used twice", t.Name, i, target)
			}
			targets[target] = true
		}
	}
	return nil
}

// secretsFeed guards the secret fields of the API: a submitted job may
// name secrets but never carry their values (its secrets are checked
// here, before the handler), and the allocations a node reads get the
// values of the secrets their tasks mount.
func (s *Server) secretsFeed(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		switch {
		case r.Method == http.MethodGet && c.Path() == "/v1/nodes/:id/allocations":
			return rewriteResponse(c, next, s.revealSecrets)
		case r.Method == http.MethodPost && (c.Path() == "/v1/jobs" || c.Path() == "/v1/jobs/:id/plan"):
			if err := s.checkSubmittedSecrets(c); err != nil {
				return err
			}
			if err := s.sealSubmittedAuth(c); err != nil { // secret_auth.go
				return err
			}
		}
		return next(c)
	}
}

// checkSubmittedSecrets refuses a job whose task secrets are malformed or
// carry values. A body that does not decode is left to the handler.
func (s *Server) checkSubmittedSecrets(c echo.Context) error {
	body, err := peekBody(c)
	if err != nil || !bytes.Contains(body, []byte(`"secrets"`)) {
		return err
	}
	var req api.JobRegisterRequest
	if json.Unmarshal(body, &req) != nil || req.Job == nil {
		return nil
	}
	if err := validateTaskSecrets(req.Job); err != nil {
		return badRequest("invalid job: %v", err)
	}
	return nil
}

// revealSecrets fills in the secret values of the allocations in a node's
// allocation list. A secret that is gone, or that this server cannot
// open, is left without a value: the agent fails that task and says so.
func (s *Server) revealSecrets(body []byte) []byte {
	if !bytes.Contains(body, []byte(`"secrets"`)) && !bytes.Contains(body, []byte(sealedAuthPrefix)) {
		return body
	}
	var allocs []*api.Allocation
	if err := json.Unmarshal(body, &allocs); err != nil {
		return body
	}
	key, _, kerr := s.secretsKey()
	st := s.raft.State()
	cache := map[string][]byte{}
	changed := kerr == nil && openAllocAuth(key, allocs) // secret_auth.go
	for _, a := range allocs {
		if a == nil || a.Job == nil || a.Terminal() {
			continue
		}
		for g, t := range a.Job.Tasks() {
			if g.Name != a.Group {
				continue
			}
			for i := range t.Secrets {
				ts := &t.Secrets[i]
				if len(ts.Value) > 0 {
					continue
				}
				v, ok := cache[ts.Name]
				if !ok && kerr == nil {
					if sec, err := st.SecretByName(nil, ts.Name); err == nil && sec != nil {
						var oerr error
						if v, oerr = openSecret(key, sec.Name, sec.Sealed); oerr != nil {
							s.log.Error("cannot open a secret: is every server's secrets key the same?", "secret", sec.Name, "err", oerr)
							v = nil
						}
					}
					cache[ts.Name] = v
				}
				if v != nil {
					ts.Value = v
					changed = true
				}
			}
		}
	}
	if kerr != nil {
		s.log.Error("cannot hand secrets to a node", "err", kerr)
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(allocs)
	if err != nil {
		return body
	}
	return append(out, '\n')
}
