package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newTestManager makes a Manager on a bridge and subnet of its own, and
// removes the bridge and its rules when the test ends.
func newTestManager(t testing.TB) *Manager {
	t.Helper()
	testutil.RequireRoot(t)
	n := rand.IntN(250) + 1
	m, err := New(Config{
		DataDir: t.TempDir(),
		Bridge:  fmt.Sprintf("bt%x", rand.Uint32()),
		Subnet:  fmt.Sprintf("10.197.%d.0/24", n),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Remove(); err != nil {
			t.Errorf("remove network: %v", err)
		}
	})
	return m
}

// inNetns runs fn on a thread inside the namespace at path, then puts the
// thread back (or throws it away).
func inNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// serve answers every connection on l with "hello " and the peer's
// address.
func serve(t testing.TB, l net.Listener) {
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello %s\n", c.RemoteAddr().(*net.TCPAddr).IP)
			c.Close()
		}
	}()
}

func fetch(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestEndpointAddressesAndRoute(t *testing.T) {
	m := newTestManager(t)
	ep, err := m.Setup(context.Background(), Request{ID: "c1", Name: "web", Hostname: "c1host"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown("c1")
	if !m.Subnet().Contains(netip.MustParseAddr(ep.Addr)) || ep.Gateway != m.Gateway().String() {
		t.Fatalf("endpoint %+v not in %s", ep, m.Subnet())
	}
	err = inNetns(ep.Netns, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		var names []string
		for _, l := range links {
			names = append(names, l.Attrs().Name)
			if l.Attrs().Flags&net.FlagUp == 0 {
				return fmt.Errorf("%s is down", l.Attrs().Name)
			}
		}
		if strings.Join(names, ",") != "lo,eth0" {
			return fmt.Errorf("links %v, want lo and eth0", names)
		}
		eth, _ := netlink.LinkByName("eth0")
		addrs, _ := netlink.AddrList(eth, unix.AF_INET)
		if len(addrs) != 1 || addrs[0].IP.String() != ep.Addr {
			return fmt.Errorf("eth0 addresses %v, want %s", addrs, ep.Addr)
		}
		routes, _ := netlink.RouteList(nil, unix.AF_INET)
		for _, r := range routes {
			if r.Dst == nil || r.Dst.IP.IsUnspecified() {
				if r.Gw.String() == ep.Gateway {
					return nil
				}
			}
		}
		return fmt.Errorf("no default route via %s in %v", ep.Gateway, routes)
	})
	if err != nil {
		t.Fatal(err)
	}
	hosts, _ := os.ReadFile(ep.Hosts)
	if !strings.Contains(string(hosts), ep.Addr+"\tc1host web") {
		t.Fatalf("hosts file %q lacks the container's names", hosts)
	}
	if _, err := os.Stat(ep.ResolvConf); err != nil {
		t.Fatal(err)
	}
	// The host reaches the container through the bridge.
	var l net.Listener
	if err := inNetns(ep.Netns, func() (err error) { l, err = net.Listen("tcp", ":7000"); return }); err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	got, err := fetch(ep.Addr + ":7000")
	if err != nil || got != "hello "+ep.Gateway {
		t.Fatalf("host to container: %q, %v; want hello from %s", got, err, ep.Gateway)
	}
}

// outside makes a namespace standing for a machine beyond the host: a veth
// to the root namespace with a /30 of its own and no route back to the
// containers' subnet, and a TCP server on it. It returns the server's
// address and the host's address on that link.
func outside(t *testing.T) (server, hostSide string) {
	t.Helper()
	name := fmt.Sprintf("bo%x", rand.Uint32())
	path := filepath.Join(t.TempDir(), "outside")
	if err := newNetns(path); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(path)
	defer f.Close()
	third := rand.IntN(250) + 1
	hostIP := fmt.Sprintf("10.196.%d.1", third)
	srvIP := fmt.Sprintf("10.196.%d.2", third)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, TxQLen: -1}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(f.Fd())), PeerTxQLen: -1}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			netlink.LinkDel(l)
		}
		unix.Unmount(path, unix.MNT_DETACH)
	})
	l, _ := netlink.LinkByName(name)
	netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(hostIP), Mask: net.CIDRMask(30, 32)}})
	netlink.LinkSetUp(l)
	var ln net.Listener
	err := inNetns(path, func() error {
		eth, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(srvIP), Mask: net.CIDRMask(30, 32)}}); err != nil {
			return err
		}
		if err := netlink.LinkSetUp(eth); err != nil {
			return err
		}
		ln, err = net.Listen("tcp", srvIP+":7001")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	return srvIP + ":7001", hostIP
}

