package build

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// An uploaded context is unpacked once per content: a rebuild that sends
// the same bytes (the common case of a cached rebuild) reuses the tree,
// so unpacking hundreds of files is not paid on every build. Contexts
// live under DIR/contexts/SHA256-OF-TAR, the most recent keepContexts
// that no build uses are kept.

// keepContexts is how many unused unpacked contexts are kept.
const keepContexts = 4

type contextCache struct {
	mu   sync.Mutex
	dir  string
	refs map[string]int
	busy map[string]*sync.Mutex // per digest, while it is unpacked
}

// Context reads a build context tar (as ContextTar writes it) and returns
// a directory holding its files. An identical upload unpacked before is
// reused. The directory must not be changed; release marks it unused.
func (b *Builder) Context(r io.Reader) (dir string, release func(), err error) {
	cc := b.contexts
	tmp, err := os.CreateTemp(b.tmp, "upload-")
	if err != nil {
		return "", nil, fmt.Errorf("build: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, maxContextBytes+1))
	if err != nil {
		return "", nil, fmt.Errorf("%w: read the context: %v", ErrBadContext, err)
	}
	if n > maxContextBytes {
		return "", nil, fmt.Errorf("%w: the context is larger than %d bytes", ErrBadContext, maxContextBytes)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	final := filepath.Join(cc.dir, digest)

	cc.mu.Lock()
	lk := cc.busy[digest]
	if lk == nil {
		lk = &sync.Mutex{}
		cc.busy[digest] = lk
	}
	cc.refs[digest]++
	cc.mu.Unlock()
	release = func() {
		cc.mu.Lock()
		if cc.refs[digest]--; cc.refs[digest] <= 0 {
			delete(cc.refs, digest)
		}
		cc.mu.Unlock()
		cc.prune()
	}

	lk.Lock()
	defer lk.Unlock()
	if fi, err := os.Stat(final); err == nil && fi.IsDir() {
		now := time.Now()
		os.Chtimes(final, now, now)
		return final, release, nil
	}
	work, err := os.MkdirTemp(b.tmp, "context-")
	if err != nil {
		release()
		return "", nil, fmt.Errorf("build: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		os.RemoveAll(work)
		release()
		return "", nil, fmt.Errorf("build: %w", err)
	}
	if err := ExtractContext(bufio.NewReaderSize(tmp, 1<<20), work); err != nil {
		os.RemoveAll(work)
		release()
		return "", nil, err
	}
	if err := os.Rename(work, final); err != nil {
		os.RemoveAll(work)
		release()
		return "", nil, fmt.Errorf("build: %w", err)
	}
	return final, release, nil
}

// prune removes the oldest unused contexts beyond keepContexts.
func (cc *contextCache) prune() {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	ents, err := os.ReadDir(cc.dir)
	if err != nil {
		return
	}
	type ctx struct {
		name string
		mod  time.Time
	}
	var unused []ctx
	for _, e := range ents {
		if cc.refs[e.Name()] > 0 {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		unused = append(unused, ctx{e.Name(), fi.ModTime()})
	}
	if len(unused) <= keepContexts {
		return
	}
	sort.Slice(unused, func(i, j int) bool { return unused[i].mod.After(unused[j].mod) })
	for _, c := range unused[keepContexts:] {
		if l := cc.busy[c.name]; l != nil && !l.TryLock() {
			continue
		} else if l != nil {
			delete(cc.busy, c.name)
			l.Unlock()
		}
		if err := os.RemoveAll(filepath.Join(cc.dir, c.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			continue
		}
	}
}
