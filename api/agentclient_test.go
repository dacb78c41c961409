package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeProxy answers like a server proxying one node's agent: it records
// each request and replies with the canned body of its route.
type fakeProxy struct {
	mu   sync.Mutex
	reqs []agentReq
}

type agentReq struct {
	method, path, query, ctype, body string
}

func (f *fakeProxy) last() agentReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reqs[len(f.reqs)-1]
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, agentReq{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, r.Header.Get("Content-Type"), string(b)})
	f.mu.Unlock()
	const pre = "/v1/nodes/n1/agent"
	if !strings.HasPrefix(r.URL.Path, pre) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such node"}`)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, pre)
	w.Header().Set("Content-Type", "application/json")
	switch {
	case rest == "/containers/missing":
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error":"no such container: missing"}`)
	case strings.HasSuffix(rest, "/logs"):
		fl, _ := w.(http.Flusher)
		for _, s := range []string{"one\n", "two\n"} {
			_ = json.NewEncoder(w).Encode(LogEntry{Time: time.Now().Format(time.RFC3339Nano), Stream: "stdout", Log: s})
			fl.Flush()
		}
		_, _ = io.WriteString(w, "\n")
		_ = json.NewEncoder(w).Encode(LogEntry{Stream: "stderr", Log: "three\n"})
	case strings.HasSuffix(rest, "/exec"):
		var req ExecRequest
		_ = json.Unmarshal(b, &req)
		code := 7
		enc := json.NewEncoder(w)
		_ = enc.Encode(ExecFrame{Stream: "stdout", Data: strings.Join(req.Cmd, " ") + "\n"})
		_ = enc.Encode(ExecFrame{Stream: "stderr", Data: req.Stdin})
		if req.Cmd[0] != "cut" {
			_ = enc.Encode(ExecFrame{Exit: &code})
		}
	case strings.HasSuffix(rest, "/wait"):
		_, _ = io.WriteString(w, `{"exit_code":137,"oom_killed":true}`)
	case strings.HasSuffix(rest, "/stats"):
		_, _ = io.WriteString(w, `{"id":"abc","memory_usage":1024,"pids":3}`)
	case rest == "/containers":
		_, _ = io.WriteString(w, `[{"id":"abc","name":"web","state":"running"}]`)
	case strings.HasPrefix(rest, "/containers/"):
		_, _ = io.WriteString(w, `{"id":"abc","name":"web","state":"running"}`)
	case rest == "/images/load":
		_, _ = io.WriteString(w, `[{"id":"sha256:1","repo_tags":["a:1"]},{"id":"sha256:2"}]`)
	case rest == "/images/import":
		_, _ = io.WriteString(w, `{"id":"sha256:1","repo_tags":["busybox:latest"],"size":5}`)
	case rest == "/images":
		_, _ = io.WriteString(w, `[{"id":"sha256:1","size":5}]`)
	case r.Method == http.MethodDelete && strings.HasPrefix(rest, "/images/"):
		_, _ = io.WriteString(w, `{"untagged":["busybox:latest"],"deleted":["sha256:1"]}`)
	case strings.HasPrefix(rest, "/images/"):
		_, _ = io.WriteString(w, `{"id":"sha256:1","config":{"cmd":["sh"]},"layers":["sha256:l"]}`)
	case rest == "/volumes" && r.Method == http.MethodGet:
		_, _ = io.WriteString(w, `[{"name":"data","driver":"local"}]`)
	case rest == "/volumes/prune", rest == "/system/prune":
		_, _ = io.WriteString(w, `{"volumes":["old"],"space_reclaimed":4096}`)
	case strings.HasPrefix(rest, "/volumes"):
		_, _ = io.WriteString(w, `{"name":"data","driver":"local"}`)
	default:
		_, _ = io.WriteString(w, `{}`)
	}
}

func newFake(t *testing.T) (*fakeProxy, *AgentClient) {
	t.Helper()
	f := &fakeProxy{}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c, err := NewAgentClient(srv.URL, "n1")
	if err != nil {
		t.Fatal(err)
	}
	return f, c
}

