package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

func TestImageLsDigests(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderIndex, "3")
		enc := json.NewEncoder(w)
		switch r.URL.Path {
		case "/v1/nodes":
			_ = enc.Encode([]*api.Node{{ID: "node-1", Name: "n1", Status: api.NodeStatusReady, HTTPAddr: "127.0.0.1:1"}})
		case "/v1/nodes/node-1/agent/images", "/v1/nodes/n1/agent/images":
			_ = enc.Encode([]api.Image{
				{ID: "sha256:" + strings.Repeat("a", 64), RepoTags: []string{"busybox:latest"}, Digest: "sha256:" + strings.Repeat("d", 64), Size: 2_000_000},
				{ID: "sha256:" + strings.Repeat("b", 64), Size: 1000},
			})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = enc.Encode(api.Error{Error: "not found: " + r.URL.Path})
		}
	}))
	defer srv.Close()

	out, err := runCLI(t, srv.URL, "image", "ls", "--digests")
	if err != nil {
		t.Fatalf("image ls --digests: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], "DIGEST") {
		t.Fatalf("output:\n%s", out)
	}
	if !strings.Contains(out, "sha256:"+strings.Repeat("d", 64)) || !strings.Contains(out, "<none>") {
		t.Fatalf("digest column missing:\n%s", out)
	}
	out, err = runCLI(t, srv.URL, "image", "ls", "-a")
	if err != nil || strings.Contains(out, "DIGEST") || len(strings.Split(strings.TrimSpace(out), "\n")) != 3 {
		t.Fatalf("image ls -a: %v\n%s", err, out)
	}
}
