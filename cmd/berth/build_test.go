package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/api"
)

func TestKeyValues(t *testing.T) {
	t.Setenv("BERTH_TEST_ARG", "from-env")
	tests := []struct {
		name    string
		in      []string
		fromEnv bool
		want    map[string]string
		bad     bool
	}{
		{"pairs", []string{"A=1", "B=x=y", "C="}, false, map[string]string{"A": "1", "B": "x=y", "C": ""}, false},
		{"bare key from env", []string{"BERTH_TEST_ARG", "BERTH_TEST_UNSET_ARG"}, true, map[string]string{"BERTH_TEST_ARG": "from-env"}, false},
		{"bare key refused", []string{"A"}, false, nil, true},
		{"empty key", []string{"=1"}, true, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keyValues(tt.in, "--x", tt.fromEnv)
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestBuildView(t *testing.T) {
	var out bytes.Buffer
	v := &buildView{out: &out}
	for _, e := range []api.BuildEvent{
		{Kind: api.BuildStep, Step: 1, Total: 3, Instruction: "FROM busybox"},
		{Kind: api.BuildDone, Step: 1, Total: 3, DurationMS: 1.5},
		{Kind: api.BuildStep, Step: 2, Total: 3, Instruction: "COPY a ."},
		{Kind: api.BuildCached, Step: 2, Total: 3},
		{Kind: api.BuildDone, Step: 2, Total: 3},
		{Kind: api.BuildStep, Step: 3, Total: 3, Instruction: "RUN make"},
		{Kind: api.BuildOutput, Step: 3, Total: 3, Output: "compiling\n"},
		{Kind: api.BuildDone, Step: 3, Total: 3, DurationMS: 1250},
	} {
		v.event(e)
	}
	v.flush()
	want := "[1/3] FROM busybox 0.00s\n[2/3] CACHED COPY a .\n[3/3] RUN make\ncompiling\n[3/3] DONE 1.25s\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestDockerfileFor(t *testing.T) {
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM a\n"), 0o644)
	os.MkdirAll(filepath.Join(ctx, "sub"), 0o755)
	os.WriteFile(filepath.Join(ctx, "sub", "Other"), []byte("FROM b\n"), 0o644)
	outside := filepath.Join(t.TempDir(), "Outside")
	os.WriteFile(outside, []byte("FROM c\n"), 0o644)
	for _, tt := range []struct{ file, rel, content string }{
		{"", "Dockerfile", "FROM a\n"},
		{filepath.Join(ctx, "sub", "Other"), "sub/Other", "FROM b\n"},
		{outside, "", "FROM c\n"},
	} {
		var req api.BuildRequest
		rel, err := dockerfileFor(ctx, tt.file, &req)
		if err != nil || rel != tt.rel || req.DockerfileContent != tt.content {
			t.Fatalf("dockerfileFor(%q) = %q, %q, %v", tt.file, rel, req.DockerfileContent, err)
		}
	}
	if _, err := dockerfileFor(ctx, filepath.Join(ctx, "missing"), &api.BuildRequest{}); err == nil {
		t.Fatal("a missing Dockerfile was accepted")
	}
}
