//go:build linux

package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// events records progress events.
type events struct {
	mu  sync.Mutex
	evs []ProgressEvent
}

func (e *events) ctx() context.Context {
	return WithProgress(context.Background(), func(ev ProgressEvent) {
		e.mu.Lock()
		e.evs = append(e.evs, ev)
		e.mu.Unlock()
	})
}

func (e *events) count(status string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, ev := range e.evs {
		if ev.Status == status {
			n++
		}
	}
	return n
}

func plainOpts(reg *testutil.Registry) RemoteOptions {
	return RemoteOptions{InsecureRegistries: []string{reg.Host}}
}

// TestPushPull pushes an image to a real registry, pulls it into a fresh
// store and checks the blobs are byte-identical and the tree is right.
func TestPushPull(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	src := newStore(t)
	ref := reg.Host + "/team/app:v1"
	stored, err := src.Add(context.Background(), multiLayerImage(t, "pushed"), ref)
	if err != nil {
		t.Fatal(err)
	}
	var push events
	if err := src.Push(push.ctx(), ref, PushOptions{RemoteOptions: plainOpts(reg)}); err != nil {
		t.Fatal(err)
	}
	if got := push.count("Pushed"); got != 3 {
		t.Fatalf("%d layers pushed, want 3 (%+v)", got, push.evs)
	}
	// A second push sends no layer.
	var again events
	if err := src.Push(again.ctx(), ref, PushOptions{RemoteOptions: plainOpts(reg)}); err != nil {
		t.Fatal(err)
	}
	if again.count("Pushed") != 0 || again.count("Layer already exists") != 3 {
		t.Fatalf("second push: %+v", again.evs)
	}

	dst := newStore(t)
	var pull events
	img, err := dst.Pull(pull.ctx(), ref, PullOptions{RemoteOptions: plainOpts(reg)})
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != stored.ID || img.Digest != stored.Digest || !slices.Equal(img.Names, []string{ref}) {
		t.Fatalf("pulled %+v, pushed %+v", img, stored)
	}
	if pull.count("Pulling fs layer") != 3 || pull.count("Done") != 3 {
		t.Fatalf("pull progress: %+v", pull.evs)
	}
	srcRec, _ := src.loadIndex()
	for _, b := range srcRec.Images[stored.ID].Blobs {
		want, _ := os.ReadFile(src.blobPath(b.Digest))
		got, err := os.ReadFile(dst.blobPath(b.Digest))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("layer blob %s differs after push and pull (%v)", b.Digest, err)
		}
	}
	// The whiteouts arrived as overlay whiteouts.
	dirs, err := dst.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	if mode, rdev := statMode(t, filepath.Join(dirs[1], "etc/gone")); mode&unix.S_IFMT != unix.S_IFCHR || rdev != 0 {
		t.Errorf("etc/gone in layer 2 is not a whiteout: mode %o rdev %d", mode, rdev)
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(dirs[1], "opq"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opq in layer 2 is not opaque: %q %v", buf[:n], err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[2], "app/extra")); err != nil || string(b) != "pushed" {
		t.Errorf("app/extra: %q %v", b, err)
	}

	// Pulling again downloads nothing.
	n := unpackCount.Load()
	var cached events
	if _, err := dst.Pull(cached.ctx(), ref, PullOptions{RemoteOptions: plainOpts(reg)}); err != nil {
		t.Fatal(err)
	}
	if unpackCount.Load() != n || cached.count("Already exists") != 3 {
		t.Fatalf("a second pull unpacked %d layers: %+v", unpackCount.Load()-n, cached.evs)
	}
	// By digest.
	byDigest, err := newStore(t).Pull(context.Background(), reg.Host+"/team/app@"+stored.Digest, PullOptions{RemoteOptions: plainOpts(reg)})
	if err != nil || byDigest.ID != stored.ID || len(byDigest.Names) != 0 {
		t.Fatalf("pull by digest: %+v %v", byDigest, err)
	}

	// Save from the pulling store, load elsewhere: the same image.
	var archive bytes.Buffer
	if err := dst.Save(context.Background(), &archive, ref); err != nil {
		t.Fatal(err)
	}
	loaded, err := newStore(t).Load(context.Background(), &archive)
	if err != nil || len(loaded) != 1 || loaded[0].ID != stored.ID || !slices.Equal(loaded[0].Layers, stored.Layers) {
		t.Fatalf("save/load of a pulled image: %+v %v", loaded, err)
	}
}

