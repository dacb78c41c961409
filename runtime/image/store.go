package image

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Image is one image in the store.
type Image struct {
	// ID is the digest of the image's config ("sha256:…"), as in Docker.
	ID string `json:"id"`
	// Names are the image's names in familiar form ("busybox:latest"),
	// sorted; empty for a dangling image.
	Names []string `json:"names"`
	// Digest is the digest of the image's manifest.
	Digest string `json:"digest"`
	// Layers are the layers' diffIDs (digests of the uncompressed tars),
	// lowest first.
	Layers []string `json:"layers"`
	// Size is the sum of the layers' uncompressed sizes in bytes.
	Size         int64     `json:"size"`
	Created      time.Time `json:"created"`
	OS           string    `json:"os,omitempty"`
	Architecture string    `json:"architecture,omitempty"`
	Config       Config    `json:"config"`
	History      []History `json:"history,omitempty"`
}

// Config is the part of an image's config that running it needs.
type Config struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"workingDir,omitempty"`
	User         string            `json:"user,omitempty"`
	StopSignal   string            `json:"stopSignal,omitempty"`
	ExposedPorts []string          `json:"exposedPorts,omitempty"` // "80/tcp", sorted
	Volumes      []string          `json:"volumes,omitempty"`      // sorted
	Labels       map[string]string `json:"labels,omitempty"`
}

// History is one step of how an image was built.
type History struct {
	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"createdBy,omitempty"`
	Comment    string    `json:"comment,omitempty"`
	EmptyLayer bool      `json:"emptyLayer,omitempty"`
	// Size is the uncompressed size of the layer this step made (0 for an
	// empty layer).
	Size int64 `json:"size"`
}

// blobRef describes one stored blob (a compressed layer).
type blobRef struct {
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
	MediaType string `json:"mediaType"`
}

// imageRecord is an image as index.json holds it.
type imageRecord struct {
	Image
	ManifestMediaType string    `json:"manifestMediaType"`
	Blobs             []blobRef `json:"blobs"` // per layer, same order as Layers
	Added             time.Time `json:"added"`
	// IndexDigests are the digests of multi-platform indexes this image
	// was pulled from, so that "repo@sha256:INDEX" finds it.
	IndexDigests []string `json:"indexDigests,omitempty"`
	// Built marks a build's final image: listed (as dangling when it has
	// no name) even though the build cache refers to it.
	Built bool `json:"built,omitempty"`
}

type layerRecord struct {
	// Size is the layer's uncompressed tar size.
	Size int64 `json:"size"`
	// Blob is a stored blob of the layer, reused for archives that name
	// no blob digest.
	Blob blobRef `json:"blob"`
}

type indexFile struct {
	Version int                     `json:"version"`
	Images  map[string]*imageRecord `json:"images"` // by ID
	Layers  map[string]layerRecord  `json:"layers"` // by diffID
	// BuildCache maps a build step's cache key to the image it made
	// (commit.go).
	BuildCache map[string]string `json:"buildCache,omitempty"`
}

const indexVersion = 1

// Store is a local, content-addressed image store rooted at one
// directory. It is safe for use by many goroutines; most methods do disk
// I/O and may block. See the package documentation for the layout.
type Store struct {
	root string
	log  *slog.Logger

	// mu serialises index changes and protects pins.
	mu sync.Mutex
	// pins counts, per diffID or blob digest, the Adds in flight that
	// rely on it; Remove never deletes a pinned layer or blob.
	pins map[string]int

	layerMu    sync.Mutex
	layerLocks map[string]*layerLock

	// pulls shares concurrent Pulls of one reference.
	pulls flightGroup
}

type layerLock struct {
	sync.Mutex
	refs int
}

// Open opens (creating it if needed) the store rooted at root and removes
// work left behind by processes that are gone.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("image: store root %q: %w", root, err)
	}
	for _, d := range []string{"blobs/sha256", "layers/sha256", "tmp"} {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o700); err != nil {
			return nil, fmt.Errorf("image: create store: %w", err)
		}
	}
	s := &Store{
		root:       abs,
		log:        slog.Default().With("component", "image"),
		pins:       map[string]int{},
		layerLocks: map[string]*layerLock{},
	}
	if _, err := s.loadIndex(); err != nil {
		return nil, err
	}
	s.cleanTmp()
	return s, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

