package logs

import (
	"bufio"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func readAll(t *testing.T, r io.ReadCloser) []Entry {
	t.Helper()
	defer r.Close()
	var out []Entry
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		e, err := Decode(sc.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestWriterAndReader(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := NewWriter(path, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tick := 0
	w.now = func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Second) }
	if err := w.CopyLines("stdout", strings.NewReader("a\nb\npartial")); err != nil {
		t.Fatal(err)
	}
	w.Write("stderr", []byte("oops\n"))
	w.Close()
	if err := w.Write("stdout", []byte("x")); err != ErrClosed {
		t.Errorf("write after close: %v", err)
	}
	r, _ := Open(path, 1, Options{})
	got := readAll(t, r)
	want := []Entry{
		{base.Add(1 * time.Second), "stdout", "a\n"},
		{base.Add(2 * time.Second), "stdout", "b\n"},
		{base.Add(3 * time.Second), "stdout", "partial"},
		{base.Add(4 * time.Second), "stderr", "oops\n"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if !got[i].Time.Equal(want[i].Time) || got[i].Stream != want[i].Stream || got[i].Log != want[i].Log {
			t.Errorf("entry %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	r, _ = Open(path, 1, Options{Tail: 1})
	if got := readAll(t, r); len(got) != 1 || got[0].Log != "oops\n" {
		t.Errorf("tail 1: %+v", got)
	}
	r, _ = Open(path, 1, Options{Since: base.Add(3 * time.Second)})
	if got := readAll(t, r); len(got) != 2 || got[0].Log != "partial" {
		t.Errorf("since: %+v", got)
	}
}

func TestLongLinesAreSplit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := NewWriter(path, 0, 1)
	long := strings.Repeat("x", MaxLine+10) + "\n"
	w.CopyLines("stdout", strings.NewReader(long))
	w.Close()
	r, _ := Open(path, 1, Options{})
	got := readAll(t, r)
	if len(got) != 2 || len(got[0].Log) != MaxLine || got[0].Log+got[1].Log != long {
		t.Errorf("split into %d entries", len(got))
	}
}

func TestRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := NewWriter(path, 1000, 3)
	for i := 0; i < 200; i++ {
		if err := w.Write("stdout", []byte(strings.Repeat("y", 20)+"\n")); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	for _, p := range []string{path, path + ".1", path + ".2"} {
		st, err := os.Stat(p)
		if err != nil || st.Size() > 1000 || st.Size() == 0 {
			t.Errorf("%s: %v", p, err)
		}
	}
	if _, err := os.Stat(path + ".3"); err == nil {
		t.Error("a fourth file was kept")
	}
	r, _ := Open(path, 3, Options{})
	if got := readAll(t, r); len(got) < 20 || len(got) > 3000/70+3 {
		t.Errorf("read %d entries across the rotated files", len(got))
	}
}

func TestFollowAcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, _ := NewWriter(path, 300, 2)
	w.Write("stdout", []byte("first\n"))
	done := make(chan struct{})
	r, err := Open(path, 2, Options{Follow: true, Poll: 5 * time.Millisecond, Done: func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for i := 0; i < 20; i++ {
			w.Write("stdout", []byte("line\n"))
			time.Sleep(2 * time.Millisecond)
		}
		w.Write("stdout", []byte("last\n"))
		w.Close()
		close(done)
	}()
	got := readAll(t, r)
	if len(got) != 22 || got[0].Log != "first\n" || got[21].Log != "last\n" {
		t.Errorf("followed %d entries: first %+v", len(got), got[0])
	}
}

// FuzzAppendJSONString checks the hand-written encoder against
// encoding/json: what it writes decodes to the input (invalid UTF-8
// becoming U+FFFD, as encoding/json does).
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "hello\n", "\x00\x1f\"\\<>&\u2028\u2029", "\xff\xfe", "é世界🙂", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as invalid JSON %s: %v", s, b, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if !utf8.ValidString(s) {
			// encoding/json replaces each invalid byte, not each run.
			var sb strings.Builder
			for i := 0; i < len(s); {
				r, n := utf8.DecodeRuneInString(s[i:])
				sb.WriteRune(r)
				i += n
			}
			want = sb.String()
		}
		if got != want {
			t.Fatalf("%q round-tripped to %q, want %q", s, got, want)
		}
		std, _ := json.Marshal(s)
		var viaStd string
		json.Unmarshal(std, &viaStd)
		if viaStd != got {
			t.Fatalf("%q: encoding/json gives %q, ours %q", s, viaStd, got)
		}
	})
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"t":"2026-01-02T03:04:05.5Z","stream":"stdout","log":"a\n"}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		Decode(line) // must not panic
	})
}
