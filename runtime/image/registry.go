package image

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// EnvInsecureRegistries names the environment variable that lists
// registries (host:port, comma-separated) reached over plain HTTP or with
// unverified TLS, as Docker's --insecure-registry. Agents read it for the
// pulls they make on their own (a job's missing image).
const EnvInsecureRegistries = "BERTH_INSECURE_REGISTRIES"

// InsecureRegistriesFromEnv returns the registries EnvInsecureRegistries
// lists.
func InsecureRegistriesFromEnv() []string {
	var out []string
	for _, h := range strings.Split(os.Getenv(EnvInsecureRegistries), ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// Auth is a credential for one registry: a user name and password (basic
// auth, also exchanged for a bearer token when the registry asks for
// one), or a token. Its String method hides the secrets so that it never
// reaches a log by accident.
type Auth struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
	RegistryToken string `json:"registry_token,omitempty"`
}

// Empty reports whether a carries no credential.
func (a *Auth) Empty() bool {
	return a == nil || (a.Username == "" && a.Password == "" && a.IdentityToken == "" && a.RegistryToken == "")
}

// String hides the secrets.
func (a *Auth) String() string {
	if a.Empty() {
		return "Auth{}"
	}
	return fmt.Sprintf("Auth{Username: %q, secrets redacted}", a.Username)
}

// GoString hides the secrets from %#v too.
func (a *Auth) GoString() string { return a.String() }

func (a *Auth) authenticator() authn.Authenticator {
	return authn.FromConfig(authn.AuthConfig{
		Username: a.Username, Password: a.Password,
		IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken,
	})
}

// RemoteOptions say how to reach a registry.
type RemoteOptions struct {
	// Insecure allows plain HTTP and TLS with an unverified certificate.
	Insecure bool
	// InsecureRegistries lists hosts ("host:port") that are insecure
	// whatever Insecure says.
	InsecureRegistries []string
	// Auth, when set, is the credential to use. Otherwise Keychain (or,
	// when nil, the docker config's DefaultKeychain) is asked.
	Auth     *Auth
	Keychain authn.Keychain
	// Transport replaces the HTTP transport (a custom CA, a proxy).
	Transport http.RoundTripper
}

// PullOptions configure Pull.
type PullOptions struct {
	RemoteOptions
	// Platform picks an image from a multi-platform index, as
	// "os/arch[/variant]"; empty means this host's.
	Platform string
}

// PushOptions configure Push.
type PushOptions struct {
	RemoteOptions
}

// HostPlatform is the platform Pull picks from an index by default.
func HostPlatform() v1.Platform {
	return v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
}

// registryHost returns the registry a parsed reference lives on.
func (r reference) registryHost() string {
	if r.domain == "" {
		return dockerHub
	}
	return r.domain
}

func (r reference) full() string {
	out := r.registryHost() + "/" + r.path
	if r.tag != "" {
		out += ":" + r.tag
	}
	if r.digest != "" {
		out += "@" + r.digest
	}
	return out
}

func (o RemoteOptions) insecure(host string) bool {
	return o.Insecure || slices.Contains(o.InsecureRegistries, host)
}

// registryTransport is the default transport: large buffers for layer
// downloads, many connections per registry, and no transparent gzip
// (layers are gzip already).
func registryTransport(insecure bool) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 16
	t.ReadBufferSize = 256 << 10
	t.WriteBufferSize = 256 << 10
	t.DisableCompression = true
	t.ResponseHeaderTimeout = 2 * time.Minute
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the user marked the registry insecure
	}
	return t
}

func (o RemoteOptions) parse(r reference) (name.Reference, error) {
	var nopts []name.Option
	if o.insecure(r.registryHost()) {
		nopts = append(nopts, name.Insecure)
	}
	ref, err := name.ParseReference(r.full(), nopts...)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrInvalidName, r.full(), err)
	}
	return ref, nil
}

