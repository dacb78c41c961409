//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	gcrcompression "github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func importBusybox(t testing.TB, s *Store, name string) *Image {
	t.Helper()
	f, err := os.Open(testutil.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := s.Import(context.Background(), f, name)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func layerOf(t testing.TB, entries ...tarEntry) v1.Layer {
	t.Helper()
	data := mkTar(t, entries...)
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// baseLayer is shared by the images of several tests.
func baseLayer(t testing.TB) v1.Layer {
	return layerOf(t,
		tarEntry{name: "etc/", typ: tar.TypeDir},
		tarEntry{name: "etc/keep", body: "keep\n"},
		tarEntry{name: "etc/gone", body: "gone\n"},
		tarEntry{name: "opq/", typ: tar.TypeDir},
		tarEntry{name: "opq/old", body: "old\n"},
	)
}

// multiLayerImage has three layers: a base, one that deletes etc/gone and
// makes opq/ opaque, and one more file; it sets a config.
func multiLayerImage(t testing.TB, extra string) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image,
		baseLayer(t),
		layerOf(t,
			tarEntry{name: "etc/", typ: tar.TypeDir},
			tarEntry{name: "etc/.wh.gone"},
			tarEntry{name: "opq/", typ: tar.TypeDir},
			tarEntry{name: "opq/.wh..wh..opq"},
			tarEntry{name: "opq/new", body: "new\n"},
		),
		layerOf(t, tarEntry{name: "app/", typ: tar.TypeDir}, tarEntry{name: "app/extra", body: extra}),
	)
	if err != nil {
		t.Fatal(err)
	}
	img, err = mutate.Config(img, v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"}, Cmd: []string{"echo hi"},
		Env: []string{"PATH=/bin"}, WorkingDir: "/app", User: "1000:1000",
		ExposedPorts: map[string]struct{}{"80/tcp": {}}, Labels: map[string]string{"a": "b"},
		StopSignal: "SIGQUIT",
	})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// dockerSave writes img as `docker save` does: uncompressed layer.tar
// files, a config JSON and manifest.json.
func dockerSave(t testing.TB, img v1.Image, tags ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(n string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	cfg, _ := img.RawConfigFile()
	cfgName, _ := img.ConfigName()
	add(cfgName.Hex+".json", cfg)
	layers, _ := img.Layers()
	var paths []string
	for _, l := range layers {
		d, _ := l.DiffID()
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(rc)
		rc.Close()
		p := d.Hex + "/layer.tar"
		add(p, b)
		paths = append(paths, p)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": cfgName.Hex + ".json", "RepoTags": tags, "Layers": paths}})
	add("manifest.json", m)
	tw.Close()
	return buf.Bytes()
}

func mustDigest(t testing.TB, img v1.Image) string {
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func statMode(t testing.TB, p string) (uint32, uint64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mode, st.Rdev
}

func TestImportBusybox(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	img := importBusybox(t, s, "busybox")
	if !slices.Equal(img.Names, []string{"busybox:latest"}) || len(img.Layers) != 1 || img.Size <= 0 {
		t.Fatalf("imported image: %+v", img)
	}
	if !strings.HasPrefix(img.ID, "sha256:") || !strings.HasPrefix(img.Digest, "sha256:") || img.Created.IsZero() {
		t.Fatalf("ID %q digest %q created %v", img.ID, img.Digest, img.Created)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(dirs[0], "bin/busybox"), "echo", "hi").Output()
	if err != nil || string(out) != "hi\n" {
		t.Fatalf("busybox from the layer: %q %v", out, err)
	}
	for _, d := range []string{img.ID, img.Digest} {
		if !exists(s.blobPath(d)) {
			t.Errorf("blob %s missing", d)
		}
	}
	// Reopening the store finds the image.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	got, err := s2.Get("busybox:latest")
	if err != nil || got.ID != img.ID {
		t.Fatalf("after reopen: %v %v", got, err)
	}
	// The stored blob round-trips through OpenImage to the same diffID.
	v1img, err := s.OpenImage("busybox")
	if err != nil {
		t.Fatal(err)
	}
	ls, err := v1img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := v1.SHA256(rc)
	rc.Close()
	if err != nil || h.String() != img.Layers[0] {
		t.Fatalf("stored blob unpacks to %s, want %s (%v)", h, img.Layers[0], err)
	}
}

func TestImportGzipAndBadName(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	raw, err := os.ReadFile(testutil.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	if _, err := s.Import(context.Background(), bytes.NewReader(raw), "Not/Valid"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Import with a bad name: %v", err)
	}
	plain, err := s.Import(context.Background(), bytes.NewReader(raw), "plain:v1")
	if err != nil {
		t.Fatal(err)
	}
	n := unpackCount.Load()
	zipped, err := s.Import(context.Background(), &gz, "zipped:v1")
	if err != nil {
		t.Fatal(err)
	}
	if zipped.Layers[0] != plain.Layers[0] || unpackCount.Load() != n {
		t.Fatal("the same tree imported gzip-compressed was unpacked again")
	}
	if _, err := s.Import(context.Background(), bytes.NewReader(raw[:len(raw)/3]), "cut"); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("Import of a truncated tar: %v", err)
	}
	for _, n := range []string{"plain:v1", "zipped:v1"} {
		if _, err := s.Get(n); err != nil {
			t.Fatalf("after a failed import: %v", err)
		}
	}
	if _, err := s.Get("cut"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed import left an image: %v", err)
	}
}

func TestGet(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	img := importBusybox(t, s, "busybox")
	hex := strings.TrimPrefix(img.ID, "sha256:")
	tests := []struct {
		name, ref string
		want      error
	}{
		{"short name", "busybox", nil},
		{"tag", "busybox:latest", nil},
		{"full name", "docker.io/library/busybox:latest", nil},
		{"full ID", img.ID, nil},
		{"bare hex", hex, nil},
		{"prefix", hex[:4], nil},
		{"prefix with algorithm", "sha256:" + hex[:12], nil},
		{"digest", "busybox@" + img.Digest, nil},
		{"prefix too short", hex[:3], ErrNotFound},
		{"other tag", "busybox:1.0", ErrNotFound},
		{"other image", "alpine", ErrNotFound},
		{"invalid", "Bad Name", ErrInvalidName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(tt.ref)
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Get(%q) = %v, want %v", tt.ref, err, tt.want)
				}
				return
			}
			if err != nil || got.ID != img.ID {
				t.Fatalf("Get(%q) = %v, %v", tt.ref, got, err)
			}
		})
	}
}

