package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// ProgressEvent reports the state of one layer during Add, Import or Load.
type ProgressEvent struct {
	// Layer is the layer's blob digest, or its diffID when the digest is
	// not known yet.
	Layer string
	// Status is one of "Already exists", "Downloading" (bytes are being
	// read and unpacked), "Done".
	Status string
	// Current and Total are bytes of the blob; Total is -1 when unknown.
	Current, Total int64
}

// Progress receives progress events. It may be called from several
// goroutines at once (layers are processed in parallel) and must not
// block for long.
type Progress func(ProgressEvent)

type progressKey struct{}

// WithProgress returns a context that makes Add, Import and Load report
// each layer's progress to fn.
func WithProgress(ctx context.Context, fn Progress) context.Context {
	return context.WithValue(ctx, progressKey{}, fn)
}

func progressFrom(ctx context.Context) Progress {
	if fn, ok := ctx.Value(progressKey{}).(Progress); ok && fn != nil {
		return fn
	}
	return func(ProgressEvent) {}
}

// layerSource is one layer to store.
type layerSource struct {
	diffID    v1.Hash // from the config
	digest    v1.Hash // the blob's digest; zero when not known in advance
	size      int64   // the blob's size; -1 when unknown
	mediaType types.MediaType
	// open returns the blob: compressed (gzip, zstd) or a plain tar.
	open func() (io.ReadCloser, error)
	// verified says open's reader itself fails at the end of a blob that
	// does not hash to digest (a registry client's does), so the store
	// need not hash it again.
	verified bool
}

// source is an image to store, however it arrived.
type source struct {
	configRaw []byte
	// manifestRaw is the image's own manifest; nil makes the store write
	// one (and gzip plain layers) for an archive that carries none.
	manifestRaw []byte
	layers      []layerSource
	// pins holds what this Add pinned on the way (blob digests learnt
	// while streaming) until it is committed.
	pins pinList
}

// pinList collects unpin functions to run when an Add ends.
type pinList struct {
	mu     sync.Mutex
	unpins []func()
}

func (p *pinList) add(unpin func()) {
	p.mu.Lock()
	p.unpins = append(p.unpins, unpin)
	p.mu.Unlock()
}

func (p *pinList) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, u := range p.unpins {
		u()
	}
	p.unpins = nil
}

// layerResult is a stored layer.
type layerResult struct {
	blob         blobRef
	unpackedSize int64
}

// unpackCount counts layer unpacks since the process started (tests
// check that shared and cached layers are unpacked once).
var unpackCount atomic.Int64

// maxParallelLayers bounds how many layers of one image are fetched and
// unpacked at once.
const maxParallelLayers = 3

// Add stores img under the given names (validated with ParseName; an
// image may have none). Layers already in the store are not unpacked or
// read again; missing ones are streamed once from img, verified against
// their digests and unpacked. Adding an image that is already stored only
// adds the names. A name another image had moves to this one.
func (s *Store) Add(ctx context.Context, img v1.Image, names ...string) (*Image, error) {
	src, err := sourceFromImage(img)
	if err != nil {
		return nil, err
	}
	return s.addSource(ctx, src, names)
}

func sourceFromImage(img v1.Image) (*source, error) {
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("%w: image media type: %v", ErrBadArchive, err)
	}
	if mt.IsIndex() {
		return nil, fmt.Errorf("%w: %s is an index; pick one platform's image from it", ErrBadArchive, mt)
	}
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrBadArchive, err)
	}
	manRaw, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("%w: image manifest: %v", ErrBadArchive, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(manRaw))
	if err != nil {
		return nil, fmt.Errorf("%w: image manifest: %v", ErrBadArchive, err)
	}
	src := &source{configRaw: cfgRaw, manifestRaw: manRaw}
	vi, ok := img.(verifyingImage)
	verified := ok && vi.verifiesLayers()
	for _, d := range m.Layers {
		if !d.MediaType.IsDistributable() {
			return nil, fmt.Errorf("%w: foreign layer %s (%s) cannot be stored", ErrBadArchive, d.Digest, d.MediaType)
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, fmt.Errorf("%w: layer %s: %v", ErrBadArchive, d.Digest, err)
		}
		src.layers = append(src.layers, layerSource{digest: d.Digest, size: d.Size, mediaType: d.MediaType, open: l.Compressed, verified: verified})
	}
	return src, nil
}

