package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Import makes a one-layer image from a root filesystem tar (plain, gzip
// or zstd), like `docker import`, and names it name (none when empty). A
// first pass spools the plain tar to a temporary file and computes its
// diffID; the layer is then stored like any other, so importing the same
// tree twice unpacks it once.
func (s *Store) Import(ctx context.Context, r io.Reader, name string) (*Image, error) {
	var names []string
	if name != "" {
		fam, err := ParseName(name)
		if err != nil {
			return nil, err
		}
		names = []string{fam}
	}
	spool := s.tmpPath("import")
	f, err := os.OpenFile(spool, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image: import: %w", err)
	}
	defer os.Remove(spool)
	defer f.Close()
	tr, closeDec, _, err := decompress(r)
	if err != nil {
		return nil, fmt.Errorf("image: import: %w", err)
	}
	h := newHashCounter()
	if _, err := io.Copy(io.MultiWriter(f, h), tr); err != nil {
		closeDec()
		return nil, fmt.Errorf("%w: import: reading rootfs tar: %v", ErrBadArchive, err)
	}
	closeDec()
	if h.n == 0 {
		return nil, fmt.Errorf("%w: import: the rootfs tar is empty", ErrBadArchive)
	}
	diffID, _ := v1.NewHash(h.digest())
	now := time.Now().UTC().Truncate(time.Second)
	cfg := v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: now},
		RootFS:       v1.RootFS{Type: "layers", DiffIDs: []v1.Hash{diffID}},
		History:      []v1.History{{Created: v1.Time{Time: now}, CreatedBy: "berth image import", Comment: "Imported from tar"}},
	}
	cfgRaw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	src := &source{configRaw: cfgRaw, layers: []layerSource{{size: -1, open: func() (io.ReadCloser, error) {
		return io.NopCloser(io.NewSectionReader(f, 0, h.n)), nil
	}}}}
	return s.addSource(ctx, src, names)
}

// Load stores every image of an image archive: a `docker save` tarball
// (manifest.json) or an OCI image archive (a tar of an OCI layout with
// index.json), plain or gzip-compressed. It returns the images in archive
// order. Names come from RepoTags, or from the OCI annotations
// io.containerd.image.name / org.opencontainers.image.ref.name (when that
// holds a full name). A multi-platform index contributes the image for
// this host's platform.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]*Image, error) {
	f, cleanup, err := s.spoolArchive(r)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	a, err := indexArchive(f)
	if err != nil {
		return nil, err
	}
	var srcs []*source
	var names [][]string
	switch {
	case a.has("manifest.json"):
		srcs, names, err = a.dockerSources()
	case a.has("index.json"):
		srcs, names, err = a.ociSources()
	default:
		return nil, fmt.Errorf("%w: neither manifest.json (docker save) nor index.json (OCI archive) found", ErrBadArchive)
	}
	if err != nil {
		return nil, err
	}
	var out []*Image
	for i, src := range srcs {
		img, err := s.addSource(ctx, src, names[i])
		if err != nil {
			return out, err
		}
		out = append(out, img)
	}
	return out, nil
}

// spoolArchive gives random access to an archive: a plain *os.File is
// used as it is, anything else (a pipe, a gzip stream) is copied to a
// temporary file first.
func (s *Store) spoolArchive(r io.Reader) (*os.File, func(), error) {
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			off, err := f.Seek(0, io.SeekCurrent)
			var magic [4]byte
			n, _ := f.ReadAt(magic[:], off)
			if err == nil && off == 0 && !bytes.HasPrefix(magic[:n], gzipMagic) && !bytes.HasPrefix(magic[:n], zstdMagic) {
				return f, func() {}, nil
			}
		}
	}
	tmp := s.tmpPath("archive")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("image: load: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(tmp) }
	dec, closeDec, _, err := decompress(r)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	defer closeDec()
	if _, err := io.Copy(f, dec); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("%w: reading archive: %v", ErrBadArchive, err)
	}
	return f, cleanup, nil
}

// archive is an indexed image archive: where each file's bytes are.
type archive struct {
	f     *os.File
	files map[string][2]int64 // name -> offset, size
	links map[string]string   // name -> target name (symlinks and hardlinks)
}

func indexArchive(f *os.File) (*archive, error) {
	a := &archive{f: f, files: map[string][2]int64{}, links: map[string]string{}}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%w: reading archive: %v", ErrBadArchive, err)
		}
		n := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA:
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, err
			}
			a.files[n] = [2]int64{off, hdr.Size}
		case tar.TypeSymlink:
			a.links[n] = path.Clean(path.Join(path.Dir(n), hdr.Linkname))
		case tar.TypeLink:
			a.links[n] = path.Clean(strings.TrimPrefix(hdr.Linkname, "./"))
		}
	}
	// Every file must be complete: a truncated archive fails here, not
	// halfway through a layer.
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	for n, e := range a.files {
		if e[0]+e[1] > fi.Size() {
			return nil, fmt.Errorf("%w: %s is truncated", ErrBadArchive, n)
		}
	}
	return a, nil
}