func TestLoadDockerArchive(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	src := multiLayerImage(t, "x")
	imgs, err := s.Load(context.Background(), bytes.NewReader(dockerSave(t, src, "localhost:5000/app:v1", "app")))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 {
		t.Fatalf("loaded %d images", len(imgs))
	}
	img := imgs[0]
	wantID, _ := src.ConfigName()
	if img.ID != wantID.String() || !slices.Equal(img.Names, []string{"app:latest", "localhost:5000/app:v1"}) {
		t.Fatalf("loaded %s %v", img.ID, img.Names)
	}
	c := img.Config
	if !slices.Equal(c.Entrypoint, []string{"/bin/sh", "-c"}) || !slices.Equal(c.Cmd, []string{"echo hi"}) || c.WorkingDir != "/app" ||
		c.User != "1000:1000" || c.StopSignal != "SIGQUIT" || !slices.Equal(c.ExposedPorts, []string{"80/tcp"}) || c.Labels["a"] != "b" {
		t.Fatalf("config: %+v", c)
	}
	if len(img.History) != 3 || img.History[1].Size == 0 {
		t.Fatalf("history: %+v", img.History)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil || len(dirs) != 3 {
		t.Fatalf("LayerDirs: %v %v", dirs, err)
	}
	if mode, rdev := statMode(t, filepath.Join(dirs[1], "etc/gone")); mode&unix.S_IFMT != unix.S_IFCHR || rdev != 0 {
		t.Fatalf("etc/gone in layer 2: mode %o rdev %d, want a whiteout", mode, rdev)
	}
	buf := make([]byte, 4)
	if n, err := unix.Lgetxattr(filepath.Join(dirs[1], "opq"), overlayOpaqueXattr, buf); err != nil || string(buf[:n]) != "y" {
		t.Fatalf("opaque xattr: %q %v", buf[:n], err)
	}
	// The store wrote a gzip manifest for the plain layers and can serve it.
	v1img, err := s.OpenImage(img.ID)
	if err != nil {
		t.Fatal(err)
	}
	m, err := v1img.Manifest()
	if err != nil || len(m.Layers) != 3 || m.Layers[0].MediaType != "application/vnd.docker.image.rootfs.diff.tar.gzip" {
		t.Fatalf("manifest %+v %v", m, err)
	}
	if mustDigest(t, v1img) != img.Digest {
		t.Fatalf("OpenImage digest %s, stored %s", mustDigest(t, v1img), img.Digest)
	}
}

func TestLoadOCIArchive(t *testing.T) {
	testutil.RequireRoot(t)
	src := multiLayerImage(t, "oci")
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(src, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "localhost:5000/oci:v2"})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := testutil.TarDir(&buf, dir); err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	imgs, err := s.Load(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || !slices.Equal(imgs[0].Names, []string{"localhost:5000/oci:v2"}) {
		t.Fatalf("loaded %+v", imgs)
	}
	// The image's own manifest is kept: same digest as the source.
	if imgs[0].Digest != mustDigest(t, src) {
		t.Fatalf("digest %s, source %s", imgs[0].Digest, mustDigest(t, src))
	}
	if _, err := s.LayerDirs(imgs[0]); err != nil {
		t.Fatal(err)
	}
}

func TestAddKeepsBlobsByteIdentical(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	src := multiLayerImage(t, "add")
	img, err := s.Add(context.Background(), src, "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != mustDigest(t, src) {
		t.Fatalf("digest %s, source %s", img.Digest, mustDigest(t, src))
	}
	layers, _ := src.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		rc, _ := l.Compressed()
		want, _ := io.ReadAll(rc)
		rc.Close()
		got, err := os.ReadFile(s.blobPath(d.String()))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("blob %s differs from the source (%v)", d, err)
		}
	}
}

