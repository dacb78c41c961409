package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/container"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// newNetEngine opens an engine whose bridge network has a name and subnet
// of its own, removed when the test ends.
func newNetEngine(t *testing.T) *Engine {
	t.Helper()
	testutil.RequireRoot(t)
	t.Setenv("BERTH_BRIDGE", fmt.Sprintf("be%x", rand.Uint32()))
	t.Setenv("BERTH_BRIDGE_SUBNET", fmt.Sprintf("10.195.%d.0/24", rand.IntN(250)+1))
	e := newEngine(t)
	if e.Network() == nil {
		t.Fatalf("no bridge network: %v", e.net.err)
	}
	t.Cleanup(func() {
		if err := e.Network().Remove(); err != nil {
			t.Errorf("remove bridge: %v", err)
		}
	})
	return e
}

func randomID() string {
	return fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
}

func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func TestPublishedPortReachableFromHostAndContainers(t *testing.T) {
	e := newNetEngine(t)
	hp := testutil.FreePort(t)
	id := randomID()
	task := &api.Task{Image: "busybox:latest", Command: []string{"sh", "-c",
		"mkdir -p /www && echo hello-from-berth > /www/index.html && exec httpd -f -p 80 -h /www"}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: id, Name: "web", Task: task,
		Ports: []api.AllocPort{{Value: hp, To: 80, Protocol: "tcp"}}}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Remove(id, true); err != nil {
			t.Errorf("remove: %v", err)
		}
	}()
	if err := e.Start(id); err != nil {
		t.Fatal(err)
	}
	gw := e.Network().Gateway().String()
	urls := []string{fmt.Sprintf("http://127.0.0.1:%d/", hp), fmt.Sprintf("http://%s:%d/", gw, hp)}
	var body string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if body, err = httpGet(urls[0]); err == nil {
			break
		}
	}
	for _, u := range urls {
		if body, err = httpGet(u); err != nil || strings.TrimSpace(body) != "hello-from-berth" {
			t.Fatalf("GET %s from the host: %q, %v", u, body, err)
		}
	}
	code, out := runTask(t, e, randomID(), &api.Task{Image: "busybox:latest",
		Command: []string{"wget", "-qO-", fmt.Sprintf("http://%s:%d/", gw, hp)}})
	if code != 0 || strings.TrimSpace(out) != "hello-from-berth" {
		t.Fatalf("wget from another container: exit %d, %q", code, out)
	}
	// The container's own published port, through the host (hairpin).
	var stdout strings.Builder
	rc, err := e.Containers.Exec(context.Background(), id, &container.Process{Args: []string{"wget", "-qO-", fmt.Sprintf("http://%s:%d/", gw, hp)}}, nil, &stdout, io.Discard)
	if err != nil || rc != 0 || strings.TrimSpace(stdout.String()) != "hello-from-berth" {
		t.Fatalf("hairpin wget: exit %d, %q, %v", rc, stdout.String(), err)
	}
}

func TestBridgeContainerFiles(t *testing.T) {
	e := newNetEngine(t)
	id := randomID()
	code, out := runTask(t, e, id, &api.Task{Image: "busybox:latest", Command: []string{"sh", "-c",
		"cat /etc/hosts; ls /sys/class/net; ip -4 -o addr show eth0; ip route"}})
	if code != 0 {
		t.Fatalf("exit %d: %s", code, out)
	}
	ep, err := e.Network().Endpoint(id)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{ep.Addr + "\t" + id[:12] + " t-" + id[:6], "eth0", "lo", "inet " + ep.Addr + "/", "default via " + ep.Gateway} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if err := e.Remove(id, true); err != nil {
		t.Fatal(err)
	}
	if ids, _ := e.Network().Endpoints(); len(ids) != 0 {
		t.Fatalf("endpoints left after remove: %v", ids)
	}
	if leases, _ := e.Network().IPAM().Leases(); len(leases) != 0 {
		t.Fatalf("leases left after remove: %v", leases)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err := netlink.LinkByName(ep.HostVeth); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("veth %s left after remove", ep.HostVeth)
		}
	}
	if _, err := os.Stat(ep.Netns); err == nil {
		t.Fatalf("netns file %s left after remove", ep.Netns)
	}
}

