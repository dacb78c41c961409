//go:build e2e

package e2e

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestTLSCluster runs three servers and an agent on four simulated hosts
// with mutual TLS everywhere and encrypted gossip, as the README's "Mutual
// TLS and gossip encryption" says, and runs a container end to end
// through them: CLI → server (https), server ↔ server (Raft, forwarding),
// agent → server (register, heartbeat, allocations) and server → agent
// (image import, logs). Then it checks what must be refused, rotates the
// gossip key with the cluster up, and rotates the agent's certificate with
// SIGHUP.
func TestTLSCluster(t *testing.T) {
	tn := newTestNet(t, 4)
	pki := tn.EnableTLS()
	key := strings.TrimSpace(tn.CLI("", "operator", "gossip", "keyring", "generate").Stdout)
	if key == "" {
		t.Fatal("keyring generate printed nothing")
	}
	var joins []string
	for i := 0; i < 3; i++ {
		joins = append(joins, "--join", tn.Hosts[i].IP+":9472")
	}
	for i := 0; i < 3; i++ {
		h := tn.Hosts[i]
		args := []string{"server", "--bind", h.IP, "--node-name", fmt.Sprintf("s%d", i+1), "--bootstrap-expect", "3",
			"--data-dir", filepath.Join(h.Dir, "server"), "--encrypt", key}
		args = append(append(args, joins...), tn.SecurityArgs("server")...)
		tn.Start(h, "server", args...)
	}
	ah := tn.Hosts[3]
	agentArgs := append([]string{"agent", "--bind", ah.IP, "--node-name", "a1", "--data-dir", filepath.Join(ah.Dir, "agent"),
		"--encrypt", key}, joins...)
	agent := tn.Start(ah, "agent", append(agentArgs, tn.SecurityArgs("agent")...)...)

	addr := "https://" + tn.Hosts[1].IP + ":9470"
	Eventually(t, 60*time.Second, "three voters and a ready node", func() error {
		r := tn.CLI(addr, "operator", "raft", "list-peers")
		if r.Code != 0 || strings.Count(r.Stdout, "true") != 3 || !strings.Contains(r.Stdout, "leader") {
			return fmt.Errorf("list-peers: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		r = tn.CLI(addr, "node", "ls")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ready") {
			return fmt.Errorf("node ls: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		return nil
	})
	// Talk to a follower from here on, so every write is forwarded to the
	// leader server-to-server over TLS.
	for _, l := range strings.Split(tn.CLI(addr, "operator", "raft", "list-peers").Stdout, "\n") {
		if f := strings.Fields(l); len(f) == 4 && f[2] == "follower" {
			addr = "https://" + strings.Split(f[1], ":")[0] + ":9470"
			break
		}
	}
	t.Logf("client talks to follower %s", addr)
	tar := testutil.BusyboxTar(t)
	if r := tn.CLI(addr, "image", "import", "--node", "a1", tar, "busybox:latest"); r.Code != 0 {
		t.Fatalf("image import through the proxy: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
	}
	runHi := func(what string) {
		t.Helper()
		r := tn.CLI(addr, "run", "--rm", "busybox", "echo", "Hi over TLS")
		if r.Code != 0 || !strings.Contains(r.Stdout, "Hi over TLS") {
			t.Fatalf("%s: berth run: exit %d: %q %s", what, r.Code, r.Stdout, r.Stderr)
		}
	}
	runHi("first run")

	t.Run("refused", func(t *testing.T) {
		// Plain HTTP to the TLS API gets no answer from berth.
		if r := RunCLI(t, tn.bin, "http://"+tn.Hosts[0].IP+":9470", "node", "ls"); r.Code == 0 {
			t.Errorf("plain HTTP was served: %s", r.Stdout)
		}
		// No client certificate.
		r := RunCLIEnv(t, tn.bin, addr, []string{"BERTH_CACERT=" + pki.CA}, "node", "ls")
		if r.Code == 0 || !strings.Contains(r.Stderr, "certificate") {
			t.Errorf("a client without a certificate was served: exit %d %s%s", r.Code, r.Stdout, r.Stderr)
		}
		// The agent's API takes servers only: the CLI certificate, and
		// the agent's own, are refused there.
		for _, role := range []string{"cli", "agent"} {
			kp, err := tls.LoadX509KeyPair(pki.Cert(role), pki.Key(role))
			if err != nil {
				t.Fatal(err)
			}
			c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				Certificates: []tls.Certificate{kp}, InsecureSkipVerify: true}}}
			resp, err := c.Get("https://" + ah.IP + ":9473/v1/health")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Errorf("the agent API served a %s certificate: %d %s", role, resp.StatusCode, b)
			}
		}
		// A server that presents a CLI certificate is not trusted by the
		// CLI (the role, not the CA, is what is wrong).
		r = RunCLIEnv(t, tn.bin, addr, []string{"BERTH_TLS_SERVER_NAME=cli.global.berth"}, "node", "ls")
		if r.Code == 0 {
			t.Errorf("CLI accepted a server under the CLI role name")
		}
	})

	t.Run("gossip without the key cannot join", func(t *testing.T) {
		// A real agent with valid certificates but no gossip key, on the
		// first server's host: the pool never lists it, so it never finds
		// a server to register with.
		h := tn.Hosts[0]
		args := []string{"agent", "--bind", h.IP, "--node-name", "intruder", "--http-port", "9483", "--gossip-port", "9482",
			"--data-dir", filepath.Join(h.Dir, "intruder"), "--join", tn.Hosts[1].IP + ":9472"}
		p := tn.Start(h, "intruder", append(args, tn.SecurityArgs("agent")...)...)
		time.Sleep(4 * time.Second)
		if p.Exited() {
			t.Fatalf("the keyless agent exited: %s", tailLines(p.Log(), 10))
		}
		for _, cmd := range [][]string{{"server", "members"}, {"node", "ls"}} {
			r := tn.CLI(addr, cmd...)
			if r.Code != 0 || strings.Contains(r.Stdout, "intruder") {
				t.Fatalf("%s: exit %d, lists the keyless agent:\n%s%s", strings.Join(cmd, " "), r.Code, r.Stdout, r.Stderr)
			}
		}
		tn.Kill(p)
	})

	t.Run("gossip keyring rotation", func(t *testing.T) {
		newKey := strings.TrimSpace(tn.CLI("", "operator", "gossip", "keyring", "generate").Stdout)
		for _, step := range [][]string{{"install", newKey}, {"use", newKey}, {"remove", key}} {
			r := tn.CLI(addr, "operator", "gossip", "keyring", step[0], step[1])
			if r.Code != 0 || !strings.Contains(r.Stdout, "on 4 of 4 members") {
				t.Fatalf("keyring %s: exit %d: %s%s", step[0], r.Code, r.Stdout, r.Stderr)
			}
		}
		r := tn.CLI(addr, "operator", "gossip", "keyring", "list")
		if r.Code != 0 || !strings.Contains(r.Stdout, newKey) || strings.Contains(r.Stdout, key) || !strings.Contains(r.Stdout, "4/4") {
			t.Fatalf("keyring list after rotation: exit %d: %s%s", r.Code, r.Stdout, r.Stderr)
		}
		// The cluster kept working through it.
		runHi("after the key rotation")
		r = tn.CLI(addr, "server", "members")
		if r.Code != 0 || strings.Count(r.Stdout, "alive") != 4 {
			t.Fatalf("members after rotation: %s%s", r.Stdout, r.Stderr)
		}
	})

	t.Run("agent certificate rotation with SIGHUP", func(t *testing.T) {
		cert, keyFile := pki.Issue(t, tn.bin, "agent", "--days", "30")
		// The agent was started with the -0 files: put the new ones in
		// their place and signal it.
		copyFile(t, cert, pki.Cert("agent"))
		copyFile(t, keyFile, pki.Key("agent"))
		if err := syscall.Kill(agent.cmd.Process.Pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 10*time.Second, "the agent reloads its certificate", func() error {
			if !strings.Contains(agent.Log(), "TLS certificate reloaded") {
				return fmt.Errorf("no reload in the agent's log")
			}
			return nil
		})
		if agent.Exited() {
			t.Fatal("SIGHUP stopped the agent")
		}
		runHi("after the agent's certificate rotation")
	})
}

