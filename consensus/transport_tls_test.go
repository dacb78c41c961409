package consensus

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/internal/tlsutil"
)

// tlsFiles writes a CA and one certificate of role, and returns a Source.
func tlsSource(t *testing.T, dir string, caCert, caKey []byte, name string, role tlsutil.Role) *tlsutil.Source {
	t.Helper()
	cert, key, err := tlsutil.CreateCert(caCert, caKey, tlsutil.CertOptions{Role: role})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tlsutil.Config{CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, name+".pem"),
		KeyFile: filepath.Join(dir, name+"-key.pem"), Role: role}
	for path, b := range map[string][]byte{cfg.CAFile: caCert, cfg.CertFile: cert, cfg.KeyFile: key} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, err := tlsutil.NewSource(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// TestRaftOverMutualTLS forms a three-server cluster over the TLS stream
// layer and commits through it; a fourth node holding an agent certificate
// is added to the configuration but can never take part: the servers
// refuse its connections and it never receives the log.
func TestRaftOverMutualTLS(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey, err := tlsutil.CreateCA(tlsutil.CAOptions{})
	if err != nil {
		t.Fatal(err)
	}
	open := func(name string, role tlsutil.Role) *Node {
		src := tlsSource(t, dir, caCert, caKey, name, role)
		n, err := Open(Config{
			NodeID: name, DataDir: filepath.Join(dir, name), BindAddr: "127.0.0.1:0",
			Logger:    testLogger(t),
			ServerTLS: src.ServerConfig(tlsutil.RoleServer), ClientTLS: src.ClientConfig(tlsutil.RoleServer),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Shutdown() })
		return n
	}
	names := []string{"s1", "s2", "s3"}
	var nodes []*Node
	var conf []raft.Server
	for _, name := range names {
		n := open(name, tlsutil.RoleServer)
		nodes = append(nodes, n)
		conf = append(conf, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(name), Address: raft.ServerAddress(n.Addr())})
	}
	for _, n := range nodes {
		if err := n.Bootstrap(conf); err != nil {
			t.Fatal(err)
		}
	}
	leader := waitLeader(t, nodes...)
	registerJob(t, leader, "over-tls")
	for _, n := range nodes {
		waitFor(t, "the job on every server", func() bool { return hasJob(n, "over-tls") })
	}

	impostor := open("a1", tlsutil.RoleAgent)
	if err := leader.AddVoter("a1", impostor.Addr()); err == nil {
		// With three healthy voters the change commits without a1; a1
		// itself must still never get the log.
		t.Log("a1 added to the configuration; checking it is shut out")
	}
	registerJob(t, waitLeader(t, nodes...), "after-impostor")
	time.Sleep(time.Second)
	if hasJob(impostor, "over-tls") || hasJob(impostor, "after-impostor") {
		t.Fatal("a node with an agent certificate received the Raft log")
	}
}
