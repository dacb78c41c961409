package volume

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Errors returned by this package.
var (
	// ErrNotFound is returned for a volume that does not exist.
	ErrNotFound = errors.New("volume: no such volume")
	// ErrInUse is returned by Remove for a volume that containers use.
	ErrInUse = errors.New("volume: volume is in use")
	// ErrInvalidName is returned for a name outside [a-zA-Z0-9][a-zA-Z0-9_.-]+.
	ErrInvalidName = errors.New("volume: invalid volume name")
	// ErrInvalidMount is returned by ParseMount for a malformed -v spec.
	ErrInvalidMount = errors.New("volume: invalid mount spec")
)

// Volume describes one volume. Values returned by Store are copies.
type Volume struct {
	Name       string            `json:"name"`
	Mountpoint string            `json:"mountpoint"` // ROOT/NAME/_data
	CreatedAt  time.Time         `json:"created_at"`
	Labels     map[string]string `json:"labels,omitempty"`
	Anonymous  bool              `json:"anonymous,omitempty"`
	UsedBy     []string          `json:"used_by,omitempty"` // container IDs, sorted
}

const (
	dataDir  = "_data"
	metaFile = "meta.json"
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// ValidName checks a volume name: at least two characters, the first a
// letter or digit, the rest letters, digits, '_', '.' or '-' (Docker's
// rule), at most 255 in all.
func ValidName(name string) error {
	if len(name) > 255 || !nameRE.MatchString(name) {
		return fmt.Errorf("%w %q: use at least two characters from [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidName, name)
	}
	return nil
}

// Store is the set of volumes under one root directory. It is safe for use
// by several goroutines; one process should own a root at a time (the
// agent), since the lock is in memory.
type Store struct {
	root string
	mu   sync.Mutex
}

// Open returns the store rooted at root, creating the directory if needed.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, errors.New("volume: empty store root; pass DATA_DIR/volumes")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("volume: store root %s: %w", root, err)
	}
	// 0701 like Docker: others may traverse to a mounted _data but not
	// list the volumes.
	if err := os.MkdirAll(abs, 0o701); err != nil {
		return nil, fmt.Errorf("volume: create store root %s: %w", abs, err)
	}
	return &Store{root: abs}, nil
}

// Root is the directory that holds the volumes.
func (s *Store) Root() string { return s.root }

func (s *Store) dir(name string) string { return filepath.Join(s.root, name) }

// Create makes a volume and returns it. An empty name makes an anonymous
// volume with a random 64-hex-digit name. Creating a name that exists
// returns the existing volume unchanged, as `docker volume create` does.
func (s *Store) Create(name string, labels map[string]string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, _, err := s.create(name, labels)
	return v, err
}

// create does Create's work under s.mu and reports whether it made the
// volume.
func (s *Store) create(name string, labels map[string]string) (*Volume, bool, error) {
	anon := name == ""
	if anon {
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, false, fmt.Errorf("volume: random name: %w", err)
		}
		name = hex.EncodeToString(b[:])
	} else if err := ValidName(name); err != nil {
		return nil, false, err
	}
	if v, err := s.load(name); err == nil {
		return v, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	v := &Volume{
		Name:       name,
		Mountpoint: filepath.Join(s.dir(name), dataDir),
		CreatedAt:  time.Now().UTC().Truncate(time.Second),
		Labels:     copyLabels(labels),
		Anonymous:  anon,
	}
	// _data first, metadata last: a crash in between leaves a directory
	// without meta.json, which List ignores and Create completes.
	if err := os.MkdirAll(v.Mountpoint, 0o755); err != nil {
		return nil, false, fmt.Errorf("volume: create %s: %w", v.Mountpoint, err)
	}
	if err := s.save(v); err != nil {
		return nil, false, err
	}
	return v, true, nil
}

// Get returns the volume called name, or ErrNotFound.
func (s *Store) Get(name string) (*Volume, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load(name)
}

// List returns every volume, sorted by name.
func (s *Store) List() ([]*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.list()
}