// verifyingImage is an image whose compressed layer readers check the
// blob's digest and size themselves and fail at the end of a bad blob.
type verifyingImage interface {
	verifiesLayers() bool
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Store) addSource(ctx context.Context, src *source, in []string) (*Image, error) {
	names := make([]string, 0, len(in))
	for _, n := range in {
		fam, err := ParseName(n)
		if err != nil {
			return nil, err
		}
		names = append(names, fam)
	}
	id := "sha256:" + sha256Hex(src.configRaw)
	cfg, err := v1.ParseConfigFile(bytes.NewReader(src.configRaw))
	if err != nil {
		return nil, fmt.Errorf("%w: image config %s: %v", ErrBadArchive, id, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(src.layers) {
		return nil, fmt.Errorf("%w: image %s: config lists %d layers, manifest %d", ErrBadArchive, id, len(cfg.RootFS.DiffIDs), len(src.layers))
	}
	for i := range src.layers {
		src.layers[i].diffID = cfg.RootFS.DiffIDs[i]
	}
	var manifestDigest string
	if src.manifestRaw != nil {
		m, err := v1.ParseManifest(bytes.NewReader(src.manifestRaw))
		if err != nil {
			return nil, fmt.Errorf("%w: manifest: %v", ErrBadArchive, err)
		}
		if m.Config.Digest.String() != id {
			return nil, fmt.Errorf("%w: config hashes to %s, manifest says %s", ErrDigestMismatch, id, m.Config.Digest)
		}
		manifestDigest = "sha256:" + sha256Hex(src.manifestRaw)
	}

	keys := []string{id}
	if manifestDigest != "" {
		keys = append(keys, manifestDigest)
	}
	for _, l := range src.layers {
		keys = append(keys, l.diffID.String())
		if l.digest.Hex != "" {
			keys = append(keys, l.digest.String())
		}
	}
	src.pins.add(s.pin(keys...))
	defer src.pins.release()

	results := make([]layerResult, len(src.layers))
	if err := s.storeLayers(ctx, src, results); err != nil {
		return nil, err
	}

	if err := s.putBlob(id, src.configRaw); err != nil {
		return nil, err
	}
	manRaw := src.manifestRaw
	manifestMediaType := ""
	if manRaw == nil {
		var err error
		manRaw, manifestMediaType, err = buildManifest(src.configRaw, id, results)
		if err != nil {
			return nil, err
		}
		manifestDigest = "sha256:" + sha256Hex(manRaw)
		src.pins.add(s.pin(manifestDigest))
	} else {
		m, _ := v1.ParseManifest(bytes.NewReader(manRaw))
		manifestMediaType = string(m.MediaType)
		if manifestMediaType == "" {
			manifestMediaType = string(types.OCIManifestSchema1)
		}
	}
	if err := s.putBlob(manifestDigest, manRaw); err != nil {
		return nil, err
	}

	rec := &imageRecord{
		Image:             imageFromConfig(cfg, id, manifestDigest, results),
		ManifestMediaType: manifestMediaType,
		Added:             time.Now().UTC(),
	}
	for _, r := range results {
		rec.Blobs = append(rec.Blobs, r.blob)
	}
	return s.commit(rec, names, results)
}

// commit records rec in the index under names.
func (s *Store) commit(rec *imageRecord, names []string, results []layerResult) (*Image, error) {
	var out *Image
	var replaced *imageRecord
	err := s.withIndex(func(idx *indexFile) (bool, error) {
		if old := idx.Images[rec.ID]; old != nil {
			if old.Digest == rec.Digest && !slices.ContainsFunc(names, func(n string) bool { return !slices.Contains(old.Names, n) }) {
				// Already stored with these names: nothing to write.
				out = old.public()
				return false, nil
			}
			rec.Names = old.Names
			if old.Digest != rec.Digest {
				replaced = old
			}
		}
		idx.Images[rec.ID] = rec
		for _, n := range names {
			setName(idx, rec, n)
		}
		for i, l := range rec.Layers {
			if _, ok := idx.Layers[l]; !ok {
				idx.Layers[l] = layerRecord{Size: results[i].unpackedSize, Blob: results[i].blob}
			}
		}
		out = rec.public()
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if replaced != nil {
		// Only the old manifest (and blobs it alone named) can be unused.
		s.collect(&imageRecord{Image: Image{Digest: replaced.Digest}, Blobs: replaced.Blobs})
	}
	return out, nil
}

// storeLayers makes sure every layer of src is stored and unpacked,
// several at a time, stopping at the first error.
func (s *Store) storeLayers(ctx context.Context, src *source, results []layerResult) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		sem      = make(chan struct{}, maxParallelLayers)
		errOnce  sync.Once
		firstErr error
	)
	for i := range src.layers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			r, err := s.ensureLayer(ctx, src, i)
			if err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
				return
			}
			results[i] = r
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// ensureLayer stores layer i of src unless it is already there.
func (s *Store) ensureLayer(ctx context.Context, src *source, i int) (layerResult, error) {
	ls := src.layers[i]
	diffID := ls.diffID.String()
	progress := progressFrom(ctx)
	unlock := s.lockLayer(diffID)
	defer unlock()

	dirOK := exists(s.layerPath(diffID))
	idx, err := s.loadIndex()
	if err != nil {
		return layerResult{}, err
	}
	rec, recorded := idx.Layers[diffID]
	if dirOK && recorded {
		if ls.digest.Hex != "" {
			if fi, err := os.Stat(s.blobPath(ls.digest.String())); err == nil {
				progress(ProgressEvent{Layer: ls.digest.String(), Status: "Already exists", Current: fi.Size(), Total: fi.Size()})
				return layerResult{blob: blobRef{Digest: ls.digest.String(), Size: fi.Size(), MediaType: string(ls.mediaType)}, unpackedSize: rec.Size}, nil
			}
		} else if b, ok := s.knownBlob(idx, diffID); ok {
			// An archive without a manifest: reuse the blob some image
			// already has for this diffID. Pin it, then make sure a
			// Remove did not take it in between.
			src.pins.add(s.pin(b.Digest))
			if exists(s.blobPath(b.Digest)) {
				progress(ProgressEvent{Layer: b.Digest, Status: "Already exists", Current: b.Size, Total: b.Size})
				return layerResult{blob: b, unpackedSize: rec.Size}, nil
			}
		}
	}
	res, err := s.streamLayer(ctx, ls, &src.pins, src.manifestRaw == nil, !dirOK)
	if err != nil {
		return res, err
	}
	// Record the layer now, not when the image is committed, so that a
	// concurrent Add waiting on this layer's lock finds it complete and
	// reads nothing again.
	err = s.withIndex(func(idx *indexFile) (bool, error) {
		if _, ok := idx.Layers[diffID]; ok {
			return false, nil
		}
		idx.Layers[diffID] = layerRecord{Size: res.unpackedSize, Blob: res.blob}
		return true, nil
	})
	return res, err
}

// knownBlob finds a stored blob that holds diffID.
func (s *Store) knownBlob(idx *indexFile, diffID string) (blobRef, bool) {
	if b := idx.Layers[diffID].Blob; b.Digest != "" && exists(s.blobPath(b.Digest)) {
		return b, true
	}
	ids := make([]string, 0, len(idx.Images))
	for id := range idx.Images {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		rec := idx.Images[id]
		for j, l := range rec.Layers {
			if l == diffID && j < len(rec.Blobs) && exists(s.blobPath(rec.Blobs[j].Digest)) {
				return rec.Blobs[j], true
			}
		}
	}
	return blobRef{}, false
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h hash.Hash
	n int64
}

func newHashCounter() *hashCounter { return &hashCounter{h: sha256.New()} }

// newCounter counts without hashing.
func newCounter() *hashCounter { return &hashCounter{} }

func (c *hashCounter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if c.h == nil {
		return len(p), nil
	}
	return c.h.Write(p)
}

func (c *hashCounter) digest() string { return "sha256:" + hex.EncodeToString(c.h.Sum(nil)) }

// progressReader reports bytes read, at most every 256 KiB.
type progressReader struct {
	r           io.Reader
	fn          Progress
	layer       string
	total, n    int64
	lastReport  int64
	reportEvery int64
	status      string // "Downloading" when empty
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.n += int64(n)
	if p.n-p.lastReport >= p.reportEvery {
		p.lastReport = p.n
		status := p.status
		if status == "" {
			status = "Downloading"
		}
		p.fn(ProgressEvent{Layer: p.layer, Status: status, Current: p.n, Total: p.total})
	}
	return n, err
}

// streamLayer reads layer ls once: the blob is written to a temporary
// file (gzip-compressed first when it is a plain tar and gzipPlain is
// set) while it is hashed, and the tar is hashed and, when unpack is set,
// unpacked into a temporary directory. Both are renamed into place only
// when the digests match.
func (s *Store) streamLayer(ctx context.Context, ls layerSource, pins *pinList, gzipPlain, unpack bool) (res layerResult, err error) {
	diffID := ls.diffID.String()
	label := ls.digest.String()
	if ls.digest.Hex == "" {
		label = diffID
	}
	progress := progressFrom(ctx)
	rc, err := ls.open()
	if err != nil {
		return res, fmt.Errorf("%w: open layer %s: %v", ErrBadArchive, label, err)
	}
	defer rc.Close()

	blobTmp := s.tmpPath("blob")
	dirTmp := s.tmpPath("layer")
	defer func() {
		if err != nil {
			os.Remove(blobTmp)
			os.RemoveAll(dirTmp)
		}
	}()
	bf, err := os.OpenFile(blobTmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return res, fmt.Errorf("image: layer %s: %w", label, err)
	}
	defer bf.Close()
	bufW := bufio.NewWriterSize(bf, 256<<10)

	total := ls.size
	if total <= 0 {
		total = -1
	}
	pr := &progressReader{r: rc, fn: progress, layer: label, total: total, reportEvery: 512 << 10}
	br := bufio.NewReaderSize(pr, 256<<10)
	magic, _ := br.Peek(4)
	plain := !bytes.HasPrefix(magic, gzipMagic) && !bytes.HasPrefix(magic, zstdMagic)

	blobHash := newHashCounter()
	if ls.verified && ls.digest.Hex != "" && !(plain && gzipPlain) {
		// The reader checks the digest at the end of the blob, and the
		// blob is stored as read: count, don't hash again.
		blobHash = newCounter()
	}
	blobW := io.MultiWriter(bufW, blobHash)
	diffHash := newHashCounter()
	var raw io.Reader = br
	var gzw *gzip.Writer
	mediaType := ls.mediaType
	if plain && gzipPlain {
		// The archive's plain tar becomes a gzip blob, compressed as it
		// is unpacked.
		gzw, _ = gzip.NewWriterLevel(blobW, gzip.BestSpeed)
		mediaType = types.DockerLayer
	} else {
		raw = io.TeeReader(br, blobW)
		if mediaType == "" {
			switch {
			case bytes.HasPrefix(magic, zstdMagic):
				mediaType = types.OCILayerZStd
			case plain:
				mediaType = types.OCIUncompressedLayer
			default:
				mediaType = types.DockerLayer
			}
		}
	}
	tarStream, closeDec, _, err := decompress(raw)
	if err != nil {
		return res, fmt.Errorf("layer %s: %w", label, err)
	}
	defer closeDec()
	var tarSinks io.Writer = diffHash
	var gzAsync *asyncWriter
	if gzw != nil {
		// Compress on another goroutine, beside the unpacking.
		gzAsync = newAsyncWriter(gzw)
		defer gzAsync.Close()
		tarSinks = io.MultiWriter(diffHash, gzAsync)
	}
	tarR := io.TeeReader(tarStream, tarSinks)

	if unpack {
		unpackCount.Add(1)
		if err := os.Mkdir(dirTmp, 0o755); err != nil {
			return res, fmt.Errorf("image: layer %s: %w", label, err)
		}
		if _, err := extract(ctx, tarR, dirTmp); err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			return res, fmt.Errorf("layer %s: %w", label, err)
		}
	}
	// Drain: tar padding and, for compressed blobs, the gzip trailer, so
	// both hashes cover every byte.
	if _, err := io.Copy(io.Discard, tarR); err != nil {
		return res, fmt.Errorf("%w: layer %s: %v", ErrBadArchive, label, err)
	}
	closeDec()
	if _, err := io.Copy(io.Discard, raw); err != nil {
		return res, fmt.Errorf("%w: layer %s: %v", ErrBadArchive, label, err)
	}
	if gzw != nil {
		if err := gzAsync.Close(); err != nil {
			return res, fmt.Errorf("image: compress layer %s: %w", label, err)
		}
		if err := gzw.Close(); err != nil {
			return res, fmt.Errorf("image: compress layer %s: %w", label, err)
		}
	}
	if got := diffHash.digest(); got != diffID {
		return res, fmt.Errorf("%w: layer %s unpacks to %s, the config says %s", ErrDigestMismatch, label, got, diffID)
	}
	digest := ls.digest.String()
	if blobHash.h != nil {
		digest = blobHash.digest()
	}
	if ls.digest.Hex != "" && digest != ls.digest.String() {
		return res, fmt.Errorf("%w: layer blob hashes to %s, the manifest says %s", ErrDigestMismatch, digest, ls.digest)
	}
	if ls.size > 0 && blobHash.n != ls.size {
		return res, fmt.Errorf("%w: layer %s is %d bytes, the manifest says %d", ErrDigestMismatch, label, blobHash.n, ls.size)
	}
	if err := bufW.Flush(); err != nil {
		return res, fmt.Errorf("image: layer %s: %w", label, err)
	}
	if err := bf.Close(); err != nil {
		return res, fmt.Errorf("image: layer %s: %w", label, err)
	}

	// Pin the blob digest (it may be new to the caller) before it lands,
	// until the image is committed.
	pins.add(s.pin(digest))
	if err := s.installBlob(blobTmp, digest); err != nil {
		return res, err
	}
	if unpack {
		if err := s.installLayer(dirTmp, diffID); err != nil {
			return res, err
		}
	}
	progress(ProgressEvent{Layer: label, Status: "Done", Current: blobHash.n, Total: blobHash.n})
	return layerResult{blob: blobRef{Digest: digest, Size: blobHash.n, MediaType: string(mediaType)}, unpackedSize: diffHash.n}, nil
}

// installBlob renames a verified temporary blob into place.
func (s *Store) installBlob(tmp, digest string) error {
	dst := s.blobPath(digest)
	if exists(dst) {
		os.Remove(tmp)
		return nil
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("image: store blob %s: %w", digest, err)
	}
	return nil
}

// installLayer renames a fully unpacked temporary directory into place;
// if another process got there first, ours is dropped.
func (s *Store) installLayer(tmp, diffID string) error {
	dst := s.layerPath(diffID)
	if err := os.Rename(tmp, dst); err != nil {
		if exists(dst) {
			return os.RemoveAll(tmp)
		}
		return fmt.Errorf("image: store layer %s: %w", diffID, err)
	}
	return nil
}

// putBlob stores small content (a config or a manifest) under digest.
func (s *Store) putBlob(digest string, b []byte) error {
	if "sha256:"+sha256Hex(b) != digest {
		return fmt.Errorf("%w: blob %s", ErrDigestMismatch, digest)
	}
	dst := s.blobPath(digest)
	if exists(dst) {
		return nil
	}
	if err := s.writeFileAtomic(dst, b); err != nil {
		return fmt.Errorf("image: store blob %s: %w", digest, err)
	}
	return nil
}

// buildManifest writes a manifest for layers that came without one: Docker
// schema 2 for gzip layers, OCI when a layer is zstd.
func buildManifest(cfgRaw []byte, id string, results []layerResult) ([]byte, string, error) {
	oci := false
	for _, r := range results {
		if !strings.HasPrefix(r.blob.MediaType, "application/vnd.docker.") {
			oci = true
		}
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.DockerManifestSchema2}
	cfgMT := types.DockerConfigJSON
	if oci {
		m.MediaType, cfgMT = types.OCIManifestSchema1, types.OCIConfigJSON
	}
	h, err := v1.NewHash(id)
	if err != nil {
		return nil, "", err
	}
	m.Config = v1.Descriptor{MediaType: cfgMT, Size: int64(len(cfgRaw)), Digest: h}
	for _, r := range results {
		d, err := v1.NewHash(r.blob.Digest)
		if err != nil {
			return nil, "", err
		}
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.MediaType(r.blob.MediaType), Size: r.blob.Size, Digest: d})
	}
	b, err := json.Marshal(m)
	return b, string(m.MediaType), err
}

