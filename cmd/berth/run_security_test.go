package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
)

func TestRunSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	profile := filepath.Join(dir, "p.json")
	if err := os.WriteFile(profile, []byte(`{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
	}`), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"defaultAction": "SCMP_ACT_SOMETIMES"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		check func(*api.Task) bool
		err   string
	}{
		{"none", nil, func(t *api.Task) bool { return !t.Privileged && t.Seccomp == "" && !t.ReadOnly && !t.NoNewPrivileges }, ""},
		{"privileged", []string{"--privileged"}, func(t *api.Task) bool { return t.Privileged }, ""},
		{"read-only with tmpfs", []string{"--read-only", "--tmpfs", "/run:size=8m", "--tmpfs", "/tmp"}, func(t *api.Task) bool {
			return t.ReadOnly && strings.Join(t.Tmpfs, " ") == "/run:size=8m /tmp"
		}, ""},
		{"no-new-privileges", []string{"--security-opt", "no-new-privileges"}, func(t *api.Task) bool { return t.NoNewPrivileges }, ""},
		{"no-new-privileges:true", []string{"--security-opt", "no-new-privileges:true"}, func(t *api.Task) bool { return t.NoNewPrivileges }, ""},
		{"unconfined", []string{"--security-opt", "seccomp=unconfined"}, func(t *api.Task) bool { return t.Seccomp == "unconfined" }, ""},
		{"profile file", []string{"--security-opt", "seccomp=" + profile}, func(t *api.Task) bool {
			return strings.HasPrefix(t.Seccomp, `{"defaultAction":"SCMP_ACT_ALLOW"`) && !strings.Contains(t.Seccomp, "\n")
		}, ""},
		{"userns", []string{"--userns", "private"}, func(t *api.Task) bool { return t.Userns == "private" }, ""},
		{"bad profile", []string{"--security-opt", "seccomp=" + bad}, nil, "SCMP_ACT_SOMETIMES"},
		{"missing profile", []string{"--security-opt", "seccomp=" + filepath.Join(dir, "nope.json")}, nil, "no such file"},
		{"unknown option", []string{"--security-opt", "systempaths=unconfined"}, nil, "want seccomp"},
		{"apparmor", []string{"--security-opt", "apparmor=docker-default"}, nil, "AppArmor"},
		{"apparmor off", []string{"--security-opt", "apparmor=unconfined"}, func(t *api.Task) bool { return true }, ""},
		{"bad tmpfs", []string{"--tmpfs", "run"}, nil, "tmpfs"},
		{"bad userns", []string{"--userns", "keep-id"}, nil, "userns"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := &cobra.Command{Use: "run", RunE: func(*cobra.Command, []string) error { return nil }}
			addRunSecurityFlags(cmd)
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			task := &api.Task{}
			err := applyRunSecurityFlags(cmd, task)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one mentioning %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(task) {
				t.Errorf("task %+v", task)
			}
		})
	}
}