func TestAgentClientRoutes(t *testing.T) {
	f, c := newFake(t)
	tests := []struct {
		name   string
		call   func() error
		method string
		path   string
		query  string
		body   string
	}{
		{"containers", func() error { _, err := c.Containers(); return err }, "GET", "/containers", "", ""},
		{"container", func() error {
			ci, err := c.Container("web")
			if err == nil && ci.ID != "abc" {
				t.Errorf("container id %q", ci.ID)
			}
			return err
		}, "GET", "/containers/web", "", ""},
		{"stats", func() error {
			st, err := c.Stats("abc")
			if err == nil && (st.MemoryUsage != 1024 || st.Pids != 3) {
				t.Errorf("stats %+v", st)
			}
			return err
		}, "GET", "/containers/abc/stats", "", ""},
		{"kill", func() error { return c.Kill("abc", "SIGTERM") }, "POST", "/containers/abc/kill", "signal=SIGTERM", ""},
		{"kill default", func() error { return c.Kill("abc", "") }, "POST", "/containers/abc/kill", "", ""},
		{"wait", func() error {
			r, err := c.Wait(context.Background(), "abc")
			if err == nil && (r.ExitCode != 137 || !r.OOMKilled) {
				t.Errorf("wait %+v", r)
			}
			return err
		}, "GET", "/containers/abc/wait", "", ""},
		{"images", func() error { _, err := c.Images(); return err }, "GET", "/images", "", ""},
		{"image with registry and tag", func() error {
			ii, err := c.Image("reg.local:5000/lib/busybox:1.36")
			if err == nil && (ii.Config.Cmd[0] != "sh" || ii.Layers[0] != "sha256:l") {
				t.Errorf("inspect %+v", ii)
			}
			return err
		}, "GET", "/images/reg.local:5000%2Flib%2Fbusybox:1.36", "", ""},
		{"import", func() error {
			im, err := c.ImportImage(strings.NewReader("TARDATA"), "busybox:latest")
			if err == nil && im.RepoTags[0] != "busybox:latest" {
				t.Errorf("import %+v", im)
			}
			return err
		}, "POST", "/images/import", "name=busybox%3Alatest", "TARDATA"},
		{"load", func() error {
			ims, err := c.LoadImages(strings.NewReader("ARCHIVE"))
			if err == nil && len(ims) != 2 {
				t.Errorf("load %+v", ims)
			}
			return err
		}, "POST", "/images/load", "", "ARCHIVE"},
		{"tag", func() error { return c.TagImage("busybox", "mine:1") }, "POST", "/images/tag", "", `{"source":"busybox","target":"mine:1"}`},
		{"rmi force", func() error {
			r, err := c.RemoveImage("busybox", true)
			if err == nil && r.Deleted[0] != "sha256:1" {
				t.Errorf("rmi %+v", r)
			}
			return err
		}, "DELETE", "/images/busybox", "force=1", ""},
		{"rmi", func() error { _, err := c.RemoveImage("busybox", false); return err }, "DELETE", "/images/busybox", "", ""},
		{"volumes", func() error { _, err := c.Volumes(); return err }, "GET", "/volumes", "", ""},
		{"volume create", func() error {
			_, err := c.CreateVolume(VolumeCreateRequest{Name: "data", Labels: map[string]string{"a": "b"}})
			return err
		}, "POST", "/volumes", "", `{"name":"data","labels":{"a":"b"}}`},
		{"volume", func() error { _, err := c.Volume("data"); return err }, "GET", "/volumes/data", "", ""},
		{"volume rm", func() error { return c.RemoveVolume("data", true) }, "DELETE", "/volumes/data", "force=1", ""},
		{"volume prune", func() error {
			r, err := c.PruneVolumes()
			if err == nil && (r.SpaceReclaimed != 4096 || r.Volumes[0] != "old") {
				t.Errorf("prune %+v", r)
			}
			return err
		}, "POST", "/volumes/prune", "", ""},
		{"system prune", func() error { _, err := c.SystemPrune(true, true); return err }, "POST", "/system/prune", "all=1&volumes=1", ""},
		{"system prune plain", func() error { _, err := c.SystemPrune(false, false); return err }, "POST", "/system/prune", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatal(err)
			}
			got := f.last()
			if got.method != tt.method || got.path != "/v1/nodes/n1/agent"+tt.path || got.query != tt.query {
				t.Errorf("request %s %s?%s, want %s /v1/nodes/n1/agent%s?%s", got.method, got.path, got.query, tt.method, tt.path, tt.query)
			}
			if tt.body != "" && got.body != tt.body {
				t.Errorf("body %q, want %q", got.body, tt.body)
			}
		})
	}
}