// imageFromConfig fills the public view of an image from its config.
func imageFromConfig(cfg *v1.ConfigFile, id, digest string, results []layerResult) Image {
	img := Image{
		ID:           id,
		Digest:       digest,
		Created:      cfg.Created.Time.UTC(),
		OS:           cfg.OS,
		Architecture: cfg.Architecture,
		Config: Config{
			Entrypoint: cfg.Config.Entrypoint,
			Cmd:        cfg.Config.Cmd,
			Env:        cfg.Config.Env,
			WorkingDir: cfg.Config.WorkingDir,
			User:       cfg.Config.User,
			StopSignal: cfg.Config.StopSignal,
			Labels:     cfg.Config.Labels,
		},
	}
	for p := range cfg.Config.ExposedPorts {
		img.Config.ExposedPorts = append(img.Config.ExposedPorts, p)
	}
	sort.Strings(img.Config.ExposedPorts)
	for v := range cfg.Config.Volumes {
		img.Config.Volumes = append(img.Config.Volumes, v)
	}
	sort.Strings(img.Config.Volumes)
	for i, d := range cfg.RootFS.DiffIDs {
		img.Layers = append(img.Layers, d.String())
		img.Size += results[i].unpackedSize
	}
	li := 0
	for _, h := range cfg.History {
		e := History{Created: h.Created.Time.UTC(), CreatedBy: h.CreatedBy, Comment: h.Comment, EmptyLayer: h.EmptyLayer}
		if !h.EmptyLayer && li < len(results) {
			e.Size = results[li].unpackedSize
			li++
		}
		img.History = append(img.History, e)
	}
	img.Names = slices.Clone(img.Names)
	return img
}

// asyncWriter hands copies of what is written to w on its own goroutine,
// so that a slow writer (a compressor) runs beside the producer.
type asyncWriter struct {
	ch     chan []byte
	done   chan struct{}
	err    error
	closed bool
}

func newAsyncWriter(w io.Writer) *asyncWriter {
	a := &asyncWriter{ch: make(chan []byte, 16), done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for b := range a.ch {
			if a.err == nil {
				_, a.err = w.Write(b)
			}
		}
	}()
	return a
}

func (a *asyncWriter) Write(p []byte) (int, error) {
	a.ch <- bytes.Clone(p)
	return len(p), nil
}

// Close waits for everything written to reach w and returns its error.
// It may be called more than once.
func (a *asyncWriter) Close() error {
	if !a.closed {
		a.closed = true
		close(a.ch)
	}
	<-a.done
	return a.err
}
