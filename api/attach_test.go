package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	long := bytes.Repeat([]byte("x"), MaxFramePayload*2+10)
	tests := []struct {
		name  string
		write func(*FrameWriter) error
		want  []FrameType
		data  string // payloads joined
	}{
		{"stdin", func(w *FrameWriter) error { return w.Write(FrameStdin, []byte("ls\r")) }, []FrameType{FrameStdin}, "ls\r"},
		{"empty frame", func(w *FrameWriter) error { return w.Write(FrameCloseStdin, nil) }, []FrameType{FrameCloseStdin}, ""},
		{"split at the maximum", func(w *FrameWriter) error { return w.Write(FrameStdout, long) },
			[]FrameType{FrameStdout, FrameStdout, FrameStdout}, string(long)},
		{"stream writer", func(w *FrameWriter) error {
			_, err := io.WriteString(w.Stream(FrameStderr), "oops")
			return err
		}, []FrameType{FrameStderr}, "oops"},
		{"resize", func(w *FrameWriter) error { return w.Resize(40, 300) }, []FrameType{FrameResize}, "\x00\x28\x01\x2c"},
		{"exit", func(w *FrameWriter) error { return w.Exit(ExitResult{ExitCode: 7}) }, []FrameType{FrameExit}, `{"exit_code":7}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := tt.write(NewFrameWriter(&buf)); err != nil {
				t.Fatal(err)
			}
			r := NewFrameReader(&buf)
			var got []FrameType
			var data []byte
			for {
				typ, p, err := r.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, typ)
				data = append(data, p...)
			}
			if len(got) != len(tt.want) || string(data) != tt.data {
				t.Fatalf("frames %v with %d bytes, want %v with %d", got, len(data), tt.want, len(tt.data))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("frame %d is type %d, want %d", i, got[i], tt.want[i])
				}
			}
		})
	}
	rows, cols, err := ParseResize([]byte{0, 40, 1, 44})
	if err != nil || rows != 40 || cols != 300 {
		t.Errorf("ParseResize = %d, %d, %v", rows, cols, err)
	}
}

func TestFrameReaderRejects(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"unknown type", "\x09\x00\x00\x00\x00", ErrBadFrame},
		{"too long", "\x01\x00\x01\x00\x01", ErrBadFrame},
		{"short resize", "\x03\x00\x00\x00\x02ab", ErrBadFrame},
		{"close-stdin with payload", "\x04\x00\x00\x00\x01a", ErrBadFrame},
		{"cut header", "\x01\x00", io.ErrUnexpectedEOF},
		{"cut payload", "\x01\x00\x00\x00\x05abc", io.ErrUnexpectedEOF},
		{"end between frames", "", io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewFrameReader(strings.NewReader(tt.in)).Next()
			if !errors.Is(err, tt.want) {
				t.Errorf("Next() = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := ParseExit([]byte("{")); !errors.Is(err, ErrBadFrame) {
		t.Errorf("ParseExit of bad JSON: %v", err)
	}
}

// FuzzFrameReader: any byte stream gives frames within the limits or an
// error, never a panic, and a frame written back reads the same.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x03abc\x03\x00\x00\x00\x04\x00\x10\x00\x50"))
	f.Add([]byte("\x05\x00\x00\x00\x0f{\"exit_code\":1}"))
	f.Add([]byte("\x01\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewFrameReader(bytes.NewReader(in))
		for {
			typ, p, err := r.Next()
			if err != nil {
				return
			}
			if typ > FrameExit || len(p) > MaxFramePayload {
				t.Fatalf("frame type %d with %d bytes passed", typ, len(p))
			}
			var buf bytes.Buffer
			if err := NewFrameWriter(&buf).Write(typ, p); err != nil {
				t.Fatal(err)
			}
			typ2, p2, err := NewFrameReader(&buf).Next()
			if err != nil || typ2 != typ || !bytes.Equal(p, p2) {
				t.Fatalf("round trip of type %d: %d, %v", typ, typ2, err)
			}
		}
	})
}

// An attach through the client: the upgrade request, frames both ways,
// the exit frame; and a refusal comes back as a StatusError.
func TestAgentClientAttach(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/nodes/n1/agent/containers/gone/attach" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			io.WriteString(w, `{"error":"container gone is not running"}`)
			return
		}
		if r.Header.Get("Upgrade") != AttachProtocol || r.URL.Query().Get("rows") != "24" || r.URL.Query().Get("stdin") != "1" {
			http.Error(w, "bad request "+r.URL.String(), http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: berth-attach\r\n\r\n")
		brw.Flush()
		fr, fw := NewFrameReader(bufio.NewReader(brw)), NewFrameWriter(conn)
		for {
			typ, p, err := fr.Next()
			if err != nil {
				return
			}
			switch typ {
			case FrameStdin:
				fw.Write(FrameStdout, append([]byte("echo:"), p...))
			case FrameResize:
				rows, cols, _ := ParseResize(p)
				fw.Write(FrameStderr, []byte{byte(rows), byte(cols)})
			case FrameCloseStdin:
				fw.Exit(ExitResult{ExitCode: 42})
				return
			}
		}
	}))
	defer srv.Close()
	c, err := NewAgentClient(srv.URL, "n1")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Attach(context.Background(), "ctr", AttachOptions{Stdin: true, Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Stdin([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if err := s.Resize(3, 4); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	res, err := s.Copy(&out, &errOut)
	if err != nil || res.ExitCode != 42 || out.String() != "echo:hi" || errOut.String() != "\x03\x04" {
		t.Fatalf("Copy = %+v, %v; stdout %q, stderr %q", res, err, out.String(), errOut.String())
	}
	_, err = c.Attach(context.Background(), "gone", AttachOptions{})
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusConflict || !strings.Contains(se.Message, "not running") {
		t.Errorf("attach refused: %v", err)
	}
}
