package image

// PruneReport says what Prune removed.
type PruneReport struct {
	// Images are the IDs of the removed images.
	Images []string
	// SpaceReclaimed is the bytes of layer trees (their uncompressed
	// size) and blobs that no image uses any more and were deleted.
	SpaceReclaimed int64
}

// Prune removes dangling images (no name), or with all every image,
// except those whose ID inUse reports (nil: none is in use). Layers and
// blobs that a kept image shares stay.
func (s *Store) Prune(all bool, inUse func(id string) bool) (*PruneReport, error) {
	before, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	rep := &PruneReport{}
	for id, rec := range before.Images {
		if (inUse != nil && inUse(id)) || (!all && len(rec.Names) > 0) {
			continue
		}
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