func TestReAddReusesLayers(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	src := multiLayerImage(t, "again")
	img, err := s.Add(context.Background(), src, "app")
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := s.LayerDirs(img)
	var before unix.Stat_t
	unix.Stat(dirs[0], &before)
	n := unpackCount.Load()
	var mu sync.Mutex
	var statuses []string
	ctx := WithProgress(context.Background(), func(e ProgressEvent) {
		mu.Lock()
		statuses = append(statuses, e.Status)
		mu.Unlock()
	})
	img2, err := s.Add(ctx, src, "app:other")
	if err != nil {
		t.Fatal(err)
	}
	if got := unpackCount.Load() - n; got != 0 {
		t.Fatalf("re-add unpacked %d layers", got)
	}
	var after unix.Stat_t
	unix.Stat(dirs[0], &after)
	if after.Ino != before.Ino || after.Mtim != before.Mtim {
		t.Fatal("layer directory was replaced")
	}
	if len(statuses) != 3 || statuses[0] != "Already exists" {
		t.Fatalf("progress: %v", statuses)
	}
	if img2.ID != img.ID || !slices.Equal(img2.Names, []string{"app:latest", "app:other"}) {
		t.Fatalf("re-added image %v", img2)
	}
	// A docker archive of the same image (no manifest) reuses them too.
	if _, err := s.Load(context.Background(), bytes.NewReader(dockerSave(t, src))); err != nil {
		t.Fatal(err)
	}
	if got := unpackCount.Load() - n; got != 0 {
		t.Fatalf("loading the same layers unpacked %d", got)
	}
}

