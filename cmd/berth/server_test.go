package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestServerConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		file    string
		args    []string
		check   func(t *testing.T, f *serverFlags)
		wantErr string
	}{
		{
			name: "keys with dashes or underscores",
			file: "data_dir: /srv/berth\nhttp-port: 19470\nbootstrap_expect: 3\njoin: [10.0.0.1:9472, 10.0.0.2:9472]\nheartbeat-ttl: 5s\npreemption: true\n",
			check: func(t *testing.T, f *serverFlags) {
				if f.dataDir != "/srv/berth" || f.httpPort != 19470 || f.bootstrapExpect != 3 || !f.preemption || f.heartbeatTTL != 5*time.Second {
					t.Fatalf("flags = %+v", f)
				}
				if strings.Join(f.join, ",") != "10.0.0.1:9472,10.0.0.2:9472" {
					t.Fatalf("join = %v", f.join)
				}
			},
		},
		{
			name: "command line wins",
			file: "http-port: 19470\nnode-name: from-file\n",
			args: []string{"--http-port", "29470"},
			check: func(t *testing.T, f *serverFlags) {
				if f.httpPort != 29470 || f.nodeName != "from-file" {
					t.Fatalf("flags = %+v", f)
				}
			},
		},
		{name: "unknown key", file: "http_prot: 1\n", wantErr: `unknown key "http_prot"`},
		{name: "config may not nest", file: "config: other.yaml\n", wantErr: `unknown key "config"`},
		{name: "bad value", file: "http-port: lots\n", wantErr: "http-port"},
		{name: "not a map", file: "- a\n", wantErr: "server config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "server.yaml")
			if err := os.WriteFile(p, []byte(tt.file), 0o644); err != nil {
				t.Fatal(err)
			}
			f := &serverFlags{}
			cmd := newServerCmdWith(f)
			// Parse flags the way cobra does, then apply the file.
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
