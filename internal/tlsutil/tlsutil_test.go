package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// pki is a CA in a temporary directory that issues certificates as files.
type pki struct {
	t             testing.TB
	dir           string
	caCert, caKey []byte
	caFile        string
	n             int
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	cert, key, err := CreateCA(CAOptions{NotBefore: time.Now().Add(-30 * 24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: t.TempDir(), caCert: cert, caKey: key}
	p.caFile = p.write("ca.pem", cert)
	return p
}

func (p *pki) write(name string, b []byte) string {
	p.t.Helper()
	path := filepath.Join(p.dir, name)
	// Write and rename, as an operator's tooling would, so a reader never
	// sees half a file.
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// issue writes a certificate of role to name.pem and name-key.pem.
func (p *pki) issue(name string, opts CertOptions) Config {
	p.t.Helper()
	cert, key, err := CreateCert(p.caCert, p.caKey, opts)
	if err != nil {
		p.t.Fatal(err)
	}
	return Config{CAFile: p.caFile, CertFile: p.write(name+".pem", cert), KeyFile: p.write(name+"-key.pem", key), Role: opts.Role}
}

func (p *pki) source(name string, role Role) *Source {
	p.t.Helper()
	s, err := NewSource(p.issue(name, CertOptions{Role: role}))
	if err != nil {
		p.t.Fatal(err)
	}
	return s
}

// serve starts an HTTPS server whose listener accepts the given client
// roles, answering with the serial of its own certificate.
func serve(t testing.TB, src *Source, accept ...Role) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		ErrorLog: slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelDebug),
	}
	go func() { _ = srv.Serve(tls.NewListener(ln, src.ServerConfig(accept...))) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

func client(src *Source, peer ...Role) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: src.ClientConfig(peer...)}}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return string(b), fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

func TestMutualTLSRoles(t *testing.T) {
	p := newPKI(t)
	server := p.source("server", RoleServer)
	agent := p.source("agent", RoleAgent)
	cli := p.source("cli", RoleCLI)
	other := newPKI(t).source("stranger", RoleServer)

	apiAddr := serve(t, server, RoleServer, RoleAgent, RoleCLI) // a server's HTTP API
	raftAddr := serve(t, server, RoleServer)                    // Raft: servers only
	cliServes := serve(t, mustSource(t, p, "cli-as-server", RoleCLI), RoleCLI)
	agentAddr := serve(t, agent, RoleServer) // an agent's API

	tests := []struct {
		name    string
		client  *http.Client
		url     string
		wantErr bool
	}{
		{"cli to server API", client(cli, RoleServer), "https://" + apiAddr, false},
		{"agent to server API", client(agent, RoleServer), "https://" + apiAddr, false},
		{"server to server raft", client(server, RoleServer), "https://" + raftAddr, false},
		{"server to agent API", client(server, RoleAgent), "https://" + agentAddr, false},
		{"agent cannot join raft", client(agent, RoleServer), "https://" + raftAddr, true},
		{"cli cannot join raft", client(cli, RoleServer), "https://" + raftAddr, true},
		{"cli cannot call an agent", client(cli, RoleAgent), "https://" + agentAddr, true},
		{"cli certificate used as a server is refused", client(server, RoleServer), "https://" + cliServes, true},
		{"agent posing as server is refused", client(cli, RoleServer), "https://" + agentAddr, true},
		{"another CA's server is refused", client(other, RoleServer), "https://" + apiAddr, true},
		{"server of another CA is not trusted", client(cli, RoleServer), "https://" + serve(t, other, RoleCLI), true},
		{"no client certificate", &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, "https://" + apiAddr, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := get(tt.client, tt.url)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
		})
	}
}

func mustSource(t *testing.T, p *pki, name string, role Role) *Source {
	t.Helper()
	// A CLI certificate has no ServerAuth usage; a listener can still be
	// made to present it, which is exactly the impostor to refuse.
	return p.source(name, role)
}

func TestPlainHTTPToTLSServerIsRefused(t *testing.T) {
	p := newPKI(t)
	addr := serve(t, p.source("server", RoleServer), RoleCLI)
	body, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+addr)
	if err == nil {
		t.Fatalf("plain HTTP got an answer: %q", body)
	}
	// Raw bytes that are not a TLS handshake get no HTTP answer either.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	if len(b) > 0 && string(b[:4]) == "HTTP" && string(b[9:12]) == "200" {
		t.Fatalf("plain request answered 200: %q", b)
	}
}