func TestPullErrors(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	s := newStore(t)
	ref := reg.Host + "/err/app:v1"
	if _, err := s.Add(context.Background(), multiLayerImage(t, "errs"), ref); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(context.Background(), ref, PushOptions{RemoteOptions: plainOpts(reg)}); err != nil {
		t.Fatal(err)
	}
	closed := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	tests := []struct {
		name string
		ref  string
		opts PullOptions
		want error
		text string
	}{
		{name: "unknown tag", ref: reg.Host + "/err/app:nope", want: ErrUnknownManifest, text: "manifest unknown"},
		{name: "unknown repository", ref: reg.Host + "/err/none:v1", want: ErrUnknownManifest},
		{name: "unreachable", ref: closed + "/x/y:v1", want: ErrRegistryUnreachable, text: closed},
		{name: "bad reference", ref: "Upper/Case", want: ErrInvalidName},
		{name: "bad platform", ref: ref, opts: PullOptions{Platform: "linux"}, text: "os/arch"},
		{name: "platform mismatch ignored for a single image", ref: ref, opts: PullOptions{Platform: "linux/s390x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.InsecureRegistries = []string{reg.Host}
			_, err := newStore(t).Pull(context.Background(), tc.ref, tc.opts)
			if tc.want == nil && tc.text == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
			}
		})
	}
}

