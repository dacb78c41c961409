//go:build linux

package container

import (
	"context"
	"os/exec"
	"testing"

	"github.com/berth-dev/berth/runtime/reexec"
)

func init() { reexec.Register("berth-nop", func() {}) }

func BenchmarkScratchNop(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := reexec.Command("berth-nop").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScratchTrue(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkScratchHostNet(b *testing.B) {
	m := newManager(b)
	layer := busyboxLayer(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		id := testID(b)
		m.Create(&Spec{ID: id, Layers: []string{layer}, Args: []string{"/bin/true"}, Network: "host"})
		if err := m.Start(id); err != nil {
			b.Fatal(err)
		}
		m.Wait(ctx, id)
		m.Remove(id, false)
	}
}
