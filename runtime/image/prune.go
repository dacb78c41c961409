package image

import (
	"errors"
	"os"
	"time"
)

// orphanAge is how long a layer no image uses must have been stored
// before Prune deletes it. Layers of a pull that failed are kept (a
// re-run reuses them) and so are those of an Add in another process that
// has not committed its image yet.
var orphanAge = time.Hour

// PruneReport says what Prune removed.
type PruneReport struct {
	// Images are the IDs of the removed images.
	Images []string
	// SpaceReclaimed is the bytes of layer trees (their uncompressed
	// size) and blobs that no image uses any more and were deleted.
	SpaceReclaimed int64
}

// Prune removes dangling images (no name), or with all every image,
// except those whose ID inUse reports (nil: none is in use) and the build
// cache's step images (PruneBuildCache removes those). Layers and
// blobs that a kept image shares stay.
func (s *Store) Prune(all bool, inUse func(id string) bool) (*PruneReport, error) {
	before, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	rep := &PruneReport{}
	cached := cacheOnly(before)
	for id, rec := range before.Images {
		if (inUse != nil && inUse(id)) || (!all && len(rec.Names) > 0) || cached[id] {
			continue
		}
		if _, err := s.Remove(id); err == nil {
			rep.Images = append(rep.Images, id)
		}
	}
	freed, err := s.sweepOrphans()
	rep.SpaceReclaimed += freed
	if err != nil || len(rep.Images) == 0 {
		return rep, err
	}
	after, err := s.loadIndex()
	if err != nil {
		return rep, err
	}
	layers, blobs := usedLayers(after), usedBlobs(after)
	seen := map[string]bool{}
	for _, id := range rep.Images {
		rec := before.Images[id]
		for _, l := range rec.Layers {
			if !layers[l] && !seen[l] && !exists(s.layerPath(l)) {
				seen[l] = true
				rep.SpaceReclaimed += before.Layers[l].Size
			}
		}
		for _, d := range append([]string{rec.ID, rec.Digest}, blobDigests(rec)...) {
			if d == "" || blobs[d] || seen[d] {
				continue
			}
			seen[d] = true
			if exists(s.blobPath(d)) {
				continue // still there: pinned by an Add in flight
			}
			rep.SpaceReclaimed += blobSize(rec, d)
		}
	}
	return rep, nil
}

func blobDigests(rec *imageRecord) []string {
	out := make([]string, 0, len(rec.Blobs))
	for _, b := range rec.Blobs {
		out = append(out, b.Digest)
	}
	return out
}

func blobSize(rec *imageRecord, d string) int64 {
	for _, b := range rec.Blobs {
		if b.Digest == d {
			return b.Size
		}
	}
	return 0 // config and manifest: small, and their sizes are not recorded
}

// sweepOrphans deletes layers that no image uses, that no Add in this
// process relies on, and that are older than orphanAge: what failed or
// abandoned pulls left. It returns the bytes freed.
func (s *Store) sweepOrphans() (int64, error) {
	var gone []string
	var freed int64
	var blobs []blobRef
	err := s.withIndex(func(idx *indexFile) (bool, error) {
		used, usedB := usedLayers(idx), usedBlobs(idx)
		for l, rec := range idx.Layers {
			if used[l] || s.pins[l] > 0 {
				continue
			}
			ct, err := changeTime(s.layerPath(l))
			if err == nil && time.Since(ct) < orphanAge {
				continue
			}
			delete(idx.Layers, l)
			gone = append(gone, l)
			if err == nil {
				freed += rec.Size
			}
			if b := rec.Blob; b.Digest != "" && !usedB[b.Digest] && s.pins[b.Digest] == 0 {
				blobs = append(blobs, b)
			}
		}
		return len(gone) > 0, nil
	})
	if err != nil {
		return 0, err
	}
	for _, l := range gone {
		s.removeLayerDir(l)
	}
	for _, b := range blobs {
		if err := os.Remove(s.blobPath(b.Digest)); err == nil {
			freed += b.Size
		} else if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing blob", "blob", b.Digest, "err", err)
		}
	}
	return freed, nil
}