func (o RemoteOptions) remote(ctx context.Context, host string) []remote.Option {
	t := o.Transport
	if t == nil {
		t = registryTransport(o.insecure(host))
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(t), remote.WithUserAgent("berth"), remote.WithJobs(maxParallelLayers + 1)}
	switch {
	case !o.Auth.Empty():
		opts = append(opts, remote.WithAuth(o.Auth.authenticator()))
	case o.Keychain != nil:
		opts = append(opts, remote.WithAuthFromKeychain(o.Keychain))
	default:
		opts = append(opts, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	}
	return opts
}

// Pull fetches ref ("busybox", "host:port/repo:tag", "repo@sha256:…")
// from its registry and stores it under its familiar name (an image
// pulled by digest alone gets no name). Docker v2 and OCI manifests and
// indexes are understood; from an index the image for opts.Platform (or
// this host) is taken. Layers the store has are not downloaded; missing
// ones are downloaded several at a time, verified against their digests
// and unpacked, reporting progress to the context's WithProgress function
// ("Pulling fs layer", then Add's events).
//
// Concurrent Pulls of the same reference in one process share one
// download: each layer is fetched once, and every caller gets the events
// of the shared pull from the moment it joined. A caller whose context
// ends stops waiting; the download stops when no caller is left.
//
// Errors wrap ErrInvalidName, ErrUnauthorized, ErrUnknownManifest,
// ErrRegistryUnreachable, ErrNoPlatform or ErrDigestMismatch; nothing of
// a failed pull is left in the store but whole, verified layers.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	r, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	want := HostPlatform()
	if opts.Platform != "" {
		p, err := v1.ParsePlatform(opts.Platform)
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("image: platform %q: want os/arch[/variant], such as linux/amd64", opts.Platform)
		}
		want = *p
	}
	user := ""
	if opts.Auth != nil {
		user = opts.Auth.Username
	}
	key := strings.Join([]string{r.full(), want.String(), fmt.Sprint(opts.insecure(r.registryHost())), user}, "|")
	return s.pulls.do(ctx, key, func(ctx context.Context) (*Image, error) {
		return s.pull(ctx, r, want, opts)
	})
}

func (s *Store) pull(ctx context.Context, r reference, want v1.Platform, opts PullOptions) (*Image, error) {
	nref, err := opts.parse(r)
	if err != nil {
		return nil, err
	}
	host := r.registryHost()
	ropts := opts.remote(ctx, host)
	desc, err := remote.Get(nref, ropts...)
	if err != nil {
		return nil, registryError(err, r)
	}
	img, err := pickImage(desc, want, r)
	if err != nil {
		return nil, err
	}
	s.log.Debug("pulling", "image", r.full(), "digest", desc.Digest.String())
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: manifest: %v", ErrBadArchive, r.full(), registryError(err, r))
	}
	progress := progressFrom(ctx)
	for _, l := range m.Layers {
		progress(ProgressEvent{Layer: l.Digest.String(), Status: "Pulling fs layer", Total: l.Size})
	}
	tr := &trackedImage{Image: img}
	var names []string
	if r.tag != "" {
		names = []string{r.familiar()}
	}
	out, err := s.Add(ctx, tr, names...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if l, bad := tr.corrupt(); bad != nil {
			return nil, fmt.Errorf("%w: layer %s of %s: the registry sent different content (%v); the layer was not stored", ErrDigestMismatch, l, r.full(), bad)
		}
		if errors.Is(err, ErrDigestMismatch) {
			return nil, err
		}
		return nil, registryError(err, r)
	}
	if desc.MediaType.IsIndex() {
		if err := s.noteIndex(out.ID, desc.Digest.String()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// noteIndex records that image id was taken from the index with digest d.
func (s *Store) noteIndex(id, d string) error {
	return s.withIndex(func(idx *indexFile) (bool, error) {
		rec := idx.Images[id]
		if rec == nil || slices.Contains(rec.IndexDigests, d) {
			return false, nil
		}
		rec.IndexDigests = append(rec.IndexDigests, d)
		return true, nil
	})
}

// pickImage returns desc's image, choosing want's from an index.
func pickImage(desc *remote.Descriptor, want v1.Platform, r reference) (v1.Image, error) {
	switch desc.MediaType {
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return nil, fmt.Errorf("%w: %s uses the retired Docker schema 1 manifest; push it again with a current client", ErrBadArchive, r.full())
	}
	if !desc.MediaType.IsIndex() {
		img, err := desc.Image()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadArchive, r.full(), err)
		}
		return img, nil
	}
	idx, err := desc.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: index: %v", ErrBadArchive, r.full(), err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: index: %v", ErrBadArchive, r.full(), err)
	}
	child, err := choosePlatform(im, want)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.full(), err)
	}
	if child.MediaType.IsIndex() {
		return nil, fmt.Errorf("%w: %s: nested index %s is not supported", ErrBadArchive, r.full(), child.Digest)
	}
	img, err := idx.Image(child.Digest)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: image %s: %v", ErrBadArchive, r.full(), child.Digest, err)
	}
	return img, nil
}

