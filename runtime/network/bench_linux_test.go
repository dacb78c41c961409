package network

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkNetworkSetupTeardown times what the network adds to one
// container: from an ID to a namespace with its address, route and files,
// and back to nothing.
func BenchmarkNetworkSetupTeardown(b *testing.B) {
	m := newTestManager(b)
	// The first Setup makes the bridge and its rules; that is per node,
	// not per container.
	if _, err := m.Setup(context.Background(), Request{ID: "warm"}); err != nil {
		b.Fatal(err)
	}
	if err := m.Teardown("warm"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		id := fmt.Sprint("b", i)
		if _, err := m.Setup(context.Background(), Request{ID: id, Name: "n", Hostname: "h"}); err != nil {
			b.Fatal(err)
		}
		if err := m.Teardown(id); err != nil {
			b.Fatal(err)
		}
	}
}
