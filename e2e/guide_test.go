//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// guideStep is one command of README.md's "Run a cluster" section.
type guideStep struct {
	host string   // from the "# on HOST" comment before it; "" for the client
	args []string // after "berth", variables expanded
	line string   // as written
}

// readGuide returns the commands of the README section named heading, in
// order: the lines of its ```sh blocks. A block may set variables with
// `export K=V ...` (later lines see them) and say where the following
// commands run with `# on HOST`. Every other line must be a berth
// command, so the guide holds nothing this test does not run.
// An export of a variable that override holds takes override's value
// (the simulated hosts' addresses replace the guide's examples).
func readGuide(t *testing.T, readme, heading string, env, override map[string]string) []guideStep {
	t.Helper()
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	i := strings.Index(text, "\n## "+heading+"\n")
	if i < 0 {
		t.Fatalf("%s has no section %q", readme, heading)
	}
	text = text[i+len(heading)+5:]
	if j := strings.Index(text, "\n## "); j >= 0 {
		text = text[:j]
	}
	var steps []guideStep
	inBlock, host := false, ""
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case !inBlock && line == "```sh":
			inBlock, host = true, ""
			continue
		case !inBlock:
			continue
		case line == "```":
			inBlock = false
			continue
		case line == "":
			continue
		case strings.HasPrefix(line, "# on "):
			host = strings.TrimSpace(strings.TrimPrefix(line, "# on "))
			continue
		case strings.HasPrefix(line, "#"):
			continue
		}
		words, err := shellWords(os.Expand(line, func(k string) string {
			v, ok := env[k]
			if !ok {
				t.Fatalf("guide line %q uses $%s, which no earlier export sets", line, k)
			}
			return v
		}))
		if err != nil {
			t.Fatalf("guide line %q: %v", line, err)
		}
		switch words[0] {
		case "export":
			for _, kv := range words[1:] {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					t.Fatalf("guide line %q: export %q has no =", line, kv)
				}
				if o, ok := override[k]; ok {
					v = o
				}
				env[k] = v
			}
		case "berth":
			steps = append(steps, guideStep{host: host, args: words[1:], line: line})
		default:
			t.Fatalf("guide line %q is neither an export nor a berth command; the guide test cannot run it", line)
		}
	}
	if inBlock {
		t.Fatalf("%s: section %q has an unclosed ```sh block", readme, heading)
	}
	return steps
}

// shellWords splits a line the way sh does for plain words, '...' and
// "..." (no escapes inside single quotes, \" and \\ inside double quotes).
func shellWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed '")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unclosed \"")
			}
			inWord = true
		case c == '\\' || c == '|' || c == ';' || c == '&' || c == '>' || c == '<' || c == '`':
			return nil, fmt.Errorf("%q: keep guide commands to plain words and quotes", c)
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("empty command")
	}
	return words, nil
}