func TestOutboundMasquerade(t *testing.T) {
	m := newTestManager(t)
	srv, hostSide := outside(t)
	ep, err := m.Setup(context.Background(), Request{ID: "out1"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown("out1")
	var got string
	err = inNetns(ep.Netns, func() (err error) { got, err = fetch(srv); return })
	// The outside namespace has no route to the subnet: an answer proves
	// the masquerade, and it sees the host's address.
	if err != nil || got != "hello "+hostSide {
		t.Fatalf("container to outside: %q, %v; want hello from %s", got, err, hostSide)
	}
}

func TestPublishedPorts(t *testing.T) {
	m := newTestManager(t)
	hp := testutil.FreePort(t)
	hp2 := testutil.FreePort(t)
	ep, err := m.Setup(context.Background(), Request{ID: "pub1", Ports: []Port{
		{HostPort: hp, ContainerPort: 80},
		{HostIP: "127.0.0.1", HostPort: hp2, ContainerPort: 80, Protocol: "tcp"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var l net.Listener
	if err := inNetns(ep.Netns, func() (err error) { l, err = net.Listen("tcp", ":80"); return }); err != nil {
		t.Fatal(err)
	}
	serve(t, l)
	other, err := m.Setup(context.Background(), Request{ID: "pub2"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown("pub2")
	tests := []struct {
		name, from, addr string
	}{
		{name: "host loopback", addr: fmt.Sprintf("127.0.0.1:%d", hp)},
		{name: "host loopback bound", addr: fmt.Sprintf("127.0.0.1:%d", hp2)},
		{name: "host bridge address", addr: fmt.Sprintf("%s:%d", ep.Gateway, hp)},
		{name: "other container via bridge address", from: other.Netns, addr: fmt.Sprintf("%s:%d", ep.Gateway, hp)},
		{name: "hairpin", from: ep.Netns, addr: fmt.Sprintf("%s:%d", ep.Gateway, hp)},
	}
	if ip := uplinkAddr(); ip != "" {
		tests = append(tests, struct{ name, from, addr string }{name: "host uplink address", addr: fmt.Sprintf("%s:%d", ip, hp)},
			struct{ name, from, addr string }{name: "other container via uplink address", from: other.Netns, addr: fmt.Sprintf("%s:%d", ip, hp)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			var err error
			if tt.from == "" {
				got, err = fetch(tt.addr)
			} else {
				err = inNetns(tt.from, func() (err error) { got, err = fetch(tt.addr); return })
			}
			if err != nil || !strings.HasPrefix(got, "hello ") {
				t.Fatalf("fetch %s: %q, %v", tt.addr, got, err)
			}
		})
	}
	rules, err := m.PortRules("pub1")
	if err != nil || len(rules) != 2 {
		t.Fatalf("rules %q, %v; want 2", rules, err)
	}
	if err := m.Teardown("pub1"); err != nil {
		t.Fatal(err)
	}
	if rules, _ := m.PortRules("pub1"); len(rules) != 0 {
		t.Fatalf("rules left after teardown: %q", rules)
	}
	if _, err := fetch(fmt.Sprintf("127.0.0.1:%d", hp)); err == nil {
		t.Fatal("published port still answers after teardown")
	}
}

// uplinkAddr is an IPv4 address of the link with the default route, or "".
func uplinkAddr() string {
	routes, _ := netlink.RouteList(nil, unix.AF_INET)
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
				if addrs, _ := netlink.AddrList(l, unix.AF_INET); len(addrs) > 0 {
					return addrs[0].IP.String()
				}
			}
		}
	}
	return ""
}

func TestPublishedUDPPort(t *testing.T) {
	m := newTestManager(t)
	hp := testutil.FreePort(t)
	ep, err := m.Setup(context.Background(), Request{ID: "udp1", Ports: []Port{{HostPort: hp, ContainerPort: 5353, Protocol: "udp"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Teardown("udp1")
	var pc net.PacketConn
	if err := inNetns(ep.Netns, func() (err error) { pc, err = net.ListenPacket("udp4", ":5353"); return }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	c, err := net.Dial("udp4", fmt.Sprintf("127.0.0.1:%d", hp))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "echo ping" {
		t.Fatalf("udp through the published port: %q, %v", buf[:n], err)
	}
}

func TestSweepRemovesOrphanedNamespaces(t *testing.T) {
	testutil.RequireRoot(t)
	root := t.TempDir()
	data := filepath.Join(t.TempDir(), "gone")
	m, err := New(Config{DataDir: data, NetnsDir: root, Bridge: fmt.Sprintf("bt%x", rand.Uint32()), Subnet: "10.197.254.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	ns := m.netnsPath("orphan")
	if err := newNetns(ns); err != nil {
		t.Fatal(err)
	}
	// A second data directory that still exists keeps its namespaces.
	keep, err := New(Config{DataDir: t.TempDir(), NetnsDir: root, Bridge: "bt0keep", Subnet: "10.197.253.0/24"})
	if err != nil {
		t.Fatal(err)
	}
	kept := keep.netnsPath("kept")
	if err := newNetns(kept); err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Unmount(kept, unix.MNT_DETACH) }()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	sweepNetns(root)
	if _, err := os.Stat(filepath.Dir(ns)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("orphaned namespace directory still there: %v", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), ns) {
		t.Fatal("orphaned namespace still mounted")
	}
	if !strings.Contains(string(mounts), kept) {
		t.Fatal("a live data directory's namespace was swept")
	}
}

// leftovers lists what container id could leave behind.
func leftovers(t testing.TB, m *Manager, id string, veth bool) []string {
	var out []string
	// The kernel deletes the veth pair when the namespace dies, shortly
	// after Teardown returns.
	for deadline := time.Now().Add(5 * time.Second); veth && LinkExists(hostVethName(id)); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			out = append(out, "veth "+hostVethName(id))
			break
		}
	}
	if _, err := os.Stat(m.netnsPath(id)); err == nil {
		out = append(out, "netns file")
	}
	if _, err := os.Stat(m.endpointPath(id)); err == nil {
		out = append(out, "endpoint record")
	}
	if _, err := os.Stat(filepath.Join(filesDir(m.cfg), id)); err == nil {
		out = append(out, "generated files")
	}
	if rules, _ := m.PortRules(id); len(rules) > 0 {
		out = append(out, fmt.Sprintf("%d rules", len(rules)))
	}
	leases, _ := m.ipam.Leases()
	for _, l := range leases {
		if l.Owner == id {
			out = append(out, "lease "+l.Addr.String())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), m.netnsPath(id)+" ") {
		out = append(out, "netns mount")
	}
	return out
}

func TestTeardownIsIdempotent(t *testing.T) {
	m := newTestManager(t)
	if err := m.Teardown("never-made"); err != nil {
		t.Fatalf("teardown of nothing: %v", err)
	}
	if _, err := m.Setup(context.Background(), Request{ID: "t1", Ports: []Port{{HostPort: testutil.FreePort(t), ContainerPort: 1}}}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := m.Teardown("t1"); err != nil {
			t.Fatalf("teardown %d: %v", i, err)
		}
	}
	if l := leftovers(t, m, "t1", true); len(l) > 0 {
		t.Fatalf("left after teardown: %v", l)
	}
}

func TestReconcileAfterRestart(t *testing.T) {
	m := newTestManager(t)
	for _, id := range []string{"live", "dead1", "dead2"} {
		if _, err := m.Setup(context.Background(), Request{ID: id, Ports: []Port{{HostPort: testutil.FreePort(t), ContainerPort: 80}}}); err != nil {
			t.Fatal(err)
		}
	}
	// A new Manager on the same state stands for a restarted agent.
	m2, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m2.Reconcile([]string{"live"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dead1", "dead2"} {
		if l := leftovers(t, m2, id, true); len(l) > 0 {
			t.Errorf("%s left after reconcile: %v", id, l)
		}
	}
	if l := leftovers(t, m2, "live", false); len(l) != 6 || !LinkExists(hostVethName("live")) {
		t.Errorf("live endpoint lost parts in reconcile: has only %v", l)
	}
	// A firewall reload drops its DNAT rule; the next start puts it back.
	if err := m2.deletePortRules("live"); err != nil {
		t.Fatal(err)
	}
	m3, err := New(m.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Reconcile([]string{"live"}); err != nil {
		t.Fatal(err)
	}
	if rules, _ := m3.PortRules("live"); len(rules) != 1 {
		t.Fatalf("rules of the live endpoint after reconcile: %q", rules)
	}
	// Its address stays leased: a new container gets another one.
	live, _ := m2.Endpoint("live")
	ep, err := m2.Setup(context.Background(), Request{ID: "new"})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Addr == live.Addr {
		t.Fatalf("new container got the live one's address %s", ep.Addr)
	}
	if err := m2.Reconcile(nil); err != nil {
		t.Fatal(err)
	}
}

func TestNoLeaksAfterManyCycles(t *testing.T) {
	if testing.Short() {
		t.Skip("200 setup/teardown cycles; skipped with -short")
	}
	m := newTestManager(t)
	port := testutil.FreePort(t)
	for i := 0; i < 200; i++ {
		id := fmt.Sprint("cyc", i)
		req := Request{ID: id}
		if i%10 == 0 {
			req.Ports = []Port{{HostPort: port, ContainerPort: 80}}
		}
		if _, err := m.Setup(context.Background(), req); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := m.Teardown(id); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if l := leftovers(t, m, id, false); len(l) > 0 {
			t.Fatalf("cycle %d left %v", i, l)
		}
	}
	for i := 0; i < 200; i++ {
		if l := leftovers(t, m, fmt.Sprint("cyc", i), true); len(l) > 0 {
			t.Fatalf("cycle %d left %v", i, l)
		}
	}
	if leases, _ := m.ipam.Leases(); len(leases) > 0 {
		t.Fatalf("leases left: %v", leases)
	}
	ents, _ := os.ReadDir(m.nsDir)
	if len(ents) > 1 { // the owner file
		t.Fatalf("%d netns files left", len(ents))
	}
	bin, _ := iptablesBin()
	if out, err := execOut(bin, "-w", "-t", "nat", "-S", chainDNAT); err != nil || strings.Contains(out, "berth:cyc") {
		t.Fatalf("DNAT rules left: %s %v", out, err)
	}
}

func execOut(name string, args ...string) (string, error) {
	b, err := execCommand(name, args...)
	return string(b), err
}

func TestConcurrentSetupTeardown(t *testing.T) {
	m := newTestManager(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	ports := make([]int, 8)
	for w := range ports {
		ports[w] = testutil.FreePort(t)
	}
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				req := Request{ID: id}
				if i == 0 {
					req.Ports = []Port{{HostPort: ports[w], ContainerPort: 80}}
				}
				if _, err := m.Setup(context.Background(), req); err != nil {
					errs <- err
					return
				}
				if err := m.Teardown(id); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if leases, _ := m.ipam.Leases(); len(leases) != 0 {
		t.Fatalf("leases left: %v", leases)
	}
}

func TestBadEndpointIDs(t *testing.T) {
	m := newTestManager(t)
	for _, id := range []string{"", "..", "../x", "a/b", ".hidden"} {
		if _, err := m.Setup(context.Background(), Request{ID: id}); !errors.Is(err, ErrBadName) {
			t.Errorf("Setup(%q) = %v, want ErrBadName", id, err)
		}
		if err := m.Teardown(id); err != nil {
			t.Errorf("Teardown(%q) = %v", id, err)
		}
	}
	if _, err := os.Stat(filesDir(m.cfg)); err != nil {
		t.Fatalf("files directory damaged: %v", err)
	}
}
