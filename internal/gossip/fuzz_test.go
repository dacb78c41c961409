package gossip

import (
	"testing"
)

// FuzzDecodeMeta feeds arbitrary member metadata (it comes from other
// hosts over the network): decoding must never panic, and metadata that
// round-trips must stay under memberlist's size limit.
func FuzzDecodeMeta(f *testing.F) {
	f.Add([]byte(`{"r":"server","h":"10.0.0.1:9470","ra":"10.0.0.1:9471","dc":"dc1","s":"s1"}`))
	f.Add([]byte(`{"r":"agent","n":"0b6c","l":true}`))
	f.Add([]byte(`{"r":1}`))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		m := decodeMeta(b)
		enc, err := m.encode()
		if err != nil {
			return // too large to advertise: refused, as it should be
		}
		if decodeMeta(enc) != m {
			t.Fatalf("metadata does not round-trip: %+v", m)
		}
	})
}