func TestShellWords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"plain", "berth node ls", []string{"berth", "node", "ls"}},
		{"double quotes", `berth run busybox echo "Hi there" x`, []string{"berth", "run", "busybox", "echo", "Hi there", "x"}},
		{"single quotes", `a 'b "c"' d`, []string{"a", `b "c"`, "d"}},
		{"joined", `a"b c"d`, []string{"ab cd"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := shellWords(tt.in)
			if err != nil || strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Fatalf("shellWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{`a "b`, "a 'b", "a | b", "a; b", ""} {
		if _, err := shellWords(bad); err == nil {
			t.Errorf("shellWords(%q) accepted it", bad)
		}
	}
}

// TestGuideRunACluster runs README.md's "Run a cluster" commands on three
// server hosts and two worker hosts, each a network namespace. The only
// things the test adds: the hosts' addresses replace the guide's, each
// daemon gets a --data-dir of its own (the simulated hosts share one
// filesystem), and busybox.tar is made from busybox-static.
func TestGuideRunACluster(t *testing.T) {
	_, self, _, _ := runtime.Caller(0)
	readme := filepath.Join(filepath.Dir(self), "..", "README.md")
	tn := newTestNet(t, 5)
	hosts := map[string]*netHost{}
	env := map[string]string{}
	for i, name := range []string{"server1", "server2", "server3", "worker1", "worker2"} {
		hosts[name] = tn.Hosts[i]
	}
	override := map[string]string{}
	for name, h := range hosts {
		override[strings.ToUpper(name)] = h.IP
	}
	steps := readGuide(t, readme, "Run a cluster", env, override)
	for k := range override {
		if _, ok := env[k]; !ok {
			t.Fatalf("the guide never exports $%s", k)
		}
	}
	fixed := env

	work := t.TempDir()
	tar := testutil.BusyboxTar(t)
	if err := os.Symlink(tar, filepath.Join(work, "busybox.tar")); err != nil {
		t.Fatal(err)
	}
	addr := ""
	var agents []string
	daemons := 0
	for _, st := range steps {
		if len(st.args) == 0 {
			t.Fatalf("guide line %q: berth with no command", st.line)
		}
		role := st.args[0]
		if role == "server" || role == "agent" {
			h := hosts[st.host]
			if h == nil {
				t.Fatalf("guide line %q: no '# on HOST' before it names one of the hosts %v", st.line, guideKeys(hosts))
			}
			args := append(append([]string{}, st.args...), "--data-dir", filepath.Join(h.Dir, role))
			tn.Start(h, role, args...)
			daemons++
			if role == "agent" {
				agents = append(agents, st.host)
			}
			continue
		}
		if st.host != "" {
			t.Fatalf("guide line %q: client commands run from anywhere, not '# on %s'", st.line, st.host)
		}
		addr = fixed["BERTH_ADDR"]
		if addr == "" {
			t.Fatalf("guide line %q: no export BERTH_ADDR before the first client command", st.line)
		}
		cmd := strings.Join(st.args, " ")
		switch {
		case strings.HasPrefix(cmd, "operator raft list-peers"):
			Eventually(t, 60*time.Second, "three Raft voters", func() error {
				r := tn.CLI(addr, st.args...)
				if r.Code != 0 {
					return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
				}
				voters, leaders := 0, 0
				for _, l := range strings.Split(r.Stdout, "\n") {
					f := strings.Fields(l) // ID ADDRESS STATE VOTER
					if len(f) == 4 && strings.HasPrefix(f[0], "server") && f[3] == "true" {
						voters++
						if f[2] == "leader" {
							leaders++
						}
					}
				}
				if voters != 3 || leaders != 1 {
					return fmt.Errorf("%d voters, %d leaders, want 3 and 1:\n%s", voters, leaders, r.Stdout)
				}
				return nil
			})
		case cmd == "node ls":
			Eventually(t, 60*time.Second, "every worker ready", func() error {
				r := tn.CLI(addr, st.args...)
				if r.Code != 0 {
					return fmt.Errorf("exit %d: %s", r.Code, r.Stderr)
				}
				for _, a := range agents {
					ok := false
					for _, l := range strings.Split(r.Stdout, "\n") {
						f := strings.Fields(l)
						if len(f) > 3 && f[1] == a && f[3] == "ready" {
							ok = true
						}
					}
					if !ok {
						return fmt.Errorf("%s is not ready:\n%s", a, r.Stdout)
					}
				}
				return nil
			})
		default:
			r := runCLIIn(t, tn.bin, addr, work, st.args...)
			if r.Code != 0 {
				t.Fatalf("guide line %q: exit %d: %s%s", st.line, r.Code, r.Stdout, r.Stderr)
			}
			t.Logf("$ %s\n%s", st.line, r.Stdout)
			// A foreground `run CMD... echo TEXT` prints TEXT.
			if st.args[0] == "run" && len(st.args) > 2 && st.args[len(st.args)-2] == "echo" &&
				!strings.Contains(r.Stdout, st.args[len(st.args)-1]) {
				t.Fatalf("guide line %q printed %q, want %q", st.line, r.Stdout, st.args[len(st.args)-1])
			}
			if st.args[0] == "run" && guideHasArg(st.args, "-d") {
				name := guideArgAfter(st.args, "--name")
				if name == "" {
					t.Fatalf("guide line %q: give detached containers a --name the test can find", st.line)
				}
				node := runningOn(t, addr, name, 60*time.Second, "")
				if !guideContains(agents, node) {
					t.Fatalf("%s runs on %q, not on a worker %v", name, node, agents)
				}
			}
			if cmd == "ps" {
				for _, s := range steps {
					if name := guideArgAfter(s.args, "--name"); name != "" && !strings.Contains(r.Stdout, name) {
						t.Fatalf("berth ps does not list %s:\n%s", name, r.Stdout)
					}
				}
			}
		}
	}
	if daemons != 5 || len(agents) != 2 || addr == "" {
		t.Fatalf("the guide started %d daemons (%d agents) and set BERTH_ADDR=%q; want 3 servers, 2 agents and a client", daemons, len(agents), addr)
	}
}

// runCLIIn is RunCLI with a working directory, for commands that name
// files relative to it.
func runCLIIn(t *testing.T, bin, addr, dir string, args ...string) CLIResult {
	t.Helper()
	// The CLI resolves relative paths against its own working directory;
	// give it absolute ones instead of changing the test's.
	abs := make([]string, len(args))
	for i, a := range args {
		if p := filepath.Join(dir, a); !strings.HasPrefix(a, "-") && guideFileExists(p) {
			a = p
		}
		abs[i] = a
	}
	return RunCLI(t, bin, addr, abs...)
}

func guideFileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func guideHasArg(args []string, a string) bool { return guideContains(args, a) }

func guideArgAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func guideContains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func guideKeys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