func (s *Store) indexPath() string { return filepath.Join(s.root, "index.json") }

func (s *Store) blobPath(digest string) string {
	return filepath.Join(s.root, "blobs", "sha256", strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) layerPath(diffID string) string {
	return filepath.Join(s.root, "layers", "sha256", strings.TrimPrefix(diffID, "sha256:"))
}

// tmpName makes a unique name under tmp/ that carries our PID, so that
// Open can tell leftovers of dead processes from live work.
var tmpSeq struct {
	sync.Mutex
	n int
}

func (s *Store) tmpPath(kind string) string {
	tmpSeq.Lock()
	tmpSeq.n++
	n := tmpSeq.n
	tmpSeq.Unlock()
	return filepath.Join(s.root, "tmp", fmt.Sprintf("%d-%d-%d-%s", os.Getpid(), time.Now().UnixNano(), n, kind))
}

func (s *Store) cleanTmp() {
	dir := filepath.Join(s.root, "tmp")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		pid, err := strconv.Atoi(pidStr)
		if err == nil && (pid == os.Getpid() || processAlive(pid)) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			s.log.Warn("removing leftover work", "path", e.Name(), "err", err)
		}
	}
}

func (s *Store) loadIndex() (*indexFile, error) {
	idx := &indexFile{Version: indexVersion, Images: map[string]*imageRecord{}, Layers: map[string]layerRecord{}}
	b, err := os.ReadFile(s.indexPath())
	if errors.Is(err, os.ErrNotExist) {
		return idx, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image: read index: %w", err)
	}
	if err := json.Unmarshal(b, idx); err != nil {
		return nil, fmt.Errorf("image: index %s is corrupt (%v); restore it or move the store aside", s.indexPath(), err)
	}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("image: index %s has version %d; this berth reads version %d", s.indexPath(), idx.Version, indexVersion)
	}
	if idx.Images == nil {
		idx.Images = map[string]*imageRecord{}
	}
	if idx.Layers == nil {
		idx.Layers = map[string]layerRecord{}
	}
	return idx, nil
}

