package scheduler

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// An upgraded attach stream passes the server's agent proxy both ways,
// frame by frame, for as long as the session lasts.
func TestAgentProxyPassesAttachUpgrade(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/containers/c1/attach" || r.Header.Get("Upgrade") != api.AttachProtocol {
			http.Error(w, "unexpected "+r.URL.Path, http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + api.AttachProtocol + "\r\n\r\n")
		brw.Flush()
		fr, fw := api.NewFrameReader(brw.Reader), api.NewFrameWriter(conn)
		for {
			typ, p, err := fr.Next()
			if err != nil {
				return
			}
			if typ == api.FrameCloseStdin {
				fw.Exit(api.ExitResult{ExitCode: 3})
				return
			}
			fw.Write(api.FrameStdout, bytes.ToUpper(p))
		}
	}))
	defer agent.Close()
	s, c := startLeader(t, nil)
	n := simNode("n1", 1000, 1000)
	n.HTTPAddr = strings.TrimPrefix(agent.URL, "http://")
	registerNodes(t, c, n)
	ag, err := api.NewAgentClient("http://"+s.HTTPAddr(), "name-n1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := ag.Attach(ctx, "c1", api.AttachOptions{Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Each answer comes back before the next question is sent: the
	// proxy streams, it does not wait for the end.
	for _, word := range []string{"one", "two", "three"} {
		if err := st.Stdin([]byte(word)); err != nil {
			t.Fatal(err)
		}
		typ, p, err := st.Next()
		if err != nil || typ != api.FrameStdout || string(p) != strings.ToUpper(word) {
			t.Fatalf("answer to %q: type %d %q, %v", word, typ, p, err)
		}
	}
	if err := st.CloseStdin(); err != nil {
		t.Fatal(err)
	}
	res, err := st.Copy(nil, nil)
	if err != nil || res.ExitCode != 3 {
		t.Fatalf("exit frame: %+v, %v", res, err)
	}
}
