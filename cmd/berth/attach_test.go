package main

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParseDetachKeys(t *testing.T) {
	tests := []struct {
		name, spec string
		want       string
		bad        bool
	}{
		{"default", "", "\x10\x11", false},
		{"docker's default spelled out", "ctrl-p,ctrl-q", "\x10\x11", false},
		{"upper case and a character", "CTRL-A,x", "\x01x", false},
		{"ctrl with a symbol", "ctrl-@,ctrl-_", "\x00\x1f", false},
		{"two characters in one key", "ab", "", true},
		{"unknown ctrl key", "ctrl-1", "", true},
		{"empty key", "ctrl-p,", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDetachKeys(tt.spec)
			if tt.bad {
				if err == nil {
					t.Fatalf("%q parsed as %q", tt.spec, got)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("parseDetachKeys(%q) = %q, %v; want %q", tt.spec, got, err, tt.want)
			}
		})
	}
}

// oneByOne hands out its input a byte per Read, as a terminal does keys.
type oneByOne struct{ s string }

func (o *oneByOne) Read(p []byte) (int, error) {
	if o.s == "" {
		return 0, io.EOF
	}
	p[0], o.s = o.s[0], o.s[1:]
	return 1, nil
}

func TestCopyInputDetach(t *testing.T) {
	keys := []byte{0x10, 0x11}
	tests := []struct {
		name, in, sent string
		detached       bool
	}{
		{"plain input", "ls\r", "ls\r", false},
		{"detach keys", "ab\x10\x11cd", "ab", true},
		{"ctrl-p then another key is typed as is", "a\x10b\x10\x10\x11", "a\x10b\x10", true},
		{"a lone ctrl-p at the end is held", "x\x10", "x", false},
	}
	for _, tt := range tests {
		for _, split := range []bool{false, true} {
			var sent strings.Builder
			var in io.Reader = strings.NewReader(tt.in)
			if split {
				in = &oneByOne{tt.in}
			}
			err := copyInput(func(p []byte) error { sent.Write(p); return nil }, in, keys)
			if errors.Is(err, errDetached) != tt.detached || sent.String() != tt.sent {
				t.Errorf("%s (split %v): sent %q, err %v; want %q, detached %v", tt.name, split, sent.String(), err, tt.sent, tt.detached)
			}
		}
	}
	var sent strings.Builder
	if err := copyInput(func(p []byte) error { sent.Write(p); return nil }, strings.NewReader("\x10\x11"), nil); !errors.Is(err, io.EOF) || sent.String() != "\x10\x11" {
		t.Errorf("without detach keys: sent %q, %v", sent.String(), err)
	}
}
