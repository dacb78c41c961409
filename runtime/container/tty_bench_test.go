//go:build linux

package container

import (
	"testing"

	"github.com/berth-dev/berth/api"
)

// BenchmarkTTYRoundTrip is one typed line through an attached shim: a
// stdin frame in, the terminal's echo and cat's copy of it back out.
func BenchmarkTTYRoundTrip(b *testing.B) {
	m := newManager(b)
	spec := testSpec(b, "")
	spec.Args, spec.Tty = []string{"cat"}, true
	if _, err := m.Create(spec); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Remove(spec.ID, true) }) //nolint:errcheck
	if err := m.Start(spec.ID); err != nil {
		b.Fatal(err)
	}
	conn, err := m.Attach(spec.ID)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	fw, fr := api.NewFrameWriter(conn), api.NewFrameReader(conn)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := fw.Write(api.FrameStdin, []byte("x\n")); err != nil {
			b.Fatal(err)
		}
		// "x\r\n" echoed by the terminal, then "x\r\n" from cat.
		got := 0
		for got < 6 {
			_, p, err := fr.Next()
			if err != nil {
				b.Fatal(err)
			}
			got += len(p)
		}
	}
}
