package image

import (
	"errors"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	tests := []struct {
		name, in, want string
		err            string // substring of the error; "" for success
	}{
		{"short", "busybox", "busybox:latest", ""},
		{"tag", "busybox:1.36", "busybox:1.36", ""},
		{"library", "library/busybox", "busybox:latest", ""},
		{"docker.io", "docker.io/library/busybox:1.0", "busybox:1.0", ""},
		{"index.docker.io", "index.docker.io/foo/bar", "foo/bar:latest", ""},
		{"user repo", "foo/bar:v1", "foo/bar:v1", ""},
		{"registry port", "localhost:5000/app:v1", "localhost:5000/app:v1", ""},
		{"registry no tag", "localhost:5000/app", "localhost:5000/app:latest", ""},
		{"localhost", "localhost/app", "localhost/app:latest", ""},
		{"domain", "ghcr.io/org/team/app:2.0-rc.1", "ghcr.io/org/team/app:2.0-rc.1", ""},
		{"separators", "a_b__c-d.e:x", "a_b__c-d.e:x", ""},
		{"empty", "", "", "empty"},
		{"upper", "BusyBox", "", "lower case"},
		{"space", "busy box", "", "path component"},
		{"trailing space", "busybox ", "", "white space"},
		{"bad tag", "busybox:-x", "", "tag"},
		{"long tag", "busybox:" + strings.Repeat("a", 129), "", "tag"},
		{"digest", "busybox@sha256:" + strings.Repeat("a", 64), "", "digest"},
		{"bad digest", "busybox@sha256:xyz", "", "digest"},
		{"image ID", strings.Repeat("ab", 32), "", "image ID"},
		{"double slash", "foo//bar", "", "path component"},
		{"leading dot", ".foo", "", "path component"},
		{"missing repo", ":tag", "", "missing repository"},
		{"bad host", "-bad.io/app", "", "registry host"},
		{"too long", strings.Repeat("a", 256), "", "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseName(tt.in)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseName(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.err) {
				t.Fatalf("ParseName(%q) = %q, %v; want an ErrInvalidName saying %q", tt.in, got, err, tt.err)
			}
		})
	}
}

func TestFullName(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":               "docker.io/library/busybox:latest",
		"foo/bar:v1":            "docker.io/foo/bar:v1",
		"localhost:5000/app:v1": "localhost:5000/app:v1",
		"busybox@sha256:" + strings.Repeat("0", 64): "docker.io/library/busybox@sha256:" + strings.Repeat("0", 64),
	} {
		if got, err := FullName(in); err != nil || got != want {
			t.Errorf("FullName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