// TestPullMultiArch pushes an index of two platforms and checks that the
// host's is picked, that --platform overrides, and that an absent one is
// refused clearly.
func TestPullMultiArch(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	mk := func(arch string) v1.Image {
		img, err := mutate.AppendLayers(empty.Image, layerOf(t, tarEntry{name: "arch", body: arch}))
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", arch
		img, err = mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	host, alt := mk(runtime.GOARCH), mk(other)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: alt, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: other}}},
		mutate.IndexAddendum{Add: host, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}}},
	)
	ref := reg.Host + "/multi/arch:v1"
	tag, _ := name.NewTag(ref, name.Insecure)
	if err := remote.WriteIndex(tag, idx); err != nil {
		t.Fatal(err)
	}
	opts := PullOptions{RemoteOptions: plainOpts(reg)}
	got, err := newStore(t).Pull(context.Background(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != mustDigest(t, host) || got.Architecture != runtime.GOARCH {
		t.Fatalf("pulled %s (%s), want the host's image %s", got.Digest, got.Architecture, mustDigest(t, host))
	}
	// Pulled by the index's digest, the image is found by it afterwards.
	idxDigest, _ := idx.Digest()
	byIndex := newStore(t)
	if got, err := byIndex.Pull(context.Background(), reg.Host+"/multi/arch@"+idxDigest.String(), opts); err != nil || got.Digest != mustDigest(t, host) {
		t.Fatalf("pull by index digest: %+v %v", got, err)
	}
	if got, err := byIndex.Get(reg.Host + "/multi/arch@" + idxDigest.String()); err != nil || got.Digest != mustDigest(t, host) {
		t.Fatalf("get by index digest: %+v %v", got, err)
	}
	opts.Platform = "linux/" + other
	if got, err = newStore(t).Pull(context.Background(), ref, opts); err != nil || got.Digest != mustDigest(t, alt) {
		t.Fatalf("--platform linux/%s: %+v %v", other, got, err)
	}
	opts.Platform = "linux/s390x"
	if _, err := newStore(t).Pull(context.Background(), ref, opts); !errors.Is(err, ErrNoPlatform) || !strings.Contains(err.Error(), "linux/"+other) {
		t.Fatalf("absent platform: %v", err)
	}
}

// TestPullAuthTLS uses a registry with htpasswd basic auth over TLS with a
// CA made for the test.
func TestPullAuthTLS(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "berth", Password: "s3cret"})
	s := newStore(t)
	ref := reg.Host + "/private/app:v1"
	if _, err := s.Add(context.Background(), multiLayerImage(t, "auth"), ref); err != nil {
		t.Fatal(err)
	}
	good := RemoteOptions{Transport: reg.Transport(), Auth: &Auth{Username: "berth", Password: "s3cret"}}
	if err := s.Push(context.Background(), ref, PushOptions{RemoteOptions: good}); err != nil {
		t.Fatal(err)
	}
	if _, err := newStore(t).Pull(context.Background(), ref, PullOptions{RemoteOptions: good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts RemoteOptions
		want error
		text string
	}{
		{name: "wrong password", opts: RemoteOptions{Transport: reg.Transport(), Auth: &Auth{Username: "berth", Password: "nope"}},
			want: ErrUnauthorized, text: "unauthorized: check the user name and password"},
		{name: "no credentials", opts: RemoteOptions{Transport: reg.Transport(), Keychain: authn.NewMultiKeychain()}, want: ErrUnauthorized},
		{name: "untrusted CA", opts: RemoteOptions{Auth: good.Auth}, want: ErrRegistryUnreachable, text: "not trusted"},
		{name: "insecure skips verification", opts: RemoteOptions{Auth: good.Auth, Insecure: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newStore(t).Pull(context.Background(), ref, PullOptions{RemoteOptions: tc.opts})
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("got %v, want %v containing %q", err, tc.want, tc.text)
			}
			if strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "nope") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestPullCorruptBlob corrupts a layer in the registry's storage: the
// pull is refused and the store is left as it was.
func TestPullCorruptBlob(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	s := newStore(t)
	ref := reg.Host + "/bad/app:v1"
	img := multiLayerImage(t, "corrupt")
	if _, err := s.Add(context.Background(), img, ref); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(context.Background(), ref, PushOptions{RemoteOptions: plainOpts(reg)}); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	for _, tc := range []struct {
		name  string
		layer int
		at    func(n int) int // offset of the flipped byte
	}{
		{name: "gzip body", layer: 0, at: func(n int) int { return n / 2 }},
		{name: "gzip trailer", layer: 2, at: func(n int) int { return n - 3 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := layers[tc.layer].Digest()
			p := reg.BlobPath(d.String())
			orig, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			bad := bytes.Clone(orig)
			bad[tc.at(len(bad))] ^= 0xff
			if err := os.WriteFile(p, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			defer os.WriteFile(p, orig, 0o644)

			dst := newStore(t)
			_, err = dst.Pull(context.Background(), ref, PullOptions{RemoteOptions: plainOpts(reg)})
			if !errors.Is(err, ErrDigestMismatch) {
				t.Fatalf("pull of a corrupt blob: %v, want ErrDigestMismatch", err)
			}
			t.Log(err)
			if list, _ := dst.List(); len(list) != 0 {
				t.Fatalf("the store lists %d images after a failed pull", len(list))
			}
			diffID, _ := layers[tc.layer].DiffID()
			if exists(dst.layerPath(diffID.String())) || exists(dst.blobPath(d.String())) {
				t.Fatal("the corrupt layer was stored")
			}
			if ents, _ := os.ReadDir(filepath.Join(dst.Root(), "tmp")); len(ents) != 0 {
				t.Fatalf("work left in tmp/: %v", ents)
			}
		})
	}
}

// countingProxy sits in front of a registry and counts GETs per path.
type countingProxy struct {
	mu   sync.Mutex
	gets map[string]int
	host string
	// fail, when set, answers a request itself (true) instead of passing
	// it on.
	fail func(w http.ResponseWriter, r *http.Request) bool
}

func newCountingProxy(t *testing.T, target string) *countingProxy {
	u, _ := url.Parse(target)
	cp := &countingProxy{gets: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		if r.Method == http.MethodGet {
			cp.gets[r.URL.Path]++
		}
		fail := cp.fail
		cp.mu.Unlock()
		if fail != nil && fail(w, r) {
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cp.host = strings.TrimPrefix(srv.URL, "http://")
	return cp
}

// TestConcurrentPullsShareDownload pulls one image from three goroutines,
// as three containers needing it would: each blob is fetched once.
func TestConcurrentPullsShareDownload(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	proxy := newCountingProxy(t, reg.URL())
	src := newStore(t)
	ref := proxy.host + "/shared/app:v1"
	stored, err := src.Add(context.Background(), multiLayerImage(t, "shared"), ref)
	if err != nil {
		t.Fatal(err)
	}
	opts := RemoteOptions{InsecureRegistries: []string{proxy.host}}
	if err := src.Push(context.Background(), ref, PushOptions{RemoteOptions: opts}); err != nil {
		t.Fatal(err)
	}
	proxy.mu.Lock()
	clear(proxy.gets)
	proxy.mu.Unlock()

	dst := newStore(t)
	n := unpackCount.Load()
	var wg sync.WaitGroup
	evs := make([]events, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = dst.Pull(evs[i].ctx(), ref, PullOptions{RemoteOptions: opts})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := unpackCount.Load() - n; got != 3 {
		t.Fatalf("%d layer unpacks, want 3", got)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	blobGets := 0
	for p, c := range proxy.gets {
		if strings.Contains(p, "/blobs/") {
			blobGets++
			if c != 1 {
				t.Errorf("GET %s %d times, want once", p, c)
			}
		}
	}
	if blobGets != len(stored.Layers)+1 { // the layers and the config
		t.Errorf("%d blobs fetched, want %d: %v", blobGets, len(stored.Layers)+1, proxy.gets)
	}
}

// TestPrune removes dangling images (or all with all=true) and reports
// the space freed; an image in use stays.
func TestPrune(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	a, err := s.Add(context.Background(), multiLayerImage(t, "a"), "app:a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Add(context.Background(), multiLayerImage(t, "b"), "app:b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(context.Background(), multiLayerImage(t, "dangling")); err != nil {
		t.Fatal(err)
	}
	du := func() int64 {
		var n int64
		filepath.Walk(s.Root(), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				n += fi.Size()
			}
			return nil
		})
		return n
	}
	before := du()
	rep, err := s.Prune(false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Images) != 1 || rep.SpaceReclaimed <= 0 {
		t.Fatalf("prune: %+v", rep)
	}
	mid := du()
	if mid >= before {
		t.Fatalf("prune freed nothing on disk: %d -> %d", before, mid)
	}
	rep, err = s.Prune(true, func(id string) bool { return id == b.ID })
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Images, []string{a.ID}) || rep.SpaceReclaimed <= 0 || du() >= mid {
		t.Fatalf("prune -a: %+v", rep)
	}
	if _, err := s.Get("app:b"); err != nil {
		t.Fatalf("the image in use was pruned: %v", err)
	}
}

// TestInterruptedPullResumes fails one layer's download after the others
// finished: a second pull fetches only that layer.
func TestInterruptedPullResumes(t *testing.T) {
	testutil.RequireRoot(t)
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{})
	proxy := newCountingProxy(t, reg.URL())
	src := newStore(t)
	ref := proxy.host + "/resume/app:v1"
	img := multiLayerImage(t, "resume")
	if _, err := src.Add(context.Background(), img, ref); err != nil {
		t.Fatal(err)
	}
	opts := PullOptions{RemoteOptions: RemoteOptions{InsecureRegistries: []string{proxy.host}}}
	if err := src.Push(context.Background(), ref, PushOptions{RemoteOptions: opts.RemoteOptions}); err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	bad, _ := layers[1].Digest()
	failedPull := func(dst *Store) {
		t.Helper()
		others := make(chan struct{}, len(layers))
		ctx := WithProgress(context.Background(), func(ev ProgressEvent) {
			if ev.Status == "Done" {
				others <- struct{}{}
			}
		})
		proxy.mu.Lock()
		proxy.fail = func(w http.ResponseWriter, r *http.Request) bool {
			if !strings.HasSuffix(r.URL.Path, "/blobs/"+bad.String()) {
				return false
			}
			// Fail only once the other layers are stored, as a connection
			// lost late in a pull would.
			for range len(layers) - 1 {
				select {
				case <-others:
				case <-time.After(10 * time.Second):
				}
			}
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"gone"}]}`, http.StatusNotFound)
			return true
		}
		proxy.mu.Unlock()
		if _, err := dst.Pull(ctx, ref, opts); err == nil {
			t.Fatal("the pull succeeded without a layer")
		}
		proxy.mu.Lock()
		proxy.fail = nil
		clear(proxy.gets)
		proxy.mu.Unlock()
	}

	// Prune keeps a failed pull's layers for a while, then frees them.
	orphans := newStore(t)
	failedPull(orphans)
	layerDirs := func() int {
		ents, _ := os.ReadDir(filepath.Join(orphans.Root(), "layers", "sha256"))
		return len(ents)
	}
	if layerDirs() != len(layers)-1 {
		t.Fatalf("%d layers kept from the failed pull, want %d", layerDirs(), len(layers)-1)
	}
	if rep, err := orphans.Prune(false, nil); err != nil || rep.SpaceReclaimed != 0 || layerDirs() != len(layers)-1 {
		t.Fatalf("prune took a fresh failed pull's layers: %+v %v", rep, err)
	}
	defer func(age time.Duration) { orphanAge = age }(orphanAge)
	orphanAge = 0
	if rep, err := orphans.Prune(false, nil); err != nil || rep.SpaceReclaimed <= 0 || layerDirs() != 0 {
		t.Fatalf("prune of a failed pull's layers: %+v %v, %d left", rep, err, layerDirs())
	}
	if ents, _ := os.ReadDir(filepath.Join(orphans.Root(), "blobs", "sha256")); len(ents) != 0 {
		t.Fatalf("blobs left after prune: %v", ents)
	}
	orphanAge = time.Hour

	dst := newStore(t)
	failedPull(dst)
	n := unpackCount.Load()
	var again events
	if _, err := dst.Pull(again.ctx(), ref, opts); err != nil {
		t.Fatal(err)
	}
	if got := unpackCount.Load() - n; got != 1 {
		t.Fatalf("the resumed pull unpacked %d layers, want only the missing one", got)
	}
	proxy.mu.Lock()
	defer proxy.mu.Unlock()
	for p, c := range proxy.gets {
		if strings.Contains(p, "/blobs/sha256:") && !strings.HasSuffix(p, bad.String()) && c > 0 {
			if cfg, _ := img.ConfigName(); strings.HasSuffix(p, cfg.String()) {
				continue
			}
			t.Errorf("the resumed pull fetched %s again", p)
		}
	}
	if again.count("Already exists") != len(layers)-1 {
		t.Fatalf("resumed pull: %+v", again.evs)
	}
}