func (s *Store) list() ([]*Volume, error) {
	entries, err := os.ReadDir(s.root)
	if err != nil {
		return nil, fmt.Errorf("volume: list %s: %w", s.root, err)
	}
	var out []*Volume
	for _, e := range entries {
		if !e.IsDir() || ValidName(e.Name()) != nil {
			continue // leftovers of an interrupted Remove start with '.'
		}
		v, err := s.load(e.Name())
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Acquire records that containerID uses the volume, creating the volume
// first if it does not exist (an empty name creates an anonymous one).
// Acquiring twice for the same container records it once.
func (s *Store) Acquire(name, containerID string) (*Volume, error) {
	if containerID == "" {
		return nil, errors.New("volume: acquire with an empty container ID")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, made, err := s.create(name, nil)
	if err != nil {
		return nil, err
	}
	if slices.Contains(v.UsedBy, containerID) {
		return v, nil
	}
	v.UsedBy = append(v.UsedBy, containerID)
	sort.Strings(v.UsedBy)
	if err := s.save(v); err != nil {
		if made {
			_ = os.RemoveAll(s.dir(v.Name))
		}
		return nil, err
	}
	return v, nil
}

// Release records that containerID no longer uses the volume. The data
// stays. Releasing a volume that is gone, or that the container did not
// use, does nothing, so container removal can always call it.
func (s *Store) Release(name, containerID string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.load(name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	i := slices.Index(v.UsedBy, containerID)
	if i < 0 {
		return nil
	}
	v.UsedBy = slices.Delete(v.UsedBy, i, i+1)
	return s.save(v)
}

// Remove deletes a volume and its data. While containers use it, it
// returns ErrInUse naming them, unless force is set.
func (s *Store) Remove(name string, force bool) error {
	if err := ValidName(name); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.load(name)
	if err != nil {
		return err
	}
	if len(v.UsedBy) > 0 && !force {
		return fmt.Errorf("%w: volume %q is used by container(s) %s; remove them first (berth rm), or force the removal",
			ErrInUse, name, strings.Join(v.UsedBy, ", "))
	}
	return s.remove(name)
}

// remove renames the volume's directory out of the namespace first, so
// that a crash mid-way leaves no half-deleted volume under its name.
func (s *Store) remove(name string) error {
	var b [8]byte
	_, _ = rand.Read(b[:])
	trash := filepath.Join(s.root, ".removing-"+name+"-"+hex.EncodeToString(b[:]))
	if err := os.Rename(s.dir(name), trash); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return fmt.Errorf("volume: remove %s: %w", name, err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("volume: remove %s: delete its data: %w (left in %s)", name, err, trash)
	}
	return nil
}

// Prune removes every volume that no container uses and returns their
// names and the bytes their data held.
func (s *Store) Prune() (removed []string, freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vols, err := s.list()
	if err != nil {
		return nil, 0, err
	}
	for _, v := range vols {
		if len(v.UsedBy) > 0 {
			continue
		}
		size, err := dirSize(v.Mountpoint)
		if err != nil {
			return removed, freed, err
		}
		if err := s.remove(v.Name); err != nil {
			return removed, freed, err
		}
		removed = append(removed, v.Name)
		freed += size
	}
	return removed, freed, nil
}

// Size returns the bytes held by the volume's files (each hard-linked
// file counted once).
func (s *Store) Size(name string) (int64, error) {
	v, err := s.Get(name)
	if err != nil {
		return 0, err
	}
	return dirSize(v.Mountpoint)
}

func dirSize(dir string) (int64, error) {
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
			k := inode{uint64(st.Dev), uint64(st.Ino)}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("volume: size of %s: %w", dir, err)
	}
	return total, nil
}

func (s *Store) load(name string) (*Volume, error) {
	b, err := os.ReadFile(filepath.Join(s.dir(name), metaFile))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
		}
		return nil, fmt.Errorf("volume: read %s: %w", name, err)
	}
	v := &Volume{}
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("volume: %s: corrupt %s: %w", name, metaFile, err)
	}
	if v.Name != name {
		return nil, fmt.Errorf("volume: %s: %s names %q", name, metaFile, v.Name)
	}
	// The mountpoint follows the store, should its root have moved.
	v.Mountpoint = filepath.Join(s.dir(name), dataDir)
	return v, nil
}

// save writes the metadata atomically: a temporary file, fsync, rename,
// fsync of the directory.
func (s *Store) save(v *Volume) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("volume: encode %s: %w", v.Name, err)
	}
	dir := s.dir(v.Name)
	tmp, err := os.CreateTemp(dir, ".meta-*.tmp")
	if err != nil {
		return fmt.Errorf("volume: save %s: %w", v.Name, err)
	}
	_, werr := tmp.Write(append(b, '\n'))
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), filepath.Join(dir, metaFile))
	}
	if werr != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("volume: save %s: %w", v.Name, werr)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func copyLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	out := make(map[string]string, len(l))
	for k, v := range l {
		out[k] = v
	}
	return out
}
