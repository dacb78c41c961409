package testutil

import (
	"archive/tar"
	"io"
	"os"
	"testing"
)

func TestBusyboxTarHasShellAndUsers(t *testing.T) {
	path := BusyboxTar(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[hdr.Name] = true
		if hdr.Name == "bin/sh" && (hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != "busybox") {
			t.Errorf("bin/sh: type %c link %q, want a symlink to busybox", hdr.Typeflag, hdr.Linkname)
		}
	}
	for _, want := range []string{"bin/busybox", "bin/sh", "etc/passwd", "etc/group", "tmp/"} {
		if !seen[want] {
			t.Errorf("tar lacks %s", want)
		}
	}
}
