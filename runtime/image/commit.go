package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// This file is the store's side of Dockerfile builds (package
// runtime/build): layers made from a tar stream, images committed from a
// config whose layers are already stored, and the build cache, which maps
// a step's cache key to the image that step made.

// LayerInfo describes a stored layer.
type LayerInfo struct {
	// DiffID is the digest of the uncompressed layer tar.
	DiffID string
	// Size is the uncompressed tar's size in bytes.
	Size int64
}

// AddLayer stores the uncompressed layer tar read from r: it is unpacked
// once (as Add unpacks a pulled layer, whiteouts included) and kept as a
// gzip blob for push and save. A layer already stored is not unpacked
// again. The layer belongs to no image until Commit names it in a config.
func (s *Store) AddLayer(ctx context.Context, r io.Reader) (LayerInfo, error) {
	// Spool and hash first: the store verifies a layer against a diffID
	// known in advance, and unpacks only what it has not got.
	tmp := s.tmpPath("addlayer")
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return LayerInfo{}, fmt.Errorf("image: add layer: %w", err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), r)
	if err != nil {
		return LayerInfo{}, fmt.Errorf("image: add layer: read: %w", err)
	}
	diffID := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	src := &source{layers: []layerSource{{
		diffID: diffID,
		size:   -1,
		open: func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(f, 0, n)), nil
		},
	}}}
	defer src.pins.release()
	src.pins.add(s.pin(diffID.String()))
	res, err := s.ensureLayer(ctx, src, 0)
	if err != nil {
		return LayerInfo{}, err
	}
	return LayerInfo{DiffID: diffID.String(), Size: res.unpackedSize}, nil
}

// CommitOptions configure Commit.
type CommitOptions struct {
	// Names are given to the image (validated with ParseName).
	Names []string
	// CacheKey, when set, records the image as the build cache's result
	// for that key (see CacheGet). An image that only the cache refers to
	// is hidden from List and kept by Prune; PruneBuildCache removes it.
	CacheKey string
}

// Commit stores an image made of layers already in the store (AddLayer,
// or any stored image's) from its raw config, whose rootfs lists the
// layers' diffIDs. The store writes the image's manifest. Committing an
// image that is already stored only adds names and the cache key.
func (s *Store) Commit(ctx context.Context, configRaw []byte, opts CommitOptions) (*Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(opts.Names))
	for _, n := range opts.Names {
		fam, err := ParseName(n)
		if err != nil {
			return nil, err
		}
		names = append(names, fam)
	}
	id := "sha256:" + sha256Hex(configRaw)
	cfg, err := v1.ParseConfigFile(bytes.NewReader(configRaw))
	if err != nil {
		return nil, fmt.Errorf("%w: image config: %v", ErrBadArchive, err)
	}
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	results := make([]layerResult, len(cfg.RootFS.DiffIDs))
	for i, d := range cfg.RootFS.DiffIDs {
		l := d.String()
		rec, ok := idx.Layers[l]
		if !ok || !exists(s.layerPath(l)) {
			return nil, fmt.Errorf("%w: layer %s of the new image is not stored", ErrNotFound, l)
		}
		b, ok := s.knownBlob(idx, l)
		if !ok {
			return nil, fmt.Errorf("%w: layer %s has no stored blob", ErrNotFound, l)
		}
		results[i] = layerResult{blob: b, unpackedSize: rec.Size}
	}
	manRaw, manMT, err := buildManifest(configRaw, id, results)
	if err != nil {
		return nil, err
	}
	digest := "sha256:" + sha256Hex(manRaw)
	if err := s.putBlob(id, configRaw); err != nil {
		return nil, err
	}
	if err := s.putBlob(digest, manRaw); err != nil {
		return nil, err
	}
	rec := &imageRecord{
		Image:             imageFromConfig(cfg, id, digest, results),
		ManifestMediaType: manMT,
		Added:             time.Now().UTC(),
	}
	for _, r := range results {
		rec.Blobs = append(rec.Blobs, r.blob)
	}
	var out *Image
	err = s.withIndex(func(idx *indexFile) (bool, error) {
		for _, l := range rec.Layers {
			if _, ok := idx.Layers[l]; !ok {
				// Removed since we looked: the layer's directory may be
				// gone too.
				return false, fmt.Errorf("%w: layer %s of the new image was removed meanwhile; build again", ErrNotFound, l)
			}
		}
		if old := idx.Images[id]; old != nil {
			rec = old
		} else {
			idx.Images[id] = rec
		}
		for _, n := range names {
			setName(idx, rec, n)
		}
		if opts.CacheKey != "" {
			if idx.BuildCache == nil {
				idx.BuildCache = map[string]string{}
			}
			idx.BuildCache[opts.CacheKey] = id
		}
		out = rec.public()
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CacheGet returns the image the build cache recorded for key, if it is
// still stored with all of its layers.
func (s *Store) CacheGet(key string) (*Image, bool) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, false
	}
	id, ok := idx.BuildCache[key]
	if !ok {
		return nil, false
	}
	rec := idx.Images[id]
	if rec == nil {
		return nil, false
	}
	for _, l := range rec.Layers {
		if !exists(s.layerPath(l)) {
			return nil, false
		}
	}
	return rec.public(), true
}