func (s *Store) writeIndex(idx *indexFile) error {
	b, err := json.MarshalIndent(idx, "", " ")
	if err != nil {
		return err
	}
	if err := s.writeFileAtomic(s.indexPath(), b); err != nil {
		return fmt.Errorf("image: write index: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path through a temporary file (in tmp/, so
// a crash leaves nothing beside the real files), fsync and rename, so
// readers see the old or the new content, never a mix.
func (s *Store) writeFileAtomic(path string, b []byte) error {
	tmp := s.tmpPath("file")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// withIndex runs fn with the index loaded, holding the store's mutex and
// the cross-process lock; the index is written back if fn returns nil
// and changed is set.
func (s *Store) withIndex(fn func(idx *indexFile) (changed bool, err error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	unlock, err := lockFile(filepath.Join(s.root, "lock"))
	if err != nil {
		return fmt.Errorf("image: lock store: %w", err)
	}
	defer unlock()
	idx, err := s.loadIndex()
	if err != nil {
		return err
	}
	changed, err := fn(idx)
	if err != nil {
		return err
	}
	if changed {
		return s.writeIndex(idx)
	}
	return nil
}

// Get returns the image that ref names: a name ("busybox" is
// "busybox:latest"), a name with a manifest digest ("busybox@sha256:…"),
// a full image ID, or a unique prefix of one (at least 4 hex digits, with
// or without "sha256:"). It returns an error wrapping ErrNotFound,
// ErrAmbiguous or ErrInvalidName.
func (s *Store) Get(ref string) (*Image, error) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	rec, _, err := resolve(idx, ref)
	if err != nil {
		return nil, err
	}
	return rec.public(), nil
}

// List returns every stored image, newest first, except the build
// cache's unnamed step images (see PruneBuildCache).
func (s *Store) List() ([]*Image, error) {
	idx, err := s.loadIndex()
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(idx.Images))
	hidden := cacheOnly(idx)
	for _, rec := range idx.Images {
		if hidden[rec.ID] {
			continue
		}
		out = append(out, rec.public())
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

func (r *imageRecord) public() *Image {
	img := r.Image
	img.Names = slices.Clone(r.Names)
	img.Layers = slices.Clone(r.Layers)
	img.History = slices.Clone(r.History)
	img.Config.Entrypoint = slices.Clone(r.Config.Entrypoint)
	img.Config.Cmd = slices.Clone(r.Config.Cmd)
	img.Config.Env = slices.Clone(r.Config.Env)
	img.Config.ExposedPorts = slices.Clone(r.Config.ExposedPorts)
	img.Config.Volumes = slices.Clone(r.Config.Volumes)
	if r.Config.Labels != nil {
		img.Config.Labels = make(map[string]string, len(r.Config.Labels))
		for k, v := range r.Config.Labels {
			img.Config.Labels[k] = v
		}
	}
	return &img
}

var hexPrefixRE = regexp.MustCompile(`^[a-f0-9]{4,64}$`)

// resolve finds the image ref names. name is the familiar name ref
// matched, "" when it matched by ID or digest.
func resolve(idx *indexFile, ref string) (rec *imageRecord, name string, err error) {
	r, perr := parseReference(ref)
	if perr == nil {
		if r.digest != "" {
			for _, rec := range idx.Images {
				if rec.Digest == r.digest || slices.Contains(rec.IndexDigests, r.digest) {
					return rec, "", nil
				}
			}
		} else {
			want := r.familiar()
			for _, rec := range idx.Images {
				if slices.Contains(rec.Names, want) {
					return rec, want, nil
				}
			}
		}
	}
	hex := strings.TrimPrefix(ref, "sha256:")
	if hexPrefixRE.MatchString(hex) {
		var found *imageRecord
		for id, rec := range idx.Images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hex) {
				if found != nil {
					return nil, "", fmt.Errorf("%w: %s", ErrAmbiguous, ref)
				}
				found = rec
			}
		}
		if found != nil {
			return found, "", nil
		}
	} else if perr != nil {
		return nil, "", perr
	}
	return nil, "", fmt.Errorf("%w: %s", ErrNotFound, ref)
}

// Tag gives the image ref names the name newName (validated with
// ParseName). An image that had the name loses it.
func (s *Store) Tag(ref, newName string) error {
	name, err := ParseName(newName)
	if err != nil {
		return err
	}
	return s.withIndex(func(idx *indexFile) (bool, error) {
		rec, _, err := resolve(idx, ref)
		if err != nil {
			return false, err
		}
		if slices.Contains(rec.Names, name) {
			// Names are unique: nothing to move, nothing to write.
			return false, nil
		}
		setName(idx, rec, name)
		return true, nil
	})
}

// setName moves name to rec, taking it from whichever image had it.
func setName(idx *indexFile, rec *imageRecord, name string) {
	for _, other := range idx.Images {
		if other != rec {
			other.Names = slices.DeleteFunc(other.Names, func(n string) bool { return n == name })
		}
	}
	if !slices.Contains(rec.Names, name) {
		rec.Names = append(rec.Names, name)
		sort.Strings(rec.Names)
	}
}

// Remove untags or deletes an image. Given one of several names of an
// image, it removes just that name. Given the image's last name, its ID
// (or a prefix) or its digest, it removes every name and deletes the
// image, then the layer directories and blobs that no other image uses.
// It returns what it did, one line per step, as `docker rmi` prints it:
// "Untagged: busybox:latest", "Deleted: sha256:…". It does not know about
// containers: the caller refuses to remove an image a container uses.
func (s *Store) Remove(ref string) ([]string, error) {
	var out []string
	var gone *imageRecord
	err := s.withIndex(func(idx *indexFile) (bool, error) {
		rec, name, err := resolve(idx, ref)
		if err != nil {
			return false, err
		}
		if name != "" && len(rec.Names) > 1 {
			rec.Names = slices.DeleteFunc(rec.Names, func(n string) bool { return n == name })
			out = append(out, "Untagged: "+name)
			return true, nil
		}
		for _, n := range rec.Names {
			out = append(out, "Untagged: "+n)
		}
		delete(idx.Images, rec.ID)
		gone = rec
		// Drop layer records nobody uses, in the same write.
		used := usedLayers(idx)
		for _, l := range rec.Layers {
			if !used[l] && s.pins[l] == 0 {
				delete(idx.Layers, l)
			}
		}
		out = append(out, "Deleted: "+rec.ID)
		return true, nil
	})
	if err != nil || gone == nil {
		return out, err
	}
	s.collect(gone)
	return out, nil
}

func usedLayers(idx *indexFile) map[string]bool {
	used := map[string]bool{}
	for _, rec := range idx.Images {
		for _, l := range rec.Layers {
			used[l] = true
		}
	}
	return used
}

func usedBlobs(idx *indexFile) map[string]bool {
	used := map[string]bool{}
	for _, rec := range idx.Images {
		used[rec.ID] = true
		used[rec.Digest] = true
		for _, b := range rec.Blobs {
			used[b.Digest] = true
		}
	}
	return used
}

// collect deletes the layer directories and blobs of a removed image that
// no stored image uses and no Add in flight relies on. The index was
// already written, so a crash here leaves only unreferenced files.
func (s *Store) collect(gone *imageRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	idx, err := s.loadIndex()
	if err != nil {
		s.log.Warn("collecting unused layers", "err", err)
		return
	}
	layers, blobs := usedLayers(idx), usedBlobs(idx)
	for _, l := range gone.Layers {
		if layers[l] || s.pins[l] > 0 {
			continue
		}
		s.removeLayerDir(l)
	}
	cands := []string{gone.ID, gone.Digest}
	for _, b := range gone.Blobs {
		cands = append(cands, b.Digest)
	}
	for _, d := range cands {
		if d == "" || blobs[d] || s.pins[d] > 0 {
			continue
		}
		if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing blob", "image", gone.ID, "blob", d, "err", err)
		}
	}
}

// removeLayerDir first renames the layer out of layers/ (so it stops
// looking complete at once), then deletes it.
func (s *Store) removeLayerDir(diffID string) {
	dir := s.layerPath(diffID)
	tmp := s.tmpPath("rm")
	if err := os.Rename(dir, tmp); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("removing layer", "layer", diffID, "err", err)
		}
		return
	}
	if err := os.RemoveAll(tmp); err != nil {
		s.log.Warn("removing layer", "layer", diffID, "err", err)
	}
}