func TestExpiredCertificateIsRefused(t *testing.T) {
	p := newPKI(t)
	server := p.source("server", RoleServer)
	addr := serve(t, server, RoleCLI, RoleServer)
	old := time.Now().Add(-72 * time.Hour)
	expired, err := NewSource(p.issue("expired-cli", CertOptions{Role: RoleCLI, Days: 1, NotBefore: old}))
	if err != nil {
		t.Fatalf("an expired certificate should still load (peers refuse it): %v", err)
	}
	if _, err := get(client(expired, RoleServer), "https://"+addr); err == nil {
		t.Fatal("server accepted an expired client certificate")
	}
	expiredSrv, err := NewSource(p.issue("expired-server", CertOptions{Role: RoleServer, Days: 1, NotBefore: old}))
	if err != nil {
		t.Fatal(err)
	}
	addr2 := serve(t, expiredSrv, RoleCLI)
	var x509Err x509.CertificateInvalidError
	_, err = get(client(p.source("cli", RoleCLI), RoleServer), "https://"+addr2)
	if err == nil {
		t.Fatal("client accepted an expired server certificate")
	}
	if !errors.As(err, &x509Err) || x509Err.Reason != x509.Expired {
		t.Fatalf("want an x509 expiry error, got %v", err)
	}
	// The same clock moved past the expiry refuses a certificate that was
	// valid a moment ago.
	cli := p.source("cli2", RoleCLI)
	if _, err := get(client(cli, RoleServer), "https://"+addr); err != nil {
		t.Fatalf("fresh certificate refused: %v", err)
	}
	server.now = func() time.Time { return time.Now().Add(400 * 24 * time.Hour) }
	if _, err := get(client(cli, RoleServer), "https://"+addr); err == nil {
		t.Fatal("server accepted a certificate past its NotAfter")
	}
}

func TestSourceRejectsWrongRoleAndBadFiles(t *testing.T) {
	p := newPKI(t)
	cfg := p.issue("cli", CertOptions{Role: RoleCLI})
	cfg.Role = RoleServer
	if _, err := NewSource(cfg); !errors.Is(err, ErrWrongRole) {
		t.Fatalf("CLI certificate loaded as a server: %v", err)
	}
	if _, err := NewSource(Config{CAFile: p.caFile, Role: RoleServer}); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("want ErrIncomplete, got %v", err)
	}
	stranger := newPKI(t).issue("s", CertOptions{Role: RoleServer})
	stranger.CAFile = p.caFile
	if _, err := NewSource(stranger); err == nil {
		t.Fatal("certificate of another CA loaded")
	}
	if _, _, err := CreateCert(p.caCert, p.caKey, CertOptions{Role: RoleAgent, DNSNames: []string{"server.global.berth"}}); !errors.Is(err, ErrReservedName) {
		t.Fatalf("a role name smuggled in as an additional name: %v", err)
	}
	if _, _, err := CreateCert(p.caCert, p.caKey, CertOptions{Role: "admin"}); !errors.Is(err, ErrBadRole) {
		t.Fatalf("want ErrBadRole, got %v", err)
	}
}

// TestSIGHUPRotationUnderLoad replaces the server's certificate and sends
// the process SIGHUP while clients keep sending requests over new and
// kept-alive connections: no request fails, and new connections see the
// new certificate.
func TestSIGHUPRotationUnderLoad(t *testing.T) {
	p := newPKI(t)
	cfg := p.issue("server", CertOptions{Role: RoleServer})
	src, err := NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.ReloadOnSIGHUP(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
	serial0 := src.cur.Load().cert.Leaf.SerialNumber

	var served atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		fmt.Fprint(w, "ok")
	})}
	go func() { _ = srv.Serve(tls.NewListener(ln, src.ServerConfig(RoleCLI))) }()
	defer srv.Close()
	url := "https://" + ln.Addr().String()
	cli := p.source("cli", RoleCLI)

	const workers, perWorker = 4, 150 // bounded load
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tr := &http.Transport{TLSClientConfig: cli.ClientConfig(RoleServer), DisableKeepAlives: w%2 == 0}
			c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
			for i := 0; i < perWorker; i++ {
				if _, err := get(c, url); err != nil {
					errs <- fmt.Errorf("worker %d request %d: %w", w, i, err)
					return
				}
			}
		}(w)
	}
	// Rotate twice while the load runs.
	for round := 0; round < 2; round++ {
		time.Sleep(30 * time.Millisecond)
		certPEM, keyPEM, err := CreateCert(p.caCert, p.caKey, CertOptions{Role: RoleServer})
		if err != nil {
			t.Fatal(err)
		}
		p.write("server.pem", certPEM)
		p.write("server-key.pem", keyPEM)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if served.Load() != workers*perWorker {
		t.Fatalf("served %d requests, want %d", served.Load(), workers*perWorker)
	}
	deadline := time.Now().Add(5 * time.Second)
	for src.cur.Load().cert.Leaf.SerialNumber.Cmp(serial0) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP did not reload the certificate")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// A new connection is served the rotated certificate.
	conn, err := tls.Dial("tcp", ln.Addr().String(), cli.ClientConfig(RoleServer))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	got := conn.ConnectionState().PeerCertificates[0].SerialNumber
	if got.Cmp(src.cur.Load().cert.Leaf.SerialNumber) != 0 || got.Cmp(serial0) == 0 {
		t.Fatalf("new connection got serial %s, want the rotated %s", got, src.cur.Load().cert.Leaf.SerialNumber)
	}
	// A reload of broken files keeps the current certificate.
	p.write("server-key.pem", []byte("garbage"))
	if err := src.Reload(); err == nil {
		t.Fatal("reload of a broken key succeeded")
	}
	if _, err := get(client(cli, RoleServer), url); err != nil {
		t.Fatalf("a failed reload broke the server: %v", err)
	}
}

func BenchmarkHandshake(b *testing.B) {
	p := newPKI(b)
	addr := serve(b, p.source("server", RoleServer), RoleCLI)
	cfg := p.source("cli", RoleCLI).ClientConfig(RoleServer)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := tls.Dial("tcp", addr, cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
