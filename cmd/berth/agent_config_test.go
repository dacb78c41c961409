package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAgentConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string // "" reads deploy/agent.yaml
		args    []string
		wantErr string
		check   func(t *testing.T, f *agentFlags)
	}{
		{
			name: "example config",
			check: func(t *testing.T, f *agentFlags) {
				if f.bind != "10.0.0.11" || f.httpPort != 9473 || f.gossipPort != 9472 || len(f.join) != 3 ||
					strings.Join(f.labels, ",") != "rack=r1,disk=ssd" || f.dataDir != "/var/lib/berth" {
					t.Fatalf("flags = %+v", f)
				}
				cfg, err := f.config()
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Labels["rack"] != "r1" || cfg.Labels["disk"] != "ssd" {
					t.Fatalf("labels = %v", cfg.Labels)
				}
			},
		},
		{
			name: "command line wins",
			file: "node_name: from-file\nlabel: [rack=r1]\nservers: [10.0.0.1:9470]\n",
			args: []string{"--label", "rack=r2"},
			check: func(t *testing.T, f *agentFlags) {
				if f.nodeName != "from-file" || strings.Join(f.labels, ",") != "rack=r2" || len(f.servers) != 1 {
					t.Fatalf("flags = %+v", f)
				}
			},
		},
		{name: "unknown key", file: "bootstrap-expect: 3\n", wantErr: "unknown key \"bootstrap-expect\"; keys are the flags of `berth agent`"},
		{name: "bad value", file: "gossip-port: many\n", wantErr: "agent config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join("..", "..", "deploy", "agent.yaml")
			if tt.file != "" {
				p = filepath.Join(t.TempDir(), "agent.yaml")
				if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			f := &agentFlags{}
			cmd := newAgentCmdWith(f)
			if err := cmd.ParseFlags(tt.args); err != nil {
				t.Fatal(err)
			}
			err := applyConfigFile(cmd.Flags(), p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, f)
		})
	}
}

// The example server config must load into `berth server`'s flags.
func TestServerExampleConfig(t *testing.T) {
	f := &serverFlags{}
	cmd := newServerCmdWith(f)
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	if err := applyConfigFile(cmd.Flags(), filepath.Join("..", "..", "deploy", "server.yaml")); err != nil {
		t.Fatal(err)
	}
	if f.bootstrapExpect != 3 || len(f.join) != 2 || f.heartbeatTTL.String() != "10s" || f.raftPort != 9471 {
		t.Fatalf("flags = %+v", f)
	}
}