func TestNetworkNoneHasOnlyLoopback(t *testing.T) {
	e := newNetEngine(t)
	id := randomID()
	code, out := runTask(t, e, id, &api.Task{Image: "busybox:latest", Network: "none", Command: []string{"ls", "/sys/class/net"}})
	if code != 0 || strings.Join(strings.Fields(out), ",") != "lo" {
		t.Fatalf("--network none: exit %d, interfaces %q; want only lo", code, out)
	}
	if ids, _ := e.Network().Endpoints(); len(ids) != 0 {
		t.Fatalf("--network none made endpoints %v", ids)
	}
	_ = e.Remove(id, true)
}

// TestOutboundThroughNAT runs a server in a namespace standing for a
// machine outside the host (no route back to the bridge's subnet) and
// fetches from it inside a container.
func TestOutboundThroughNAT(t *testing.T) {
	e := newNetEngine(t)
	dir := t.TempDir()
	nsPath := filepath.Join(dir, "outside")
	if f, err := os.Create(nsPath); err != nil {
		t.Fatal(err)
	} else {
		f.Close()
	}
	third := rand.IntN(250) + 1
	hostIP, srvIP := fmt.Sprintf("10.194.%d.1", third), fmt.Sprintf("10.194.%d.2", third)
	vname := fmt.Sprintf("bo%x", rand.Uint32())
	var ln net.Listener
	err := func() error {
		errc := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			orig, _ := netns.Get()
			defer orig.Close()
			ns, err := netns.New() // also switches this thread into it
			if err != nil {
				errc <- err
				return
			}
			defer ns.Close()
			err = func() error {
				if err := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), nsPath, "", unix.MS_BIND, ""); err != nil {
					return err
				}
				veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0", TxQLen: -1}, PeerName: vname,
					PeerNamespace: netlink.NsFd(int(orig)), PeerTxQLen: -1}
				if err := netlink.LinkAdd(veth); err != nil {
					return err
				}
				eth, _ := netlink.LinkByName("eth0")
				if err := netlink.AddrAdd(eth, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(srvIP), Mask: net.CIDRMask(30, 32)}}); err != nil {
					return err
				}
				if err := netlink.LinkSetUp(eth); err != nil {
					return err
				}
				var err error
				ln, err = net.Listen("tcp", srvIP+":7002")
				return err
			}()
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread()
			}
			errc <- err
		}()
		return <-errc
	}()
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(vname); err == nil {
			netlink.LinkDel(l)
		}
		unix.Unmount(nsPath, unix.MNT_DETACH)
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(vname)
	if err != nil {
		t.Fatal(err)
	}
	netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(hostIP), Mask: net.CIDRMask(30, 32)}})
	netlink.LinkSetUp(l)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		fmt.Fprintf(w, "outside saw %s\n", host)
	})}
	go srv.Serve(ln)
	defer srv.Close()
	id := randomID()
	code, out := runTask(t, e, id, &api.Task{Image: "busybox:latest", Command: []string{"wget", "-qO-", "http://" + srvIP + ":7002/"}})
	defer e.Remove(id, true)
	// Only a masqueraded packet gets an answer: the outside has no route
	// to the bridge's subnet, and it sees the host's address.
	if code != 0 || strings.TrimSpace(out) != "outside saw "+hostIP {
		t.Fatalf("container to outside: exit %d, %q; want the server to see %s", code, out, hostIP)
	}
}

func TestUserNetworkByContainerName(t *testing.T) {
	e := newNetEngine(t)
	name := fmt.Sprintf("tn%x", rand.Uint32())
	info, err := e.Networks().Create(name, fmt.Sprintf("10.192.%d.0/24", rand.IntN(250)+1))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := e.Networks().Remove(name); err != nil {
			t.Errorf("remove network: %v", err)
		}
	}()
	id := randomID()
	task := &api.Task{Image: "busybox:latest", Network: name, NetworkAliases: []string{"alias" + name}, Command: []string{"sh", "-c",
		"mkdir -p /www && echo hello-by-name > /www/index.html && exec httpd -f -p 80 -h /www"}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: id, Name: "web" + name, Task: task}); err != nil {
		t.Fatal(err)
	}
	defer e.Remove(id, true)
	if err := e.Start(id); err != nil {
		t.Fatal(err)
	}
	cid := randomID()
	code, out := runTask(t, e, cid, &api.Task{Image: "busybox:latest", Network: name, Command: []string{"sh", "-c",
		"cat /etc/resolv.conf; for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://web" + name + "/ && wget -qO- http://alias" + name + "/ && exit 0; sleep 0.2; done; exit 1"}})
	defer e.Remove(cid, true)
	if code != 0 || !strings.Contains(out, "nameserver "+info.Gateway) || !strings.Contains(out, "hello-by-name") {
		t.Fatalf("wget by name and alias on network %s: exit %d, %q", name, code, out)
	}
}