func TestAgentClientLogs(t *testing.T) {
	f, c := newFake(t)
	s, err := c.Logs(context.Background(), "abc", true, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var lines []string
	for {
		e, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, e.Stream+":"+e.Log)
	}
	if want := "stdout:one\n|stdout:two\n|stderr:three\n"; strings.Join(lines, "|") != want {
		t.Errorf("lines %q, want %q", strings.Join(lines, "|"), want)
	}
	if q := f.last().query; q != "follow=1&tail=10" {
		t.Errorf("query %q", q)
	}
	s2, err := c.Logs(context.Background(), "abc", false, -1)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if q := f.last().query; q != "" {
		t.Errorf("query without follow/tail: %q", q)
	}
}

func TestAgentClientExec(t *testing.T) {
	f, c := newFake(t)
	var out, errb bytes.Buffer
	code, err := c.Exec(context.Background(), "abc", &ExecRequest{Cmd: []string{"echo", "hi"}, Stdin: "in"}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	if code != 7 || out.String() != "echo hi\n" || errb.String() != "in" {
		t.Errorf("exec: code %d stdout %q stderr %q", code, out.String(), errb.String())
	}
	if got := f.last(); got.ctype != "application/json" || !strings.Contains(got.body, `"stdin":"in"`) {
		t.Errorf("exec request %+v", got)
	}
	if _, err := c.Exec(context.Background(), "abc", &ExecRequest{Cmd: []string{"cut"}}, nil, nil); !errors.Is(err, ErrExecStream) {
		t.Errorf("cut stream: err %v, want ErrExecStream", err)
	}
	if _, err := c.Exec(context.Background(), "abc", &ExecRequest{}, nil, nil); err == nil {
		t.Error("empty command accepted")
	}
}

func TestAgentClientErrors(t *testing.T) {
	_, c := newFake(t)
	_, err := c.Container("missing")
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 404 || se.Message != "no such container: missing" || !IsNotFound(err) {
		t.Errorf("missing container: %v", err)
	}

	// A port nothing listens on: the error names the address and hints at
	// berth dev.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dead, err := NewAgentClient(addr, "n1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dead.Containers()
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "http://"+addr) || !strings.Contains(err.Error(), "berth dev") {
		t.Errorf("unreachable: %v", err)
	}

	if _, err := NewAgentClient("http://x", ""); !errors.Is(err, ErrAgentNode) {
		t.Errorf("no node: %v", err)
	}
	if _, err := NewAgentClient("ftp://x", "n1"); !errors.Is(err, ErrBadAddress) {
		t.Errorf("bad scheme: %v", err)
	}
	t.Setenv(EnvAddr, "10.1.2.3")
	c2, err := NewAgentClient("", "n1")
	if err != nil || c2.Address() != "http://10.1.2.3:9470" {
		t.Errorf("env address: %v %q", err, c2.Address())
	}
	t.Setenv(EnvAddr, "")
	c3, _ := NewAgentClient("", "node one")
	if c3.Address() != DefaultAddr || c3.prefix != "/v1/nodes/node%20one/agent" {
		t.Errorf("default: %q %q", c3.Address(), c3.prefix)
	}
}

func TestAgentClientContextEndsFollow(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-block:
		}
	}))
	defer srv.Close()
	defer close(block)
	c, _ := NewAgentClient(srv.URL, "n1")
	ctx, cancel := context.WithCancel(context.Background())
	s, err := c.Logs(ctx, "abc", true, -1)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := s.Next(); done <- err }()
	cancel()
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Errorf("cancelled follow returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not end the follow")
	}
}

// FuzzAgentStreams feeds arbitrary bytes to the exec-frame and log-line
// decoders: they must not panic, and an exit code only comes from a frame.
func FuzzAgentStreams(f *testing.F) {
	f.Add([]byte(`{"stream":"stdout","data":"hi\n"}` + "\n" + `{"exit":3}` + "\n"))
	f.Add([]byte(`{"t":"2026-01-01T00:00:00Z","stream":"stderr","log":"x\n"}` + "\n\n"))
	f.Add([]byte(`{"exit":0,"error":"boom"}`))
	f.Add([]byte("not json\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out, errb bytes.Buffer
		code, err := copyExecFrames(bytes.NewReader(b), &out, &errb)
		if err == nil && !bytes.Contains(bytes.ToLower(b), []byte(`"exit"`)) { // JSON keys match case-insensitively
			t.Fatalf("exit code %d without an exit frame", code)
		}
		s := &LogStream{body: io.NopCloser(bytes.NewReader(b))}
		s.sc = bufio.NewScanner(s.body)
		for range 1000 {
			if _, err := s.Next(); err != nil {
				break
			}
		}
	})
}
