package gossip

import (
	"os"
	"path/filepath"
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

// FuzzKeyringFile feeds arbitrary keyring files: loading must never panic,
// and a file that loads has a valid primary key and saves back to itself.
func FuzzKeyringFile(f *testing.F) {
	f.Add([]byte(`["K21BzKjSz5mp3AAEtLnuvl4g+0sqTgJzUhPY21pA5VY="]`))
	f.Add([]byte(`["AAAAAAAAAAAAAAAAAAAAAA==","K21BzKjSz5mp3AAEtLnuvl4g+0sqTgJzUhPY21pA5VY="]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`["c2hvcnQ="]`))
	f.Add([]byte(`{"k":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "keyring.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		kr, fromFile, err := LoadKeyring(path, "")
		if err != nil {
			return
		}
		if !fromFile || len(kr.Keys()) == 0 || kr.Keys()[0] != kr.Primary() {
			t.Fatalf("loaded keyring %v (primary %s, from file %v)", kr.Keys(), kr.Primary(), fromFile)
		}
		if _, err := ParseKey(kr.Primary()); err != nil {
			t.Fatalf("loaded an invalid primary key: %v", err)
		}
	})
}

// FuzzKeyringMessage feeds arbitrary user messages (they come from other
// members): handling must never panic.
func FuzzKeyringMessage(f *testing.F) {
	f.Add([]byte(`K{"id":"a/1","from":"a","op":"list"}`))
	f.Add([]byte(`k{"id":"a/1","from":"b","keys":["x"]}`))
	f.Add([]byte(`K{"op":"install","key":"!!"}`))
	f.Add([]byte{'K'})
	f.Fuzz(func(t *testing.T, b []byte) {
		p := &Pool{kr: keyringState{pending: map[string]chan keyringReply{}}}
		if len(b) > 0 {
			p.handleKeyringMsg(b)
		}
	})
}