func TestConcurrentAddSharedLayer(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	base := baseLayer(t)
	var srcs []v1.Image
	for i := range 4 {
		img, err := mutate.AppendLayers(empty.Image, base, layerOf(t, tarEntry{name: fmt.Sprintf("own%d", i), body: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, img)
	}
	n := unpackCount.Load()
	baseDigest, _ := base.Digest()
	var mu sync.Mutex
	reads := 0 // times the shared blob was read to the end
	ctx := WithProgress(context.Background(), func(e ProgressEvent) {
		if e.Layer == baseDigest.String() && e.Status == "Done" {
			mu.Lock()
			reads++
			mu.Unlock()
		}
	})
	var wg sync.WaitGroup
	errs := make([]error, len(srcs))
	for i, img := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Add(ctx, img, fmt.Sprintf("img%d", i))
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := unpackCount.Load() - n; got != 5 {
		t.Fatalf("%d unpacks for 1 shared + 4 own layers, want 5", got)
	}
	if reads != 1 {
		t.Fatalf("the shared layer's blob was read %d times, want once", reads)
	}
	list, _ := s.List()
	if len(list) != 4 {
		t.Fatalf("listed %d images", len(list))
	}
}

func TestTagAndRemove(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	a, err := s.Add(context.Background(), multiLayerImage(t, "a"), "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Add(context.Background(), multiLayerImage(t, "b"), "b")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("a", "localhost:5000/a:v1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag("a", "BAD"); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Tag with a bad name: %v", err)
	}
	got, _ := s.Get("localhost:5000/a:v1")
	if got == nil || got.ID != a.ID {
		t.Fatal("tag does not resolve")
	}
	// Untag one of two names: nothing is deleted.
	out, err := s.Remove("a")
	if err != nil || !slices.Equal(out, []string{"Untagged: a:latest"}) {
		t.Fatalf("Remove: %v %v", out, err)
	}
	aDirs, _ := s.LayerDirs(a)
	bDirs, _ := s.LayerDirs(b)
	// Remove the last name: a's own layer and blobs go, the shared ones stay.
	out, err = s.Remove("localhost:5000/a:v1")
	if err != nil || !slices.Equal(out, []string{"Untagged: localhost:5000/a:v1", "Deleted: " + a.ID}) {
		t.Fatalf("Remove: %v %v", out, err)
	}
	if _, err := s.Get(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removed image still found: %v", err)
	}
	if exists(aDirs[2]) || exists(s.blobPath(a.ID)) || exists(s.blobPath(a.Digest)) {
		t.Fatal("unused layer or blobs of the removed image remain")
	}
	for _, d := range bDirs {
		if !exists(d) {
			t.Fatalf("layer %s of the remaining image was deleted", d)
		}
	}
	if _, err := s.Remove(a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove: %v", err)
	}
	// Remove by ID prefix deletes everything that is left.
	if _, err := s.Remove(strings.TrimPrefix(b.ID, "sha256:")[:8]); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"layers/sha256", "blobs/sha256", "tmp"} {
		ents, _ := os.ReadDir(filepath.Join(s.Root(), sub))
		if len(ents) != 0 {
			t.Fatalf("%s not empty after removing every image: %d entries", sub, len(ents))
		}
	}
}

func TestCorruptArchives(t *testing.T) {
	testutil.RequireRoot(t)
	src := multiLayerImage(t, "corrupt")
	good := dockerSave(t, src, "app")
	// Flip a byte inside the last layer's content.
	flipped := bytes.Clone(good)
	i := bytes.Index(flipped, []byte("corrupt"))
	flipped[i] ^= 0xff
	evil, err := mutate.AppendLayers(empty.Image, layerOf(t, tarEntry{name: "ok", body: "x"}, tarEntry{name: "../escape", body: "x"}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated", good[:len(good)/2], ErrBadArchive},
		{"flipped byte", flipped, ErrDigestMismatch},
		{"not an archive", []byte("hello"), ErrBadArchive},
		{"empty tar", mkTar(t), ErrBadArchive},
		{"escaping layer", dockerSave(t, evil, "evil"), ErrUnsafePath},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			prev, err := s.Add(context.Background(), multiLayerImage(t, "kept"), "kept")
			if err != nil {
				t.Fatal(err)
			}
			prevDirs, _ := s.LayerDirs(prev)
			_, err = s.Load(context.Background(), bytes.NewReader(tt.data))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Load: %v, want %v", err, tt.want)
			}
			t.Logf("error: %v", err)
			list, _ := s.List()
			if len(list) != 1 || list[0].ID != prev.ID {
				t.Fatalf("store changed: %d images", len(list))
			}
			ents, _ := os.ReadDir(filepath.Join(s.Root(), "layers/sha256"))
			if len(ents) != len(prevDirs) {
				t.Fatalf("%d layer dirs, want the %d that were there", len(ents), len(prevDirs))
			}
			if ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp")); len(ents) != 0 {
				t.Fatalf("work left in tmp: %v", ents)
			}
		})
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	bb := importBusybox(t, s, "busybox")
	app, err := s.Add(context.Background(), multiLayerImage(t, "rt"), "localhost:5000/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Save(context.Background(), &buf, "busybox", app.ID); err != nil {
		t.Fatal(err)
	}
	// go-containerregistry reads it as a docker archive.
	tag, _ := name.NewTag("localhost:5000/app:v1")
	if _, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil }, &tag); err != nil {
		t.Fatalf("tarball.Image on the saved archive: %v", err)
	}
	s2 := newStore(t)
	imgs, err := s2.Load(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("loaded %d images", len(imgs))
	}
	for _, want := range []*Image{bb, app} {
		got, err := s2.Get(want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Names, want.Names) || !slices.Equal(got.Layers, want.Layers) || got.Size != want.Size {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
		if got.Digest != want.Digest {
			t.Logf("digest changed across save/load: %s -> %s", want.Digest, got.Digest)
		}
	}
}

