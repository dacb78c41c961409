//go:build linux

package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// commitConfig makes a config on top of base with extra layers and one
// more history entry per layer.
func commitConfig(t *testing.T, s *Store, base string, layers ...string) []byte {
	t.Helper()
	cfg, err := s.ConfigFile(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		h, err := v1.NewHash(l)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, h)
		cfg.History = append(cfg.History, v1.History{CreatedBy: "RUN step"})
	}
	cfg.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", "true"}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAddLayerCommitAndBuildCache(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	base := importBusybox(t, s, "busybox")

	layer := mkTar(t,
		tarEntry{name: "app/", typ: tar.TypeDir},
		tarEntry{name: "app/hello", body: "hello\n"},
		tarEntry{name: "bin/.wh.ls"},
	)
	li, err := s.AddLayer(ctx, bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	if li.Size != int64(len(layer)) {
		t.Fatalf("layer size %d, tar is %d bytes", li.Size, len(layer))
	}
	before := unpackCount.Load()
	if again, err := s.AddLayer(ctx, bytes.NewReader(layer)); err != nil || again != li {
		t.Fatalf("adding the same layer again: %+v %v", again, err)
	}
	if unpackCount.Load() != before {
		t.Fatal("a stored layer was unpacked again")
	}

	cfgRaw := commitConfig(t, s, base.ID, li.DiffID)
	step, err := s.Commit(ctx, cfgRaw, CommitOptions{CacheKey: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(step.Layers) != 2 || step.Layers[1] != li.DiffID || len(step.Names) != 0 {
		t.Fatalf("committed image %+v", step)
	}
	dirs, err := s.LayerDirs(step)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs[1], "app/hello")); err != nil || string(b) != "hello\n" {
		t.Fatalf("layer content: %q %v", b, err)
	}
	if mode, rdev := statMode(t, filepath.Join(dirs[1], "bin/ls")); mode&0o170000 != 0o020000 || rdev != 0 {
		t.Fatalf("whiteout is not a 0/0 char device: mode %o rdev %d", mode, rdev)
	}
	cfg, err := s.ConfigFile(step.ID)
	if err != nil || cfg.Config.Healthcheck == nil {
		t.Fatalf("full config kept: %+v %v", cfg, err)
	}
	// A cache-only step image is hidden from List and from Prune.
	list, _ := s.List()
	if len(list) != 1 || list[0].ID != base.ID {
		t.Fatalf("List shows the cache's step image: %+v", list)
	}
	if rep, err := s.Prune(false, nil); err != nil || slices.Contains(rep.Images, step.ID) {
		t.Fatalf("Prune removed the cache's step image: %+v %v", rep, err)
	}
	// The cache survives a reopen (another process).
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	got, ok := s2.CacheGet("k1")
	if !ok || got.ID != step.ID {
		t.Fatalf("CacheGet after reopen: %+v %v", got, ok)
	}
	if _, ok := s2.CacheGet("other"); ok {
		t.Fatal("CacheGet found an unknown key")
	}
	// The image pushes and saves like any other: its manifest is there.
	if _, err := s2.OpenImage(step.ID); err != nil {
		t.Fatal(err)
	}

	// MarkBuilt lists an unnamed build result.
	if err := s2.MarkBuilt(step.ID); err != nil {
		t.Fatal(err)
	}
	if list, _ := s2.List(); len(list) != 2 {
		t.Fatalf("List after MarkBuilt: %d images, want 2", len(list))
	}
	// Naming the same config makes it an ordinary image.
	named, err := s2.Commit(ctx, cfgRaw, CommitOptions{Names: []string{"app:v1"}, CacheKey: "k1"})
	if err != nil || named.ID != step.ID || !slices.Equal(named.Names, []string{"app:v1"}) {
		t.Fatalf("naming: %+v %v", named, err)
	}
	if list, _ := s2.List(); len(list) != 2 {
		t.Fatalf("List after naming: %d images", len(list))
	}

	// A second, unnamed step image; PruneBuildCache removes it, keeps the
	// named one and forgets every key.
	layer2 := mkTar(t, tarEntry{name: "other", body: "x\n"})
	li2, err := s2.AddLayer(ctx, bytes.NewReader(layer2))
	if err != nil {
		t.Fatal(err)
	}
	step2, err := s2.Commit(ctx, commitConfig(t, s2, step.ID, li2.DiffID), CommitOptions{CacheKey: "k2"})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s2.PruneBuildCache(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 2 || !slices.Equal(rep.Images, []string{step2.ID}) || rep.SpaceReclaimed < int64(len(layer2)) {
		t.Fatalf("PruneBuildCache: %+v", rep)
	}
	if _, ok := s2.CacheGet("k1"); ok {
		t.Fatal("cache key survived PruneBuildCache")
	}
	if _, err := s2.Get("app:v1"); err != nil {
		t.Fatalf("named image removed by PruneBuildCache: %v", err)
	}
	if _, err := os.Stat(s2.layerPath(li2.DiffID)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pruned step's layer still on disk: %v", err)
	}
}

func TestCommitRefusesMissingLayer(t *testing.T) {
	s := newStore(t)
	base := importBusybox(t, s, "busybox")
	cfgRaw := commitConfig(t, s, base.ID, "sha256:"+sha256Hex([]byte("nope")))
	if _, err := s.Commit(context.Background(), cfgRaw, CommitOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("commit with a layer not stored: %v", err)
	}
	if _, err := s.Commit(context.Background(), []byte("{"), CommitOptions{}); !errors.Is(err, ErrBadArchive) {
		t.Fatalf("commit of a bad config: %v", err)
	}
}
