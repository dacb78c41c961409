package image

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// EnvConfig names the environment variable that points at berth's client
// config file; DefaultConfigPath is used when it is empty.
const EnvConfig = "BERTH_CONFIG"

// DefaultConfigPath returns $BERTH_CONFIG, else ~/.berth/config.json.
func DefaultConfigPath() string {
	if p := os.Getenv(EnvConfig); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/"
	}
	return filepath.Join(home, ".berth", "config.json")
}

// ClientConfig is the part of berth's client config file that registries
// use. The file is the docker config's shape ("auths" keyed by registry
// host, each with base64 "user:password"), so the two read alike; keys
// berth does not know are kept when it is rewritten.
type ClientConfig struct {
	Auths              map[string]AuthEntry `json:"auths,omitempty"`
	InsecureRegistries []string             `json:"insecure-registries,omitempty"`

	path  string
	other map[string]json.RawMessage
}

// AuthEntry is one registry's stored credential.
type AuthEntry struct {
	Auth          string `json:"auth,omitempty"` // base64("user:password")
	IdentityToken string `json:"identitytoken,omitempty"`
}

// LoadClientConfig reads the config at path (DefaultConfigPath when
// empty). A missing file is an empty config.
func LoadClientConfig(path string) (*ClientConfig, error) {
	if path == "" {
		path = DefaultConfigPath()
	}
	c := &ClientConfig{path: path, Auths: map[string]AuthEntry{}, other: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image: read config %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &c.other); err != nil {
		return nil, fmt.Errorf("image: config %s is not valid JSON: %v; fix or remove it", path, err)
	}
	if raw, ok := c.other["auths"]; ok {
		if err := json.Unmarshal(raw, &c.Auths); err != nil {
			return nil, fmt.Errorf("image: config %s: auths: %v", path, err)
		}
	}
	if raw, ok := c.other["insecure-registries"]; ok {
		if err := json.Unmarshal(raw, &c.InsecureRegistries); err != nil {
			return nil, fmt.Errorf("image: config %s: insecure-registries: %v", path, err)
		}
	}
	if c.Auths == nil {
		c.Auths = map[string]AuthEntry{}
	}
	return c, nil
}

// Path is the file the config was read from.
func (c *ClientConfig) Path() string { return c.path }

// Save writes the config back, readable by its owner only (mode 0600),
// replacing the file atomically.
func (c *ClientConfig) Save() error {
	out := map[string]any{}
	for k, v := range c.other {
		out[k] = v
	}
	delete(out, "auths")
	delete(out, "insecure-registries")
	if len(c.Auths) > 0 {
		out["auths"] = c.Auths
	}
	if len(c.InsecureRegistries) > 0 {
		out["insecure-registries"] = c.InsecureRegistries
	}
	b, err := json.MarshalIndent(out, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(c.path), 0o700); err != nil {
		return fmt.Errorf("image: save config: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(c.path), ".config-*.json")
	if err != nil {
		return fmt.Errorf("image: save config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("image: save config: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("image: save config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("image: save config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image: save config: %w", err)
	}
	if err := os.Rename(tmp.Name(), c.path); err != nil {
		return fmt.Errorf("image: save config: %w", err)
	}
	return nil
}

// RegistryKey normalises a registry as configs key it: Docker Hub's many
// spellings become "docker.io", a URL loses its scheme and path.
func RegistryKey(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(strings.TrimPrefix(s, "https://"), "http://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return dockerHub
	}
	return s
}

// SetLogin stores a credential for registry.
func (c *ClientConfig) SetLogin(registry string, a Auth) {
	e := AuthEntry{IdentityToken: a.IdentityToken}
	if a.Username != "" || a.Password != "" {
		e.Auth = base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))
	}
	c.Auths[RegistryKey(registry)] = e
}

// RemoveLogin forgets registry's credential and reports whether there
// was one.
func (c *ClientConfig) RemoveLogin(registry string) bool {
	key := RegistryKey(registry)
	found := false
	for k := range c.Auths {
		if RegistryKey(k) == key {
			delete(c.Auths, k)
			found = true
		}
	}
	return found
}

// Login returns the stored credential for registry, if any.
func (c *ClientConfig) Login(registry string) (*Auth, bool) {
	key := RegistryKey(registry)
	keys := make([]string, 0, len(c.Auths))
	for k := range c.Auths {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if RegistryKey(k) != key {
			continue
		}
		e := c.Auths[k]
		a := &Auth{IdentityToken: e.IdentityToken}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(e.Auth)
			if err != nil {
				continue
			}
			user, pass, _ := strings.Cut(string(raw), ":")
			a.Username, a.Password = user, pass
		}
		return a, true
	}
	return nil, false
}

// Resolve makes ClientConfig an authn.Keychain.
func (c *ClientConfig) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if a, ok := c.Login(r.RegistryStr()); ok {
		return a.authenticator(), nil
	}
	return authn.Anonymous, nil
}

var _ authn.Keychain = (*ClientConfig)(nil)

// Keychain looks a registry up in berth's config first, then in the
// docker config (~/.docker/config.json, $DOCKER_CONFIG, with its
// credential helpers).
func (c *ClientConfig) Keychain() authn.Keychain {
	return authn.NewMultiKeychain(c, authn.DefaultKeychain)
}

// ResolveAuth returns the credential keychain kc holds for the registry
// of ref, or nil when it has none. The CLI sends it along with a pull or
// push that an agent makes.
func ResolveAuth(kc authn.Keychain, ref string) (*Auth, error) {
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	reg, err := name.NewRegistry(r.registryHost())
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidName, ref, err)
	}
	authr, err := kc.Resolve(reg)
	if err != nil {
		return nil, fmt.Errorf("image: credentials for %s: %w", r.registryHost(), err)
	}
	cfg, err := authr.Authorization()
	if err != nil {
		return nil, fmt.Errorf("image: credentials for %s: %w", r.registryHost(), err)
	}
	a := &Auth{Username: cfg.Username, Password: cfg.Password, IdentityToken: cfg.IdentityToken, RegistryToken: cfg.RegistryToken}
	if cfg.Auth != "" && a.Username == "" {
		if raw, err := base64.StdEncoding.DecodeString(cfg.Auth); err == nil {
			a.Username, a.Password, _ = strings.Cut(string(raw), ":")
		}
	}
	if a.Empty() {
		return nil, nil
	}
	return a, nil
}

// CheckLogin verifies a credential against registry (host[:port]): the
// token exchange when the registry wants bearer tokens, then GET /v2/.
// A refused credential wraps ErrUnauthorized.
func CheckLogin(ctx context.Context, registry string, a Auth, opts RemoteOptions) error {
	host := RegistryKey(registry)
	r := reference{domain: host}
	if host == dockerHub {
		r.domain = ""
	}
	var nopts []name.Option
	if opts.insecure(host) {
		nopts = append(nopts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, nopts...)
	if err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidName, registry, err)
	}
	t := opts.Transport
	if t == nil {
		t = registryTransport(opts.insecure(host))
	}
	rt, err := transport.NewWithContext(ctx, reg, a.authenticator(), t, nil)
	if err != nil {
		return registryError(err, r)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return registryError(err, r)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return registryError(err, r)
	}
	return nil
}