// ConfigFile returns the full config of the image ref names (everything
// Docker keeps in it, Healthcheck and Shell included), as stored.
func (s *Store) ConfigFile(ref string) (*v1.ConfigFile, error) {
	img, err := s.Get(ref)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(s.blobPath(img.ID))
	if err != nil {
		return nil, fmt.Errorf("image %s: config blob: %w", img.ID, err)
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: image %s config: %v", ErrBadArchive, img.ID, err)
	}
	return cfg, nil
}

// MarkBuilt makes the image ref names an ordinary image even without a
// name: a build's result, which List shows and Prune removes as dangling.
func (s *Store) MarkBuilt(ref string) error {
	return s.withIndex(func(idx *indexFile) (bool, error) {
		rec, _, err := resolve(idx, ref)
		if err != nil {
			return false, err
		}
		if rec.Built {
			return false, nil
		}
		rec.Built = true
		return true, nil
	})
}

// cacheOnly lists the images that only the build cache refers to: no
// name, but a cache key, and not a build's result.
func cacheOnly(idx *indexFile) map[string]bool {
	out := map[string]bool{}
	for _, id := range idx.BuildCache {
		if rec := idx.Images[id]; rec != nil && len(rec.Names) == 0 && !rec.Built {
			out[id] = true
		}
	}
	return out
}

// BuildCacheReport says what PruneBuildCache removed.
type BuildCacheReport struct {
	// Entries is how many cache keys were dropped.
	Entries int
	// Images are the IDs of the cache-only images removed.
	Images []string
	// SpaceReclaimed is the bytes of layers and blobs deleted.
	SpaceReclaimed int64
}

// PruneBuildCache forgets every build cache entry and removes the images
// only the cache referred to, except those inUse reports (nil: none).
// Layers that a named image shares stay.
func (s *Store) PruneBuildCache(inUse func(id string) bool) (*BuildCacheReport, error) {
	rep := &BuildCacheReport{}
	var victims []string
	var before *indexFile
	err := s.withIndex(func(idx *indexFile) (bool, error) {
		before = &indexFile{Layers: idx.Layers, Images: map[string]*imageRecord{}}
		for id := range cacheOnly(idx) {
			if inUse != nil && inUse(id) {
				continue
			}
			victims = append(victims, id)
			before.Images[id] = idx.Images[id]
		}
		rep.Entries = len(idx.BuildCache)
		idx.BuildCache = nil
		return rep.Entries > 0, nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(victims)
	for _, id := range victims {
		if _, err := s.Remove(id); err == nil {
			rep.Images = append(rep.Images, id)
		}
	}
	if len(rep.Images) == 0 {
		return rep, nil
	}
	after, err := s.loadIndex()
	if err != nil {
		return rep, err
	}
	layers := usedLayers(after)
	seen := map[string]bool{}
	for _, id := range rep.Images {
		for _, l := range before.Images[id].Layers {
			if !layers[l] && !seen[l] && !exists(s.layerPath(l)) {
				seen[l] = true
				rep.SpaceReclaimed += before.Layers[l].Size
			}
		}
	}
	return rep, nil
}