func (a *archive) resolve(n string) (string, bool) {
	n = path.Clean(strings.TrimPrefix(n, "./"))
	for i := 0; i < 16; i++ {
		if _, ok := a.files[n]; ok {
			return n, true
		}
		t, ok := a.links[n]
		if !ok {
			return "", false
		}
		n = t
	}
	return "", false
}

func (a *archive) has(n string) bool { _, ok := a.resolve(n); return ok }

func (a *archive) section(n string) (*io.SectionReader, error) {
	r, ok := a.resolve(n)
	if !ok {
		return nil, fmt.Errorf("%w: %s is missing from the archive", ErrBadArchive, n)
	}
	e := a.files[r]
	return io.NewSectionReader(a.f, e[0], e[1]), nil
}

const maxMetadataSize = 16 << 20

func (a *archive) read(n string) ([]byte, error) {
	sr, err := a.section(n)
	if err != nil {
		return nil, err
	}
	if sr.Size() > maxMetadataSize {
		return nil, fmt.Errorf("%w: %s is %d bytes, too large for metadata", ErrBadArchive, n, sr.Size())
	}
	return io.ReadAll(sr)
}

func (a *archive) opener(n string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		sr, err := a.section(n)
		if err != nil {
			return nil, err
		}
		return io.NopCloser(sr), nil
	}
}

// dockerSources reads a `docker save` archive's manifest.json.
func (a *archive) dockerSources() ([]*source, [][]string, error) {
	b, err := a.read("manifest.json")
	if err != nil {
		return nil, nil, err
	}
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, nil, fmt.Errorf("%w: manifest.json: %v", ErrBadArchive, err)
	}
	if len(entries) == 0 {
		return nil, nil, fmt.Errorf("%w: manifest.json lists no images", ErrBadArchive)
	}
	var srcs []*source
	var names [][]string
	for _, e := range entries {
		cfg, err := a.read(e.Config)
		if err != nil {
			return nil, nil, err
		}
		src := &source{configRaw: cfg}
		for _, l := range e.Layers {
			if !a.has(l) {
				return nil, nil, fmt.Errorf("%w: layer %s is missing from the archive", ErrBadArchive, l)
			}
			src.layers = append(src.layers, layerSource{size: -1, open: a.opener(l)})
		}
		var ns []string
		for _, t := range e.RepoTags {
			n, err := ParseName(t)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: RepoTags: %v", ErrBadArchive, err)
			}
			ns = append(ns, n)
		}
		srcs = append(srcs, src)
		names = append(names, ns)
	}
	return srcs, names, nil
}

func blobName(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// ociSources reads an OCI image layout's index.json.
func (a *archive) ociSources() ([]*source, [][]string, error) {
	b, err := a.read("index.json")
	if err != nil {
		return nil, nil, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: index.json: %v", ErrBadArchive, err)
	}
	var srcs []*source
	var names [][]string
	for _, d := range idx.Manifests {
		var ns []string
		for _, key := range []string{"io.containerd.image.name", "org.opencontainers.image.ref.name"} {
			if v := d.Annotations[key]; v != "" && strings.ContainsAny(v, ":/") {
				if n, err := ParseName(v); err == nil {
					ns = append(ns, n)
					break
				}
			}
		}
		md, err := a.pickManifest(d, 0)
		if err != nil {
			return nil, nil, err
		}
		src, err := a.ociImage(md)
		if err != nil {
			return nil, nil, err
		}
		srcs = append(srcs, src)
		names = append(names, ns)
	}
	if len(srcs) == 0 {
		return nil, nil, fmt.Errorf("%w: index.json lists no images", ErrBadArchive)
	}
	return srcs, names, nil
}

// verifiedBlob reads a small blob and checks its digest.
func (a *archive) verifiedBlob(d v1.Descriptor) ([]byte, error) {
	b, err := a.read(blobName(d.Digest))
	if err != nil {
		return nil, err
	}
	if got := "sha256:" + sha256Hex(b); got != d.Digest.String() {
		return nil, fmt.Errorf("%w: %s hashes to %s", ErrDigestMismatch, d.Digest, got)
	}
	return b, nil
}

// pickManifest follows an index down to this host's image.
func (a *archive) pickManifest(d v1.Descriptor, depth int) (v1.Descriptor, error) {
	if !d.MediaType.IsIndex() {
		return d, nil
	}
	if depth > 4 {
		return d, fmt.Errorf("%w: indexes nested too deep", ErrBadArchive)
	}
	b, err := a.verifiedBlob(d)
	if err != nil {
		return d, err
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(b))
	if err != nil {
		return d, fmt.Errorf("%w: index %s: %v", ErrBadArchive, d.Digest, err)
	}
	want := v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
	for _, m := range idx.Manifests {
		if m.Platform == nil || m.Platform.Satisfies(want) || (len(idx.Manifests) == 1) {
			if m.Platform != nil && m.Platform.OS == "unknown" {
				continue // attestation manifests
			}
			return a.pickManifest(m, depth+1)
		}
	}
	return d, fmt.Errorf("%w: index %s has no image for linux/%s", ErrBadArchive, d.Digest, runtime.GOARCH)
}

func (a *archive) ociImage(d v1.Descriptor) (*source, error) {
	raw, err := a.verifiedBlob(d)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrBadArchive, d.Digest, err)
	}
	cfg, err := a.verifiedBlob(m.Config)
	if err != nil {
		return nil, err
	}
	src := &source{configRaw: cfg, manifestRaw: raw}
	for _, l := range m.Layers {
		if !a.has(blobName(l.Digest)) {
			return nil, fmt.Errorf("%w: layer %s is missing from the archive", ErrBadArchive, l.Digest)
		}
		src.layers = append(src.layers, layerSource{digest: l.Digest, size: l.Size, mediaType: l.MediaType, open: a.opener(blobName(l.Digest))})
	}
	return src, nil
}

