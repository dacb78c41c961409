package image

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// FuzzParseReference checks that every reference is either refused with
// ErrInvalidName or normalised stably: the full form parses back to the
// same reference, the registry client accepts it, and a name's familiar
// form is a fixed point of ParseName.
func FuzzParseReference(f *testing.F) {
	for _, s := range []string{
		"busybox", "busybox:1.36", "library/busybox", "docker.io/library/busybox:latest",
		"index.docker.io/x/y", "localhost:5000/app:v1", "127.0.0.1:5000/team/app@sha256:" + string(bytes.Repeat([]byte("a"), 64)),
		"[::1]:5000/a/b:c", "Upper/case", "a//b", "a:b:c", "host.example/a__b/c-d.e:T_1", ":tag", "@sha256:",
		"repo:tag@sha256:" + string(bytes.Repeat([]byte("0"), 64)), string(bytes.Repeat([]byte("f"), 64)),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parseReference(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("parseReference(%q): error %v does not wrap ErrInvalidName", s, err)
			}
			return
		}
		full := r.full()
		r2, err := parseReference(full)
		if err != nil {
			t.Fatalf("full form %q of %q does not parse: %v", full, s, err)
		}
		if r2 != r {
			t.Fatalf("%q -> %+v, its full form %q -> %+v", s, r, full, r2)
		}
		// Docker takes an upper-case first component for a host; the
		// registry client does not, and Pull refuses such a name cleanly.
		if _, err := name.ParseReference(full, name.StrictValidation); err != nil && r.domain == strings.ToLower(r.domain) {
			t.Fatalf("the registry client refuses %q (from %q): %v", full, s, err)
		}
		if r.tag != "" && r.digest == "" {
			fam, err := ParseName(s)
			if err != nil {
				t.Fatalf("ParseName(%q): %v", s, err)
			}
			if again, err := ParseName(fam); err != nil || again != fam {
				t.Fatalf("ParseName(%q) = %q, then %q %v", s, fam, again, err)
			}
		}
	})
}

// fakeImage serves a fuzzed manifest and config; layers are empty.
type fakeImage struct {
	man, cfg []byte
}

func (f *fakeImage) RawConfigFile() ([]byte, error) { return f.cfg, nil }
func (f *fakeImage) RawManifest() ([]byte, error)   { return f.man, nil }
func (f *fakeImage) MediaType() (types.MediaType, error) {
	m, err := v1.ParseManifest(bytes.NewReader(f.man))
	if err != nil {
		return "", err
	}
	return m.MediaType, nil
}
func (f *fakeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	return &fakeLayer{h: h}, nil
}

type fakeLayer struct{ h v1.Hash }

func (l *fakeLayer) Digest() (v1.Hash, error) { return l.h, nil }
func (l *fakeLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(nil)), nil
}
func (l *fakeLayer) Size() (int64, error)                { return 0, nil }
func (l *fakeLayer) MediaType() (types.MediaType, error) { return types.DockerLayer, nil }

// FuzzManifestHandling feeds registry-shaped JSON to what a pull does
// before it touches the disk: choosing a platform from an index and
// reading an image's manifest and config. Nothing may panic, and a
// choice must satisfy the platform asked for.
func FuzzManifestHandling(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:`+string(bytes.Repeat([]byte("a"), 64))+`","size":1,"platform":{"os":"linux","architecture":"amd64"}},{"digest":"sha256:`+string(bytes.Repeat([]byte("b"), 64))+`","size":1,"platform":{"os":"unknown","architecture":"unknown"}}]}`),
		[]byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:`+string(bytes.Repeat([]byte("c"), 64))+`"]}}`), "linux/amd64")
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:`+string(bytes.Repeat([]byte("d"), 64))+`","size":2},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:`+string(bytes.Repeat([]byte("e"), 64))+`","size":3}]}`),
		[]byte(`{}`), "linux/arm64/v8")
	f.Add([]byte(`{"manifests":[{"platform":null}]}`), []byte(`null`), "")
	f.Fuzz(func(t *testing.T, man, cfg []byte, platform string) {
		want := HostPlatform()
		if p, err := v1.ParsePlatform(platform); err == nil && p.OS != "" && p.Architecture != "" {
			want = *p
		}
		if im, err := v1.ParseIndexManifest(bytes.NewReader(man)); err == nil {
			d, err := choosePlatform(im, want)
			if err == nil && (d.Platform == nil || !d.Platform.Satisfies(want)) {
				t.Fatalf("chose %+v for %s", d.Platform, want.String())
			}
			if err != nil && !errors.Is(err, ErrNoPlatform) {
				t.Fatalf("choosePlatform: %v does not wrap ErrNoPlatform", err)
			}
		}
		img, err := partial.CompressedToImage(&fakeImage{man: man, cfg: cfg})
		if err != nil {
			return
		}
		src, err := sourceFromImage(img)
		if err != nil {
			if !errors.Is(err, ErrBadArchive) {
				t.Fatalf("sourceFromImage: %v does not wrap ErrBadArchive", err)
			}
			return
		}
		if _, err := v1.ParseConfigFile(bytes.NewReader(src.configRaw)); err == nil {
			_ = len(src.layers)
		}
	})
}