// TestOverlayMount mounts an image's layers the way the container runtime
// will and checks that whiteouts and opaque directories do their job.
func TestOverlayMount(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	// From a file: Load reads it in place, without a spool copy.
	archive := filepath.Join(t.TempDir(), "ovl.tar")
	if err := os.WriteFile(archive, dockerSave(t, multiLayerImage(t, "ovl"), "ovl"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := s.Load(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	dirs, err := s.LayerDirs(img[0])
	if err != nil {
		t.Fatal(err)
	}
	lower := slices.Clone(dirs)
	slices.Reverse(lower)
	mnt := t.TempDir()
	if err := unix.Mount("overlay", mnt, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
		t.Skipf("overlayfs mount not possible here: %v", err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	read := func(p string) (string, error) {
		b, err := os.ReadFile(filepath.Join(mnt, p))
		return string(b), err
	}
	if got, err := read("etc/keep"); err != nil || got != "keep\n" {
		t.Errorf("etc/keep: %q %v", got, err)
	}
	if _, err := read("etc/gone"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("etc/gone is not hidden by its whiteout: %v", err)
	}
	if _, err := read("opq/old"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("opq/old is not hidden by the opaque dir: %v", err)
	}
	if got, err := read("opq/new"); err != nil || got != "new\n" {
		t.Errorf("opq/new: %q %v", got, err)
	}
	if got, err := read("app/extra"); err != nil || got != "ovl" {
		t.Errorf("app/extra: %q %v", got, err)
	}
	if err := unix.Unmount(mnt, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		t.Fatal(err)
	}
}

func TestAddZstdAndRepeatedLayer(t *testing.T) {
	testutil.RequireRoot(t)
	data := mkTar(t, tarEntry{name: "z/", typ: tar.TypeDir}, tarEntry{name: "z/file", body: "zstd"})
	zl, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithCompression(gcrcompression.ZStd), tarball.WithMediaType(types.OCILayerZStd))
	if err != nil {
		t.Fatal(err)
	}
	empty1 := layerOf(t)
	src, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), empty1, zl, empty1)
	if err != nil {
		t.Fatal(err)
	}
	s := newStore(t)
	n := unpackCount.Load()
	img, err := s.Add(context.Background(), src, "zstd")
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Layers) != 3 || img.Layers[0] != img.Layers[2] {
		t.Fatalf("layers %v", img.Layers)
	}
	if got := unpackCount.Load() - n; got != 2 {
		t.Fatalf("%d unpacks for 2 distinct layers", got)
	}
	dirs, err := s.LayerDirs(img)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[1], "z/file")); err != nil || string(b) != "zstd" {
		t.Fatalf("zstd layer content %q %v", b, err)
	}
	if img.Digest != mustDigest(t, src) {
		t.Fatalf("digest %s, source %s", img.Digest, mustDigest(t, src))
	}
}

func TestAddCancelled(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Add(ctx, multiLayerImage(t, "cancel"), "cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add with a cancelled context: %v", err)
	}
	for _, sub := range []string{"layers/sha256", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(s.Root(), sub)); len(ents) != 0 {
			t.Fatalf("%s holds %d entries after a cancelled Add", sub, len(ents))
		}
	}
	if _, err := s.Get("cancel"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancelled image stored: %v", err)
	}
}

// TestAddRemoveRace adds and removes two images that share a layer from
// two goroutines: after every Add the image's layers must all be on disk.
func TestAddRemoveRace(t *testing.T) {
	testutil.RequireRoot(t)
	s := newStore(t)
	base := baseLayer(t)
	var srcs []v1.Image
	for i := range 2 {
		img, err := mutate.AppendLayers(empty.Image, base, layerOf(t, tarEntry{name: fmt.Sprintf("race%d", i), body: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		srcs = append(srcs, img)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 15 {
				img, err := s.Add(context.Background(), src, fmt.Sprintf("race%d", i))
				if err != nil {
					errs <- err
					return
				}
				if _, err := s.LayerDirs(img); err != nil {
					errs <- err
					return
				}
				if _, err := s.Remove(img.ID); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(s.Root(), "layers/sha256")); len(ents) != 0 {
		t.Fatalf("%d layer dirs left after removing everything", len(ents))
	}
}