// Save writes the images refs name as a `docker save`-compatible archive
// (layers gzip-compressed, as stored) that Load and `docker load` read.
// An image given by name is saved with that name; one given by ID with
// all of its names.
func (s *Store) Save(ctx context.Context, w io.Writer, refs ...string) error {
	if len(refs) == 0 {
		return fmt.Errorf("image: save: name at least one image")
	}
	idx, err := s.loadIndex()
	if err != nil {
		return err
	}
	imgs := map[string]v1.Image{}
	refToImage := map[name.Reference]v1.Image{}
	for _, ref := range refs {
		rec, matched, err := resolve(idx, ref)
		if err != nil {
			return err
		}
		img := imgs[rec.ID]
		if img == nil {
			if img, err = s.openRecord(rec); err != nil {
				return err
			}
			imgs[rec.ID] = img
		}
		tags := rec.Names
		if matched != "" {
			tags = []string{matched}
		}
		if len(tags) == 0 {
			d, err := name.NewDigest("image@" + rec.Digest)
			if err != nil {
				return err
			}
			refToImage[d] = img
		}
		for _, t := range tags {
			tag, err := name.NewTag(t)
			if err != nil {
				return fmt.Errorf("%w: %v", ErrInvalidName, err)
			}
			refToImage[tag] = img
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := tarball.MultiRefWrite(refToImage, w); err != nil {
		return fmt.Errorf("image: save: %w", err)
	}
	return nil
}

// OpenImage returns a stored image as a go-containerregistry v1.Image
// backed by the store's blobs: the exact config, manifest and compressed
// layers it was stored with. Save and registry push use it.
func (s *Store) OpenImage(ref string) (v1.Image, error) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	rec, _, err := resolve(idx, ref)
	if err != nil {
		return nil, err
	}
	return s.openRecord(rec)
}

func (s *Store) openRecord(rec *imageRecord) (v1.Image, error) {
	cfg, err := os.ReadFile(s.blobPath(rec.ID))
	if err != nil {
		return nil, fmt.Errorf("image %s: config blob: %w", rec.ID, err)
	}
	man, err := os.ReadFile(s.blobPath(rec.Digest))
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest blob: %w", rec.ID, err)
	}
	core := &storedImage{s: s, rec: rec, cfg: cfg, man: man}
	return partial.CompressedToImage(core)
}

// storedImage is the partial.CompressedImageCore of a stored image.
type storedImage struct {
	s   *Store
	rec *imageRecord
	cfg []byte
	man []byte
}

func (si *storedImage) RawConfigFile() ([]byte, error) { return si.cfg, nil }
func (si *storedImage) RawManifest() ([]byte, error)   { return si.man, nil }
func (si *storedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(si.rec.ManifestMediaType), nil
}

func (si *storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for i, b := range si.rec.Blobs {
		if b.Digest == h.String() {
			diffID, _ := v1.NewHash(si.rec.Layers[i])
			return &storedLayer{path: si.s.blobPath(b.Digest), blob: b, digest: h, diffID: diffID}, nil
		}
	}
	return nil, fmt.Errorf("%w: image %s has no layer %s", ErrNotFound, si.rec.ID, h)
}

type storedLayer struct {
	path           string
	blob           blobRef
	digest, diffID v1.Hash
}

func (l *storedLayer) Digest() (v1.Hash, error) { return l.digest, nil }
func (l *storedLayer) DiffID() (v1.Hash, error) { return l.diffID, nil }
func (l *storedLayer) Size() (int64, error)     { return l.blob.Size, nil }
func (l *storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.blob.MediaType), nil
}
func (l *storedLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: layer blob %s is missing from the store", ErrNotFound, l.digest)
	}
	return f, err
}
