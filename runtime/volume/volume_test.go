package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "volumes"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func names(vs []*Volume) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Name)
	}
	return out
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"data", true}, {"a1", true}, {"My_Vol.2-x", true}, {"0abc", true},
		{"", false}, {"a", false}, {"_data", false}, {".hidden", false}, {"-x", false},
		{"a/b", false}, {"a:b", false}, {"a b", false}, {"..", false}, {"dätä", false},
		{strings.Repeat("a", 255), true}, {strings.Repeat("a", 256), false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.20q", tt.name), func(t *testing.T) {
			err := ValidName(tt.name)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalidName) {
				t.Fatalf("error %v does not wrap ErrInvalidName", err)
			}
		})
	}
}

func TestCreateInspectListRemove(t *testing.T) {
	s := openStore(t)
	v, err := s.Create("data", map[string]string{"team": "web"})
	if err != nil {
		t.Fatal(err)
	}
	if v.Name != "data" || v.Mountpoint != filepath.Join(s.Root(), "data", "_data") || v.Anonymous || v.Labels["team"] != "web" || v.CreatedAt.IsZero() {
		t.Fatalf("Create = %+v", v)
	}
	if st, err := os.Stat(v.Mountpoint); err != nil || !st.IsDir() {
		t.Fatalf("mountpoint: %v", err)
	}
	// Docker semantics: creating an existing name returns it unchanged.
	again, err := s.Create("data", map[string]string{"other": "x"})
	if err != nil || !again.CreatedAt.Equal(v.CreatedAt) || again.Labels["team"] != "web" {
		t.Fatalf("second Create = %+v, %v", again, err)
	}
	anon, err := s.Create("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !anon.Anonymous || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(anon.Name) {
		t.Fatalf("anonymous volume = %+v", anon)
	}
	got, err := s.Get("data")
	if err != nil || got.Labels["team"] != "web" {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := s.Get("missing"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(missing) = %v", err)
	}
	if _, err := s.Create("bad/name", nil); !errors.Is(err, ErrInvalidName) {
		t.Fatalf("Create(bad/name) = %v", err)
	}
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{anon.Name, "data"}
	slices.Sort(want)
	if !slices.Equal(names(list), want) {
		t.Fatalf("List = %v, want %v", names(list), want)
	}
	if err := s.Remove("data", false); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), "data")); !os.IsNotExist(err) {
		t.Fatalf("volume dir left after Remove: %v", err)
	}
	if err := s.Remove("data", false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second Remove = %v", err)
	}
	if list, _ := s.List(); !slices.Equal(names(list), []string{anon.Name}) {
		t.Fatalf("List after Remove = %v", names(list))
	}
}

func TestDataSurvivesReleaseAndInUse(t *testing.T) {
	s := openStore(t)
	v, err := s.Acquire("db", "c1")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(v.UsedBy, []string{"c1"}) {
		t.Fatalf("Acquire created %+v", v)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "table"), []byte("rows"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire("db", "c2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire("db", "c2"); err != nil { // twice records once
		t.Fatal(err)
	}
	err = s.Remove("db", false)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "c1, c2") || !strings.Contains(err.Error(), "remove them first") {
		t.Fatalf("Remove in use = %v", err)
	}
	if removed, _, err := s.Prune(); err != nil || len(removed) != 0 {
		t.Fatalf("Prune removed %v, %v while in use", removed, err)
	}
	if err := s.Release("db", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("db", "c2"); err != nil {
		t.Fatal(err)
	}
	if err := s.Release("db", "c2"); err != nil { // idempotent
		t.Fatal(err)
	}
	if err := s.Release("gone", "c2"); err != nil {
		t.Fatal(err)
	}
	// A new container sees the data the released one wrote.
	v, err = s.Acquire("db", "c3")
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "table")); err != nil || string(b) != "rows" {
		t.Fatalf("data after Release: %q, %v", b, err)
	}
	if err := s.Remove("db", true); err != nil {
		t.Fatalf("forced Remove: %v", err)
	}
	if _, err := s.Get("db"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after forced Remove = %v", err)
	}
}

func TestReopenKeepsUsers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "volumes")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Acquire("cache", "c1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create("labelled", map[string]string{"a": "b"}); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s2.Get("cache")
	if err != nil || !slices.Equal(v.UsedBy, []string{"c1"}) {
		t.Fatalf("after reopen Get = %+v, %v", v, err)
	}
	if err := s2.Remove("cache", false); !errors.Is(err, ErrInUse) {
		t.Fatalf("after reopen Remove = %v, want ErrInUse", err)
	}
	if v, _ := s2.Get("labelled"); v == nil || v.Labels["a"] != "b" {
		t.Fatalf("labels lost: %+v", v)
	}
	// No temporary metadata files are left behind.
	left, _ := filepath.Glob(filepath.Join(root, "*", ".meta-*"))
	if len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
}

func TestPruneAndSize(t *testing.T) {
	s := openStore(t)
	used, _ := s.Acquire("used", "c1")
	free, _ := s.Create("free", nil)
	anon, _ := s.Create("", nil)
	for _, v := range []*Volume{used, free, anon} {
		if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), make([]byte, 1000), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Nested files count; a hard link counts once; a symlink's target does not.
	if err := os.MkdirAll(filepath.Join(free.Mountpoint, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(free.Mountpoint, "sub", "g"), make([]byte, 24), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(free.Mountpoint, "f"), filepath.Join(free.Mountpoint, "f2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(free.Mountpoint, "ln")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Size("free"); err != nil || n != 1024 {
		t.Fatalf("Size(free) = %d, %v; want 1024", n, err)
	}
	removed, freed, err := s.Prune()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{anon.Name, "free"}
	slices.Sort(want)
	if !slices.Equal(removed, want) || freed != 2024 {
		t.Fatalf("Prune = %v, %d; want %v, 2024", removed, freed, want)
	}
	if list, _ := s.List(); !slices.Equal(names(list), []string{"used"}) {
		t.Fatalf("after Prune List = %v", names(list))
	}
	if _, err := os.Stat(filepath.Join(used.Mountpoint, "f")); err != nil {
		t.Fatalf("used volume's data: %v", err)
	}
}

func TestIncompleteVolumeIgnoredThenCompleted(t *testing.T) {
	s := openStore(t)
	// A crash between making _data and writing meta.json.
	if err := os.MkdirAll(filepath.Join(s.Root(), "half", "_data"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(s.Root(), ".removing-x-1234"), 0o755); err != nil {
		t.Fatal(err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Fatalf("List = %v, %v", names(list), err)
	}
	if _, err := s.Create("half", nil); err != nil {
		t.Fatal(err)
	}
	if list, _ := s.List(); !slices.Equal(names(list), []string{"half"}) {
		t.Fatalf("List = %v", names(list))
	}
}

func TestConcurrentAcquireRelease(t *testing.T) {
	s := openStore(t)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			id := fmt.Sprintf("c%02d", i)
			if _, err := s.Acquire("shared", id); err != nil {
				t.Error(err)
			}
			if i%2 == 0 {
				if err := s.Release("shared", id); err != nil {
					t.Error(err)
				}
			}
		}(i)
	}
	wg.Wait()
	v, err := s.Get("shared")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 1; i < 16; i += 2 {
		want = append(want, fmt.Sprintf("c%02d", i))
	}
	if !slices.Equal(v.UsedBy, want) {
		t.Fatalf("UsedBy = %v, want %v", v.UsedBy, want)
	}
}
