package scheduler

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// /v1/nodes/{id}/agent/* reaches the node's agent API (/v1/*).
func TestAgentProxyRoute(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("agent saw " + r.Method + " " + r.URL.Path + "?" + r.URL.RawQuery))
	}))
	defer agent.Close()
	s, c := startLeader(t, nil)
	n := simNode("n1", 1000, 1000)
	n.HTTPAddr = strings.TrimPrefix(agent.URL, "http://")
	registerNodes(t, c, n)
	code, _, body := rawRequest(t, s, "GET", "/v1/nodes/name-n1/agent/allocations/a1/logs?follow=true", "")
	if code != 200 || body != "agent saw GET /v1/allocations/a1/logs?follow=true" {
		t.Fatalf("proxy answered %d %q", code, body)
	}
	if code, _, _ := rawRequest(t, s, "GET", "/v1/nodes/nope/agent/x", ""); code != 404 {
		t.Fatalf("unknown node through the proxy: %d, want 404", code)
	}
}
