package gossip

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func startEncrypted(t *testing.T, name, dir, key string, join ...string) (*Pool, error) {
	t.Helper()
	kr, _, err := LoadKeyring(filepath.Join(dir, name+".keyring.json"), key)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Start(Config{Name: name, BindAddr: "127.0.0.1", Join: join, Meta: Meta{Role: RoleAgent},
		Logger: testLogger(t), Keyring: kr, RetryJoinInterval: 200 * time.Millisecond})
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = p.Shutdown() })
	return p, nil
}

func mustKey(t *testing.T) string {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func alive(p *Pool) int {
	n := 0
	for _, m := range p.Members() {
		if m.Status == StatusAlive {
			n++
		}
	}
	return n
}

// TestNodeWithoutKeyCannotJoin: a member with no key, and one with a wrong
// key, never join an encrypted pool, and the pool never lists them.
func TestNodeWithoutKeyCannotJoin(t *testing.T) {
	dir := t.TempDir()
	key := mustKey(t)
	a, err := startEncrypted(t, "a", dir, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := startEncrypted(t, "b", dir, key, a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and b to see each other", func() bool { return alive(a) == 2 && alive(b) == 2 })

	plain := startPool(t, "plain", Meta{Role: RoleAgent})
	if _, err := plain.Join([]string{a.Addr()}); err == nil {
		t.Error("a member without the key joined an encrypted pool")
	}
	wrong, err := startEncrypted(t, "wrong", dir, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wrong.Join([]string{a.Addr()}); err == nil {
		t.Error("a member with the wrong key joined")
	}
	time.Sleep(time.Second)
	for _, p := range []*Pool{a, b} {
		for _, m := range p.Members() {
			if m.Name == "plain" || m.Name == "wrong" {
				t.Errorf("%s lists %s (%s)", p.Name(), m.Name, m.Status)
			}
		}
	}
	if _, ok := plain.Lookup("a"); ok {
		t.Error("the keyless member learned of a")
	}
}

// TestKeyringRotation rotates the pool's key with install, use and remove
// while the members keep seeing one another, then restarts a member from
// its persisted keyring and checks it rejoins with the new key only.
func TestKeyringRotation(t *testing.T) {
	dir := t.TempDir()
	k1, k2 := mustKey(t), mustKey(t)
	a, _ := startEncrypted(t, "a", dir, k1)
	b, _ := startEncrypted(t, "b", dir, k1, a.Addr())
	c, err := startEncrypted(t, "c", dir, k1, a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pools := []*Pool{a, b, c}
	waitFor(t, 5*time.Second, "3 members", func() bool { return alive(a) == 3 && alive(b) == 3 && alive(c) == 3 })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.KeyringOp(ctx, KeyRemove, k1); err == nil {
		t.Fatal("removing the primary key succeeded")
	}
	steps := []struct{ op, key string }{{KeyInstall, k2}, {KeyUse, k2}, {KeyRemove, k1}}
	for _, st := range steps {
		resp, err := b.KeyringOp(ctx, st.op, st.key)
		if err != nil {
			t.Fatalf("%s: %v (%+v)", st.op, err, resp)
		}
		if resp.Members != 3 || resp.Answered != 3 {
			t.Fatalf("%s reached %d of %d members", st.op, resp.Answered, resp.Members)
		}
		// No downtime: every member still sees the others alive.
		time.Sleep(700 * time.Millisecond)
		for _, p := range pools {
			if n := alive(p); n != 3 {
				t.Fatalf("after %s, %s sees %d alive members", st.op, p.Name(), n)
			}
		}
	}
	list, err := c.KeyringOp(ctx, KeyList, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Keys) != 1 || list.Keys[k2] != 3 || list.PrimaryKeys[k2] != 3 {
		t.Fatalf("list after rotation = %+v, want only the new key on 3 members", list)
	}

	// c restarts from its keyring file: it has k2 only, ignores the old
	// --encrypt k1 it was first started with, and rejoins.
	_ = c.Shutdown()
	c2, err := startEncrypted(t, "c", dir, k1, a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if got := c2.Keyring().Keys(); len(got) != 1 || got[0] != k2 {
		t.Fatalf("restarted keyring = %v, want [k2]", got)
	}
	waitFor(t, 10*time.Second, "c to rejoin with the rotated key", func() bool { return alive(a) == 3 && alive(c2) == 3 })

	// A member still on the old key is shut out.
	old, err := startEncrypted(t, "old", t.TempDir(), k1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a member with the removed key joined")
	}
}

func TestKeyringErrors(t *testing.T) {
	if _, err := ParseKey("c2hvcnQ="); !errors.Is(err, ErrBadKey) {
		t.Fatalf("short key: %v", err)
	}
	p := startPool(t, "plain", Meta{Role: RoleAgent})
	if _, err := p.KeyringOp(context.Background(), KeyList, ""); !errors.Is(err, ErrNoEncryption) {
		t.Fatalf("list on an unencrypted pool: %v", err)
	}
	kr, _, err := LoadKeyring(filepath.Join(t.TempDir(), "k.json"), "")
	if err != nil || kr != nil {
		t.Fatalf("no file and no key: %v, %v", kr, err)
	}
}
