package consensus

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/berth-dev/berth/api"
)

func testToken(accessor, hash, typ string, policies ...string) *ACLToken {
	return &ACLToken{ACLToken: api.ACLToken{AccessorID: accessor, Type: typ, Policies: policies}, SecretHash: hash}
}

// TestACLStateMachine drives the ACL and secret entries through the FSM:
// bootstrap succeeds once, refused requests change nothing, a token's
// secret never reaches the state, and a snapshot restores all of it.
func TestACLStateMachine(t *testing.T) {
	f := NewFSM(testLogger(t))
	st := f.State()
	if st.ACLBootstrapped() {
		t.Fatal("a new store is bootstrapped")
	}
	boot := testToken("acc-1", "hash-1", api.ACLTokenManagement)
	boot.SecretID = "must-not-be-stored"
	mustApply(t, f, 1, ACLBootstrapRequestType, &ACLBootstrapRequest{Token: boot})
	if !st.ACLBootstrapped() {
		t.Fatal("bootstrap did not turn ACLs on")
	}
	err := f.ApplyEntry(2, ACLBootstrapRequestType, &ACLBootstrapRequest{Token: testToken("acc-2", "hash-2", api.ACLTokenManagement)})
	if !errors.Is(err, ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v, want ErrACLBootstrapped", err)
	}
	if tk, _ := st.ACLTokenByAccessor(nil, "acc-2"); tk != nil {
		t.Fatal("a refused bootstrap stored its token")
	}
	tk, err := st.ACLTokenBySecretHash("hash-1")
	if err != nil || tk == nil || tk.AccessorID != "acc-1" || tk.SecretID != "" || tk.CreateIndex != 1 {
		t.Fatalf("token by hash = %+v, %v", tk, err)
	}

	pol := &api.ACLPolicy{Name: "web", Rules: []api.ACLRule{{JobPrefix: "web-", Capabilities: []string{api.CapRead}}}}
	mustApply(t, f, 3, ACLPolicyUpsertRequestType, &ACLPolicyUpsertRequest{Policies: []*api.ACLPolicy{pol}})
	mustApply(t, f, 4, ACLTokenUpsertRequestType, &ACLTokenUpsertRequest{Tokens: []*ACLToken{testToken("acc-3", "hash-3", api.ACLTokenClient, "web")}})
	mustApply(t, f, 5, SecretUpsertRequestType, &SecretUpsertRequest{Secret: &Secret{Secret: api.Secret{Name: "db"}, Sealed: []byte("sealed-bytes"), KeyID: "k1"}})

	for _, tc := range []struct {
		name string
		typ  MessageType
		req  any
		want error
	}{
		{"token hash reused", ACLTokenUpsertRequestType, &ACLTokenUpsertRequest{Tokens: []*ACLToken{testToken("acc-9", "hash-3", api.ACLTokenClient)}}, ErrInvalidRequest},
		{"token type unknown", ACLTokenUpsertRequestType, &ACLTokenUpsertRequest{Tokens: []*ACLToken{testToken("acc-9", "hash-9", "root")}}, ErrInvalidRequest},
		{"delete unknown policy", ACLPolicyDeleteRequestType, &ACLPolicyDeleteRequest{Names: []string{"web", "nope"}}, ErrACLPolicyNotFound},
		{"delete unknown token", ACLTokenDeleteRequestType, &ACLTokenDeleteRequest{AccessorIDs: []string{"nope"}}, ErrACLTokenNotFound},
		{"delete unknown secret", SecretDeleteRequestType, &SecretDeleteRequest{Name: "nope"}, ErrSecretNotFound},
		{"secret without value", SecretUpsertRequestType, &SecretUpsertRequest{Secret: &Secret{Secret: api.Secret{Name: "x"}}}, ErrInvalidRequest},
		{"policy without name", ACLPolicyUpsertRequestType, &ACLPolicyUpsertRequest{Policies: []*api.ACLPolicy{{}}}, ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := st.LatestIndex()
			if err := f.ApplyEntry(10, tc.typ, tc.req); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if st.LatestIndex() != before {
				t.Fatal("a refused request moved the state index")
			}
		})
	}
	if p, _ := st.ACLPolicyByName(nil, "web"); p == nil {
		t.Fatal("a refused delete removed a policy")
	}

	snap := persist(t, f)
	if bytes.Contains(snap, []byte("must-not-be-stored")) {
		t.Fatal("the snapshot holds a token secret")
	}
	g := NewFSM(testLogger(t))
	if err := g.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	gs := g.State()
	if !gs.ACLBootstrapped() {
		t.Fatal("restore lost the bootstrap")
	}
	toks, _ := gs.ACLTokens(nil)
	pols, _ := gs.ACLPolicies(nil)
	secs, _ := gs.Secrets(nil)
	if len(toks) != 2 || len(pols) != 1 || len(secs) != 1 || string(secs[0].Sealed) != "sealed-bytes" {
		t.Fatalf("restored %d tokens, %d policies, %d secrets", len(toks), len(pols), len(secs))
	}
	if tk, _ := gs.ACLTokenBySecretHash("hash-3"); tk == nil || tk.Policies[0] != "web" {
		t.Fatalf("restored token by hash = %+v", tk)
	}

	mustApply(t, f, 11, ACLTokenDeleteRequestType, &ACLTokenDeleteRequest{AccessorIDs: []string{"acc-3"}})
	mustApply(t, f, 12, SecretDeleteRequestType, &SecretDeleteRequest{Name: "db"})
	mustApply(t, f, 13, ACLPolicyDeleteRequestType, &ACLPolicyDeleteRequest{Names: []string{"web"}})
	if tk, _ := st.ACLTokenBySecretHash("hash-3"); tk != nil {
		t.Fatal("deleted token still found by hash")
	}
	if st.LatestIndex() != 13 {
		t.Fatalf("latest index = %d, want 13", st.LatestIndex())
	}
}
