package consensus

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestServerTombstones(t *testing.T) {
	f := NewFSM(nil)
	mustApply(t, f, 1, ServerTombstoneRequestType, &ServerTombstoneRequest{ServerID: "s3"})
	mustApply(t, f, 2, ServerTombstoneRequestType, &ServerTombstoneRequest{ServerID: "s2"})
	mustApply(t, f, 3, ServerTombstoneRequestType, &ServerTombstoneRequest{ServerID: "s3"}) // again: newer index
	got := f.State().ServerTombstones()
	if len(got) != 2 || got[0] != (ServerTombstone{"s2", 2}) || got[1] != (ServerTombstone{"s3", 3}) {
		t.Fatalf("tombstones %v", got)
	}
	if err := f.ApplyEntry(4, ServerTombstoneRequestType, &ServerTombstoneRequest{}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("tombstone without an ID: %v", err)
	}

	// A snapshot keeps them.
	b := NewFSM(nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(persist(t, f)))); err != nil {
		t.Fatal(err)
	}
	if restored := b.State().ServerTombstones(); len(restored) != 2 || restored[1] != got[1] {
		t.Fatalf("restored tombstones %v, want %v", restored, got)
	}

	// Clearing one leaves the other; clearing an absent one is a no-op.
	for _, fsm := range []*FSM{f, b} {
		mustApply(t, fsm, 5, ServerTombstoneRequestType, &ServerTombstoneRequest{ServerID: "s3", Clear: true})
		mustApply(t, fsm, 6, ServerTombstoneRequestType, &ServerTombstoneRequest{ServerID: "s9", Clear: true})
		if left := fsm.State().ServerTombstones(); len(left) != 1 || left[0].ServerID != "s2" {
			t.Fatalf("after clear: %v", left)
		}
	}
	if !bytes.Equal(persist(t, f), persist(t, b)) {
		t.Fatal("restored and replayed states differ")
	}
}