// LayerDirs returns the absolute directories of img's unpacked layers,
// lowest layer first (overlayfs wants them reversed in lowerdir). It fails
// if a layer is missing from disk.
func (s *Store) LayerDirs(img *Image) ([]string, error) {
	out := make([]string, 0, len(img.Layers))
	for _, l := range img.Layers {
		dir := s.layerPath(l)
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%w: layer %s of image %s is missing from %s; remove and pull or load the image again", ErrNotFound, l, img.ID, s.root)
		}
		out = append(out, dir)
	}
	return out, nil
}

// pin marks diffIDs and digests as in use by an Add in flight.
func (s *Store) pin(keys ...string) func() {
	s.mu.Lock()
	for _, k := range keys {
		s.pins[k]++
	}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		for _, k := range keys {
			if s.pins[k]--; s.pins[k] <= 0 {
				delete(s.pins, k)
			}
		}
		s.mu.Unlock()
	}
}

// lockLayer serialises work on one layer within this process.
func (s *Store) lockLayer(diffID string) func() {
	s.layerMu.Lock()
	l := s.layerLocks[diffID]
	if l == nil {
		l = &layerLock{}
		s.layerLocks[diffID] = l
	}
	l.refs++
	s.layerMu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.layerMu.Lock()
		if l.refs--; l.refs == 0 {
			delete(s.layerLocks, diffID)
		}
		s.layerMu.Unlock()
	}
}
