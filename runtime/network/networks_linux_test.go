package network

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

func newTestNetworks(t *testing.T) *Networks {
	t.Helper()
	testutil.RequireRoot(t)
	dir := t.TempDir()
	// No nameserver: unknown names never leave the machine.
	rc := filepath.Join(dir, "resolv.conf")
	os.WriteFile(rc, []byte("options ndots:0\n"), 0o644)
	n, err := OpenNetworks(Config{DataDir: filepath.Join(dir, "data"), Bridge: fmt.Sprintf("bt%x", rand.Uint32()),
		Subnet: fmt.Sprintf("10.197.%d.0/24", rand.IntN(250)+1), ResolvConf: rc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.Reconcile(nil)
		if _, err := n.Prune(); err != nil {
			t.Errorf("prune: %v", err)
		}
		n.Default().Remove()
	})
	return n
}

// askDNS sends one A query for name from inside the namespace at nsPath
// to server and returns the rcode and addresses.
func askDNS(t *testing.T, nsPath, server, name string) (int, []netip.Addr) {
	t.Helper()
	var c net.Conn
	if err := inNetns(nsPath, func() (err error) { c, err = net.Dial("udp", server+":53"); return }); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(dnsQuery(42, name, dnsTypeA)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	k, err := c.Read(buf)
	if err != nil {
		t.Fatalf("DNS query for %s: %v", name, err)
	}
	return dnsReply(t, buf[:k])
}

func TestUserNetworksResolveByNameAndIsolate(t *testing.T) {
	n := newTestNetworks(t)
	x := rand.IntN(120) + 1
	if _, err := n.Create("neta", fmt.Sprintf("10.193.%d.0/24", x)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Create("netb", fmt.Sprintf("10.193.%d.0/24", x+121)); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Create("neta", ""); !errors.Is(err, ErrNetworkExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := n.Create("bridge", ""); !errors.Is(err, ErrBadName) {
		t.Fatalf("create bridge: %v", err)
	}
	if _, err := n.Create("netc", fmt.Sprintf("10.193.%d.0/25", x)); !errors.Is(err, ErrBadSubnet) {
		t.Fatalf("overlapping subnet: %v", err)
	}
	a, _ := n.Get("neta")
	b, _ := n.Get("netb")
	ctx := context.Background()
	hp := testutil.FreePort(t)
	alpha, err := a.Setup(ctx, Request{ID: "c1", Name: "alpha", Aliases: []string{"db"}, Ports: []Port{{HostPort: hp, ContainerPort: 7003}}})
	if err != nil {
		t.Fatal(err)
	}
	beta, err := a.Setup(ctx, Request{ID: "c2", Name: "beta"})
	if err != nil {
		t.Fatal(err)
	}
	gamma, err := b.Setup(ctx, Request{ID: "c3", Name: "gamma"})
	if err != nil {
		t.Fatal(err)
	}
	if rc, _ := os.ReadFile(beta.ResolvConf); string(rc) != "options ndots:0\nnameserver "+beta.Gateway+"\n" {
		t.Fatalf("resolv.conf on a user network: %q", rc)
	}
	tests := []struct {
		name     string
		from     *Endpoint
		query    string
		rcode    int
		wantAddr string
	}{
		{name: "by name", from: beta, query: "alpha", wantAddr: alpha.Addr},
		{name: "by alias", from: beta, query: "db", wantAddr: alpha.Addr},
		{name: "own name", from: alpha, query: "beta", wantAddr: beta.Addr},
		{name: "other network's name is unknown", from: gamma, query: "alpha", rcode: rcodeFail},
		{name: "not across networks", from: beta, query: "gamma", rcode: rcodeFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, addrs := askDNS(t, tt.from.Netns, tt.from.Gateway, tt.query)
			if rc != tt.rcode || (tt.wantAddr != "" && (len(addrs) != 1 || addrs[0].String() != tt.wantAddr)) {
				t.Fatalf("%s: rcode %d %v, want %d %s", tt.query, rc, addrs, tt.rcode, tt.wantAddr)
			}
		})
	}
	// alpha serves; beta (same network) reaches it, gamma (other network)
	// does not.
	var l net.Listener
	if err := inNetns(alpha.Netns, func() (err error) { l, err = net.Listen("tcp", ":7003"); return }); err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	var got string
	if err := inNetns(beta.Netns, func() (err error) { got, err = fetch(alpha.Addr + ":7003"); return }); err != nil || got != "hello "+beta.Addr {
		t.Fatalf("same network: %q, %v", got, err)
	}
	err = inNetns(gamma.Netns, func() error {
		c, err := net.DialTimeout("tcp", alpha.Addr+":7003", time.Second)
		if err == nil {
			c.Close()
			return errors.New("connected")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("a container on another network reached alpha: %v", err)
	}
	// Nor does one on the default bridge, in either direction.
	d1, err := n.Default().Setup(ctx, Request{ID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	var dl net.Listener
	if err := inNetns(d1.Netns, func() (err error) { dl, err = net.Listen("tcp", ":7004"); return }); err != nil {
		t.Fatal(err)
	}
	serve(t, dl)
	for _, c := range []struct{ from, to string }{{d1.Netns, alpha.Addr + ":7003"}, {alpha.Netns, d1.Addr + ":7004"}} {
		err := inNetns(c.from, func() error {
			conn, err := net.DialTimeout("tcp", c.to, time.Second)
			if err == nil {
				conn.Close()
				return errors.New("connected")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s reached across networks: %v", c.to, err)
		}
	}
	// Published ports stay open to every network.
	if err := inNetns(gamma.Netns, func() (err error) { got, err = fetch(fmt.Sprintf("%s:%d", gamma.Gateway, hp)); return }); err != nil || !strings.HasPrefix(got, "hello ") {
		t.Fatalf("other network to alpha's published port: %q, %v", got, err)
	}
	if err := n.Teardown("d1"); err != nil {
		t.Fatal(err)
	}
	if err := n.Remove("neta"); !errors.Is(err, ErrNetworkInUse) {
		t.Fatalf("remove in use: %v", err)
	}
	for _, id := range []string{"c1", "c2", "c3"} {
		if err := n.Teardown(id); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := a.dns.lookup("alpha"); ok {
		t.Fatal("alpha still resolves after teardown")
	}
	if err := n.Remove("neta"); err != nil {
		t.Fatal(err)
	}
	if LinkExists(a.Bridge()) {
		t.Fatalf("bridge %s left after remove", a.Bridge())
	}
	if _, err := n.Get("neta"); !errors.Is(err, ErrNoNetwork) {
		t.Fatalf("get after remove: %v", err)
	}
	pruned, err := n.Prune()
	if err != nil || len(pruned) != 1 || pruned[0] != "netb" {
		t.Fatalf("prune = %v, %v; want [netb]", pruned, err)
	}
	if infos := n.List(); len(infos) != 1 || infos[0].Name != "bridge" {
		t.Fatalf("networks left: %+v", infos)
	}
}

func TestUserNetworksPersist(t *testing.T) {
	n := newTestNetworks(t)
	info, err := n.Create("keep", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Default().Setup(context.Background(), Request{ID: "x"}); err != nil {
		t.Fatal(err)
	}
	n2, err := OpenNetworks(n.Default().cfg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := n2.Inspect("keep")
	if err != nil || got.Subnet != info.Subnet || got.Bridge != info.Bridge || !got.DNS {
		t.Fatalf("after reopen: %+v, %v; want %+v", got, err, info)
	}
	if d, _ := n2.Inspect("bridge"); len(d.Containers) != 1 || d.Containers[0] != "x" {
		t.Fatalf("default bridge after reopen: %+v", d)
	}
	if err := n2.Teardown("x"); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Prune(); err != nil {
		t.Fatal(err)
	}
	// n stands for the agent before the restart: it must not clean up
	// what n2 already removed.
	n.mu.Lock()
	delete(n.user, "keep")
	n.mu.Unlock()
}
