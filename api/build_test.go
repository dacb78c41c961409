package api

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestAgentClientBuild(t *testing.T) {
	var gotOpts BuildRequest
	var gotBody string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/nodes/n1/agent/images/build" {
			http.Error(w, "wrong route "+r.URL.Path, http.StatusNotFound)
			return
		}
		json.Unmarshal([]byte(r.URL.Query().Get("options")), &gotOpts)
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		switch gotOpts.Target {
		case "fail":
			io.WriteString(w, `{"kind":"step","step":1,"total":1,"instruction":"RUN false"}`+"\n"+`{"error":"step failed","exit_code":3,"tail":["x"]}`+"\n")
		case "cut":
			io.WriteString(w, `{"kind":"step","step":1,"total":1}`+"\n")
		default:
			io.WriteString(w, `{"kind":"step","step":1,"total":1,"instruction":"FROM a"}`+"\n"+`{"image":{"id":"sha256:abc"},"cached":1}`+"\n")
		}
	}))
	defer srv.Close()
	c, err := NewAgentClient(srv.URL, "n1")
	if err != nil {
		t.Fatal(err)
	}
	var events []BuildEvent
	res, err := c.Build(t.Context(), BuildRequest{Tags: []string{"app"}, BuildArgs: map[string]string{"A": "1"}}, strings.NewReader("TAR"), func(e BuildEvent) { events = append(events, e) })
	if err != nil || res.Image.ID != "sha256:abc" || res.Cached != 1 || len(events) != 1 || events[0].Instruction != "FROM a" {
		t.Fatalf("build: %+v %v %+v", res, err, events)
	}
	if gotBody != "TAR" || gotOpts.Tags[0] != "app" || gotOpts.BuildArgs["A"] != "1" {
		t.Fatalf("request: body %q options %+v", gotBody, gotOpts)
	}
	_, err = c.Build(t.Context(), BuildRequest{Target: "fail"}, strings.NewReader(""), nil)
	var be *BuildError
	if !errors.As(err, &be) || be.ExitCode != 3 || be.Tail[0] != "x" {
		t.Fatalf("failed build: %v", err)
	}
	if _, err := c.Build(t.Context(), BuildRequest{Target: "cut"}, strings.NewReader(""), nil); !errors.Is(err, ErrBuildStream) {
		t.Fatalf("cut stream: %v", err)
	}
}
