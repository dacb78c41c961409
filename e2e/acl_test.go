//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

var aclSecretRe = regexp.MustCompile(`Secret ID\s+=\s+([0-9a-f]{64})`)

// TestACLServerAndAgent runs a real server and agents with ACLs on: the
// CLI works with BERTH_TOKEN and is refused without, an agent without a
// node token cannot register while one with it can, a privileged task
// needs the privileged right, and the audit log records who did what.
func TestACLServerAndAgent(t *testing.T) {
	c := StartCluster(t, 1, ClusterOptions{})
	s := c.Servers[0]
	cfg := filepath.Join(t.TempDir(), "config.json")
	cli := func(token string, args ...string) CLIResult {
		t.Helper()
		return RunCLIEnv(t, c.Bin, s.HTTPAddr(), []string{"BERTH_TOKEN=" + token, "BERTH_CONFIG=" + cfg}, args...)
	}
	must := func(token string, args ...string) CLIResult {
		t.Helper()
		r := cli(token, args...)
		if r.Code != 0 {
			t.Fatalf("berth %s: exit %d\n%s%s", strings.Join(args, " "), r.Code, r.Stdout, r.Stderr)
		}
		return r
	}
	secretOf := func(r CLIResult) string {
		t.Helper()
		m := aclSecretRe.FindStringSubmatch(r.Stdout)
		if m == nil {
			t.Fatalf("no secret in %q", r.Stdout)
		}
		return m[1]
	}

	mgmt := secretOf(must("", "acl", "bootstrap"))
	if r := cli("", "acl", "bootstrap"); r.Code == 0 || !strings.Contains(r.Stderr, "already bootstrapped") {
		t.Fatalf("second bootstrap: %d %s", r.Code, r.Stderr)
	}
	if r := cli("", "node", "ls"); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("node ls without a token: %d %s", r.Code, r.Stderr)
	}
	must(mgmt, "node", "ls")

	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	must(mgmt, "acl", "policy", "apply", "agents", write("agents.yaml", "rules:\n  - capabilities: [node]\n"))
	must(mgmt, "acl", "policy", "apply", "web", write("web.yaml", "rules:\n  - job_prefix: web-\n    capabilities: [read, submit]\n"))
	nodeTok := secretOf(must(mgmt, "acl", "token", "create", "--name", "agent", "--policy", "agents"))
	webTok := secretOf(must(mgmt, "acl", "token", "create", "--name", "web", "--policy", "web"))

	// An agent without a token is refused; one with the node token joins.
	startAgent(t, c, s, "no-token", "")
	startAgent(t, c, s, "with-token", nodeTok)
	Eventually(t, 30*time.Second, "agent with-token ready", func() error {
		r := cli(mgmt, "node", "ls")
		if !strings.Contains(r.Stdout, "with-token") || !strings.Contains(r.Stdout, "ready") {
			return fmt.Errorf("node ls:\n%s", r.Stdout)
		}
		return nil
	})
	if r := must(mgmt, "node", "ls"); strings.Contains(r.Stdout, "no-token") {
		t.Fatalf("the agent without a token registered:\n%s", r.Stdout)
	}

	// A submit token follows its prefix, and privileged needs its right.
	job := func(name string, privileged bool) string {
		return write(name+".yaml", fmt.Sprintf("name: %s\ngroups:\n  - name: g\n    tasks:\n      - name: t\n        image: busybox:latest\n        command: [sleep, \"1\"]\n        privileged: %v\n        resources: {cpu: 10, memory: 8}\n", name, privileged))
	}
	must(webTok, "job", "run", "-d", job("web-a", false))
	if r := cli(webTok, "job", "run", "-d", job("db-a", false)); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("submit db-a with a web token: %d %s", r.Code, r.Stderr)
	}
	if r := cli(webTok, "job", "run", "-d", job("web-p", true)); r.Code == 0 || !strings.Contains(r.Stderr, "permission denied") {
		t.Fatalf("privileged submit without the right: %d %s", r.Code, r.Stderr)
	}
	if r := cli(webTok, "job", "ls"); r.Code != 0 || !strings.Contains(r.Stdout, "web-a") {
		t.Fatalf("job ls with the web token: %d %s %s", r.Code, r.Stdout, r.Stderr)
	}

	// The audit log names accessors, never secrets.
	raw, err := os.ReadFile(filepath.Join(s.DataDir, "server", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sec := range []string{mgmt, nodeTok, webTok} {
		if strings.Contains(string(raw), sec) {
			t.Fatal("the audit log holds a token secret")
		}
	}
	var denied, allowed bool
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		var rec struct {
			Accessor, Method, Path string
			Status                 int
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if rec.Path == "/v1/nodes/register" && rec.Status == 403 && rec.Accessor == "" {
			denied = true
		}
		if rec.Path == "/v1/jobs" && rec.Method == "POST" && rec.Status == 200 && rec.Accessor != "" {
			allowed = true
		}
	}
	if !denied || !allowed {
		t.Fatalf("audit log lacks the refused registration (%v) or the job submission (%v):\n%s", denied, allowed, raw)
	}
}

// startAgent runs `berth agent` against server s with BERTH_TOKEN=token;
// cleanup stops it.
func startAgent(t *testing.T, c *Cluster, s *Server, name, token string) {
	t.Helper()
	p := freePorts(t, 2)
	dir := filepath.Join(t.TempDir(), name)
	logf, err := os.Create(dir + ".log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(c.Bin, "agent", "--data-dir", dir, "--node-name", name,
		"--http-port", fmt.Sprint(p[0]), "--gossip-port", fmt.Sprint(p[1]),
		"--join", fmt.Sprintf("127.0.0.1:%d", s.GossipPort), "--servers", fmt.Sprintf("127.0.0.1:%d", s.HTTPPort))
	cmd.Env = append(os.Environ(), "BERTH_TOKEN="+token, "BERTH_CONFIG="+dir+".json")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(dir + ".log")
			t.Logf("---- agent %s log ----\n%s", name, b)
		}
	})
}