func TestContainerNetworkMode(t *testing.T) {
	e := newNetEngine(t)
	id := randomID()
	task := &api.Task{Image: "busybox:latest", Command: []string{"sh", "-c",
		"mkdir -p /www && echo shared-ns > /www/index.html && exec httpd -f -p 8081 -h /www"}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: id, Name: "first", Task: task}); err != nil {
		t.Fatal(err)
	}
	defer e.Remove(id, true)
	if err := e.Start(id); err != nil {
		t.Fatal(err)
	}
	sid := randomID()
	code, out := runTask(t, e, sid, &api.Task{Image: "busybox:latest", Network: "container:" + id[:12], Command: []string{"sh", "-c",
		"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8081/ && exit 0; sleep 0.2; done; exit 1"}})
	if code != 0 || strings.TrimSpace(out) != "shared-ns" {
		t.Fatalf("container:%s: exit %d, %q", id[:12], code, out)
	}
	if err := e.Remove(sid, true); err != nil {
		t.Fatal(err)
	}
	// The sharer's removal leaves the owner's endpoint alone.
	if _, err := e.Network().Endpoint(id); err != nil {
		t.Fatalf("owner's endpoint after the sharer's removal: %v", err)
	}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: randomID(), Task: &api.Task{Image: "busybox:latest", Network: "container:nope", Command: []string{"true"}}}); !errors.Is(err, ErrBadNetwork) {
		t.Fatalf("container:nope: %v, want ErrBadNetwork", err)
	}
}

// TestAllocationTasksShareANamespace: tasks of one allocation share their
// network namespace and its published ports; it goes with the last one.
func TestAllocationTasksShareANamespace(t *testing.T) {
	e := newNetEngine(t)
	alloc := fmt.Sprintf("%08x-0000-4000-8000-%012x", rand.Uint32(), rand.Uint64()&0xffffffffffff)
	hp := testutil.FreePort(t)
	ports := []api.AllocPort{{Value: hp, To: 8082, Protocol: "tcp"}}
	web := randomID()
	task := &api.Task{Name: "web", Image: "busybox:latest", Command: []string{"sh", "-c",
		"mkdir -p /www && echo one-alloc > /www/index.html && exec httpd -f -p 8082 -h /www"}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: web, Name: "web", AllocID: alloc, Task: task, Ports: ports}); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(web); err != nil {
		t.Fatal(err)
	}
	side := randomID()
	sideTask := &api.Task{Name: "side", Image: "busybox:latest", Command: []string{"sh", "-c",
		"for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://127.0.0.1:8082/ && exit 0; sleep 0.2; done; exit 1"}}
	if _, err := e.Create(context.Background(), &TaskRequest{ID: side, Name: "side", AllocID: alloc, Task: sideTask, Ports: ports}); err != nil {
		t.Fatal(err)
	}
	if err := e.Start(side); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if st, err := e.Wait(ctx, side); err != nil || st.Code != 0 {
		t.Fatalf("sidecar could not reach the web task on localhost: %+v, %v", st, err)
	}
	key := "alloc-" + alloc + ".bridge"
	if rules, _ := e.Network().PortRules(key); len(rules) != 1 {
		t.Fatalf("published port rules of the allocation: %q, want 1", rules)
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", hp)); err != nil || strings.TrimSpace(body) != "one-alloc" {
		t.Fatalf("published port: %q, %v", body, err)
	}
	// An agent restart (a new engine on the same data) keeps the shared
	// endpoint of the live containers.
	if _, err := Open(filepath.Dir(e.metaDir)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Network().Endpoint(key); err != nil {
		t.Fatalf("endpoint gone after a restart: %v", err)
	}
	if err := e.Remove(side, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Network().Endpoint(key); err != nil {
		t.Fatalf("endpoint gone while the web task still runs: %v", err)
	}
	if err := e.Remove(web, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Network().Endpoint(key); err == nil {
		t.Fatal("endpoint left after the allocation's last container")
	}
	if rules, _ := e.Network().PortRules(key); len(rules) != 0 {
		t.Fatalf("rules left: %q", rules)
	}
}
