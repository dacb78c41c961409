package consensus

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapter(t *testing.T) {
	var buf bytes.Buffer
	base := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l := newHCLogger(base, "raft")

	tests := []struct {
		name string
		log  func()
		want []string // substrings of the one line expected; nil: no output
	}{
		{"info with args", func() { l.Info("election won", "term", 3) }, []string{"level=INFO", `msg="election won"`, "component=raft", "term=3"}},
		{"warn", func() { l.Warn("slow") }, []string{"level=WARN", "msg=slow"}},
		{"error", func() { l.Error("bad", "error", "x") }, []string{"level=ERROR", "error=x"}},
		{"trace is below the handler's level", func() { l.Trace("noise") }, nil},
		{"named and with", func() { l.Named("snapshot").With("node", "s1").Debug("saved") }, []string{"level=DEBUG", "component=raft.snapshot", "node=s1"}},
		{"deferred format", func() { l.Info("cfg", "servers", hclog.Fmt("%d servers", 3)) }, []string{`servers="3 servers"`}},
		{"standard writer infers levels", func() {
			l.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}).Print("[WARN] memberlist: oops")
		}, []string{"level=WARN", `msg="memberlist: oops"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			buf.Reset()
			tc.log()
			out := buf.String()
			if tc.want == nil {
				if out != "" {
					t.Fatalf("unexpected output %q", out)
				}
				return
			}
			if strings.Count(out, "\n") != 1 {
				t.Fatalf("want one line, got %q", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
		})
	}
	if !l.IsDebug() || l.IsTrace() || l.GetLevel() != hclog.Debug {
		t.Fatalf("levels: debug=%v trace=%v get=%v", l.IsDebug(), l.IsTrace(), l.GetLevel())
	}
}