// choosePlatform picks want's manifest from an index: the first whose
// platform satisfies want (a want without variant takes any variant).
// Entries without a platform (attestations) are skipped.
func choosePlatform(im *v1.IndexManifest, want v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, d := range im.Manifests {
		if d.Platform == nil || d.Platform.OS == "unknown" {
			continue
		}
		if d.Platform.Satisfies(want) {
			return d, nil
		}
		have = append(have, d.Platform.String())
	}
	if len(have) == 0 {
		return v1.Descriptor{}, fmt.Errorf("%w %s: the index lists no platforms", ErrNoPlatform, want.String())
	}
	return v1.Descriptor{}, fmt.Errorf("%w %s: the index has %s; pick one with --platform", ErrNoPlatform, want.String(), strings.Join(have, ", "))
}

// registryError turns go-containerregistry's errors into the package's.
func registryError(err error, r reference) error {
	if err == nil {
		return nil
	}
	var ce *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	if errors.As(err, &ce) || errors.As(err, &uae) {
		return fmt.Errorf("%w: %s: its TLS certificate is not trusted (%v); add its CA to the system's, or mark it insecure", ErrRegistryUnreachable, r.registryHost(), err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		codes := map[transport.ErrorCode]bool{}
		for _, d := range te.Errors {
			codes[d.Code] = true
		}
		switch {
		case codes[transport.UnauthorizedErrorCode], codes[transport.DeniedErrorCode],
			te.StatusCode == http.StatusUnauthorized, te.StatusCode == http.StatusForbidden:
			if r.path == "" {
				return fmt.Errorf("%w (registry %s refused the login)", ErrUnauthorized, r.registryHost())
			}
			return fmt.Errorf("%w (registry %s refused access to %s; log in with `berth login %s`)", ErrUnauthorized, r.registryHost(), r.path, r.registryHost())
		case codes[transport.ManifestUnknownErrorCode], codes[transport.NameUnknownErrorCode], te.StatusCode == http.StatusNotFound:
			what := "tag " + r.tag
			if r.digest != "" {
				what = "digest " + r.digest
			}
			return fmt.Errorf("%w: %s: manifest unknown (the registry has no %s in %s)", ErrUnknownManifest, r.full(), what, r.path)
		}
		return fmt.Errorf("image: registry %s: %w", r.registryHost(), err)
	}
	var ue *url.Error
	var oe *net.OpError
	switch {
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("%w: %s speaks plain HTTP; mark it insecure (--insecure-registry %s or %s)", ErrRegistryUnreachable, r.registryHost(), r.registryHost(), EnvInsecureRegistries)
	case errors.As(err, &oe), errors.As(err, &ue):
		return fmt.Errorf("%w: %s: %v", ErrRegistryUnreachable, r.registryHost(), err)
	}
	return err
}

// trackedImage wraps a remote image so that a layer whose download does
// not hash to its digest can be told apart from a layer that is corrupt
// in another way: the store may fail on a broken gzip stream before the
// registry client reaches the end of the blob and checks its digest.
type trackedImage struct {
	v1.Image
	mu  sync.Mutex
	bad map[string]error
}

// verifiesLayers: go-containerregistry's remote layers check each blob's
// size and digest as they are read.
func (t *trackedImage) verifiesLayers() bool { return true }

func (t *trackedImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := t.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return &trackedLayer{Layer: l, img: t}, nil
}

func (t *trackedImage) corrupt() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for l, err := range t.bad {
		return l, err
	}
	return "", nil
}

type trackedLayer struct {
	v1.Layer
	img *trackedImage
}