// TestTLSServerRotationUnderLoad replaces a running server's certificate
// and sends it SIGHUP while clients keep calling it, over kept-alive and
// fresh connections: no request fails, and new connections get the new
// certificate.
func TestTLSServerRotationUnderLoad(t *testing.T) {
	c := StartCluster(t, 1, ClusterOptions{TLS: true, LogLevel: "info"})
	s := c.WaitLeader(30 * time.Second)
	pki := c.PKI

	const workers, perWorker = 4, 200 // bounded load
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	var done atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: pki.ClientTLS(t), DisableKeepAlives: w%2 == 0}
			cl := &http.Client{Timeout: 10 * time.Second, Transport: tr}
			for i := 0; i < perWorker; i++ {
				resp, err := cl.Get(s.HTTPAddr() + "/v1/status/leader")
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d request %d: %w", w, i, err)
					return
				}
				done.Add(1)
			}
		}(w)
	}
	// Rotate once a third of the load has gone through.
	for done.Load() < workers*perWorker/3 {
		time.Sleep(5 * time.Millisecond)
	}
	cert, key := pki.Issue(t, c.Bin, "server")
	copyFile(t, cert, pki.Cert("server"))
	copyFile(t, key, pki.Key("server"))
	if err := syscall.Kill(s.Pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := done.Load(); n != workers*perWorker {
		t.Fatalf("%d of %d requests succeeded", n, workers*perWorker)
	}
	want, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, "new connections get the rotated certificate", func() error {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(s.HTTPAddr(), "https://"), pki.ClientTLS(t))
		if err != nil {
			return err
		}
		defer conn.Close()
		got := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conn.ConnectionState().PeerCertificates[0].Raw})
		if !bytes.Equal(got, want) {
			return fmt.Errorf("the server still presents its old certificate")
		}
		return nil
	})
	if !s.Running() {
		t.Fatal("SIGHUP stopped the server")
	}
}
