package scheduler

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/berth-dev/berth/api"
)

// Registry credentials in task specs (Task.Auth) are sealed at rest with
// the secrets key too, when the server has one: the password and tokens
// are replaced, before the job reaches Raft, by
//
//	berth-sealed:v1:KEYID:BASE64(nonce || AES-256-GCM ciphertext)
//
// and opened again only on the allocations a node reads. The nonce is
// derived from the key and the value (HMAC-SHA256), not drawn at random:
// the same credential seals to the same string, so submitting a job again
// is not a new job version that would restart its tasks. That reveals
// only whether two sealed credentials are equal. Without a secrets key
// the credentials are stored as they come, as before.

const sealedAuthPrefix = "berth-sealed:v1:"

// sealAuthValue seals one credential deterministically.
func sealAuthValue(key []byte, keyID, value string) (string, error) {
	gcm, err := newGCM(key)
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("berth registry auth nonce\x00"))
	mac.Write([]byte(value))
	nonce := mac.Sum(nil)[:gcm.NonceSize()]
	sealed := gcm.Seal(append([]byte(nil), nonce...), nonce, []byte(value), []byte(sealedAuthPrefix))
	return sealedAuthPrefix + keyID + ":" + base64.RawStdEncoding.EncodeToString(sealed), nil
}

// openAuthValue opens what sealAuthValue made; ok is false for a value
// that is not sealed or that this key cannot open.
func openAuthValue(key []byte, value string) (string, bool) {
	rest, found := strings.CutPrefix(value, sealedAuthPrefix)
	if !found {
		return "", false
	}
	_, b64, found := strings.Cut(rest, ":")
	if !found {
		return "", false
	}
	sealed, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil {
		return "", false
	}
	gcm, err := newGCM(key)
	if err != nil || len(sealed) < gcm.NonceSize() {
		return "", false
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], []byte(sealedAuthPrefix))
	if err != nil {
		return "", false
	}
	return string(plain), true
}

// authFields are the secret fields of a registry credential.
func authFields(a *api.RegistryAuth) []*string {
	return []*string{&a.Password, &a.IdentityToken, &a.RegistryToken}
}

// sealSubmittedAuth rewrites a submitted job's body so that its tasks'
// registry credentials are sealed. A body that does not decode strictly
// is left for the handler to refuse.
func (s *Server) sealSubmittedAuth(c echo.Context) error {
	body, err := peekBody(c)
	if err != nil || !bytes.Contains(body, []byte(`"auth"`)) {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var req api.JobRegisterRequest
	if dec.Decode(&req) != nil || dec.More() || req.Job == nil {
		return nil
	}
	key, keyID, kerr := s.secretsKey()
	if kerr != nil {
		return nil // no key: stored as it comes
	}
	changed := false
	for _, t := range req.Job.Tasks() {
		if t.Auth == nil {
			continue
		}
		for _, f := range authFields(t.Auth) {
			if *f == "" || strings.HasPrefix(*f, sealedAuthPrefix) {
				continue
			}
			v, err := sealAuthValue(key, keyID, *f)
			if err != nil {
				return err
			}
			*f, changed = v, true
		}
	}
	if !changed {
		return nil
	}
	out, err := json.Marshal(&req)
	if err != nil {
		return err
	}
	r := c.Request()
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.ContentLength = int64(len(out))
	return nil
}

// openAllocAuth opens the sealed registry credentials of a node's
// allocations in place (the allocations are freshly decoded copies).
func openAllocAuth(key []byte, allocs []*api.Allocation) bool {
	changed := false
	for _, a := range allocs {
		if a == nil {
			continue
		}
		for _, t := range a.Job.Tasks() {
			if t.Auth == nil {
				continue
			}
			for _, f := range authFields(t.Auth) {
				if v, ok := openAuthValue(key, *f); ok {
					*f, changed = v, true
				}
			}
		}
	}
	return changed
}