func (l *trackedLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	d, _ := l.Digest()
	return &trackedReader{rc: rc, layer: d.String(), img: l.img}, nil
}

// trackedReader notes a read error from the registry client (its digest
// and size checks fail at the end of the blob). Closed before the end
// after a failure elsewhere, it reads the rest of the blob to learn
// whether the registry's content was at fault.
type trackedReader struct {
	rc    io.ReadCloser
	layer string
	img   *trackedImage
	eof   bool
	err   error
}

func (r *trackedReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	if err == io.EOF {
		r.eof = true
	} else if err != nil && r.err == nil {
		r.err = err
	}
	return n, err
}

func (r *trackedReader) Close() error {
	if !r.eof && r.err == nil {
		_, r.err = io.Copy(io.Discard, r.rc)
	}
	if r.err != nil && !isNetError(r.err) {
		r.img.mu.Lock()
		if r.img.bad == nil {
			r.img.bad = map[string]error{}
		}
		r.img.bad[r.layer] = r.err
		r.img.mu.Unlock()
	}
	return r.rc.Close()
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}

// Push uploads the stored image ref to the registry its name points at
// ("localhost:5000/app:v1" goes to localhost:5000). Blobs the registry
// already has are not sent. Progress goes to the context's WithProgress
// function: "Pushing" with bytes, "Pushed", or "Layer already exists".
func (s *Store) Push(ctx context.Context, ref string, opts PushOptions) error {
	r, err := parseReference(ref)
	if err != nil {
		return err
	}
	if r.tag == "" {
		return fmt.Errorf("%w %q: push needs a name with a tag (tag the image first with `berth image tag`)", ErrInvalidName, ref)
	}
	img, err := s.OpenImage(r.familiar())
	if err != nil {
		return err
	}
	nref, err := opts.parse(reference{domain: r.domain, path: r.path, tag: r.tag})
	if err != nil {
		return err
	}
	progress := progressFrom(ctx)
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image %s: %w", ref, err)
	}
	pi := &pushImage{Image: img, progress: progress}
	for _, l := range layers {
		d, _ := l.Digest()
		sz, _ := l.Size()
		progress(ProgressEvent{Layer: d.String(), Status: "Preparing", Total: sz})
		pi.layers = append(pi.layers, &pushLayer{Layer: l, img: pi})
	}
	if err := remote.Write(nref, pi, opts.remote(ctx, r.registryHost())...); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return registryError(err, r)
	}
	for _, l := range pi.layers {
		d, _ := l.Digest()
		sz, _ := l.Size()
		if !l.opened.Load() {
			progress(ProgressEvent{Layer: d.String(), Status: "Layer already exists", Current: sz, Total: sz})
		}
	}
	return nil
}

// pushImage reports the upload of each layer it is asked for.
type pushImage struct {
	v1.Image
	progress Progress
	layers   []*pushLayer
}

func (p *pushImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(p.layers))
	for i, l := range p.layers {
		out[i] = l
	}
	return out, nil
}

func (p *pushImage) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	for _, l := range p.layers {
		if d, _ := l.Digest(); d == h {
			return l, nil
		}
	}
	return p.Image.LayerByDigest(h)
}

type pushLayer struct {
	v1.Layer
	img    *pushImage
	opened atomic.Bool
}

func (l *pushLayer) Compressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Compressed()
	if err != nil {
		return nil, err
	}
	l.opened.Store(true)
	d, _ := l.Digest()
	sz, _ := l.Size()
	return &pushReader{rc: rc, pr: progressReader{r: rc, fn: l.img.progress, layer: d.String(), total: sz, reportEvery: 512 << 10, status: "Pushing"}}, nil
}

type pushReader struct {
	rc   io.ReadCloser
	pr   progressReader
	done bool
}

func (r *pushReader) Read(p []byte) (int, error) {
	n, err := r.pr.Read(p)
	if err == io.EOF && !r.done {
		r.done = true
		r.pr.fn(ProgressEvent{Layer: r.pr.layer, Status: "Pushed", Current: r.pr.n, Total: r.pr.total})
	}
	return n, err
}

func (r *pushReader) Close() error { return r.rc.Close() }
