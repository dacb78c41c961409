//go:build e2e

package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretMountedInDev stores a secret in berth dev and runs a task
// that mounts it: the container reads it at /run/secrets/NAME (mode 0400,
// on a tmpfs), while inspect, job status, the server's Raft files and the
// dev log never show the value.
func TestSecretMountedInDev(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	const value = "s3cr3t-v4lue-7f1d"

	if r := d.BerthIn(strings.NewReader(value), "secret", "create", "db-pw"); r.Code != 0 {
		t.Fatalf("secret create: %s", r)
	}
	if r := d.MustBerth(t, "secret", "ls"); !strings.Contains(r.Stdout, "db-pw") || strings.Contains(r.Stdout, value) {
		t.Fatalf("secret ls: %s", r)
	}
	spec := `name: sec-web
groups:
  - name: g
    tasks:
      - name: t
        image: busybox:latest
        command: ["sleep", "600"]
        resources: {cpu: 100, memory: 32}
        secrets:
          - name: db-pw
          - name: db-pw
            target: /etc/app/pw
`
	file := filepath.Join(t.TempDir(), "sec.yaml")
	if err := os.WriteFile(file, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := d.Berth("job", "run", file); r.Code != 0 {
		t.Fatalf("job run: %s\n%s", r, d.Log())
	}
	var out Result
	WaitFor(t, 60*time.Second, "the secret readable in the container", func() bool {
		out = d.Berth("exec", "sec-web", "cat", "/run/secrets/db-pw")
		return out.Code == 0
	})
	if out.Stdout != value {
		t.Fatalf("/run/secrets/db-pw holds %q", out.Stdout)
	}
	if r := d.MustBerth(t, "exec", "sec-web", "cat", "/etc/app/pw"); r.Stdout != value {
		t.Fatalf("/etc/app/pw holds %q", r.Stdout)
	}
	r := d.MustBerth(t, "exec", "sec-web", "stat", "-c", "%a %u", "/run/secrets/db-pw")
	if strings.TrimSpace(r.Stdout) != "400 0" {
		t.Fatalf("mode and owner of the secret: %q", r.Stdout)
	}
	if r := d.Berth("exec", "sec-web", "sh", "-c", "echo x > /run/secrets/db-pw"); r.Code == 0 {
		t.Fatal("the secret file is writable in the container")
	}

	for _, args := range [][]string{{"inspect", "sec-web"}, {"job", "status", "sec-web"}, {"ps", "-a"}} {
		r := d.MustBerth(t, args...)
		if strings.Contains(r.Stdout+r.Stderr, value) {
			t.Fatalf("berth %s shows the secret:\n%s", strings.Join(args, " "), r)
		}
	}
	if r := d.MustBerth(t, "inspect", "sec-web"); !strings.Contains(r.Stdout, "sec-web") {
		t.Fatalf("inspect: %s", r)
	}
	// Not in the Raft log, the snapshots or the audit log in plain text.
	err := filepath.Walk(filepath.Join(d.DataDir, "server"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(value)) {
			t.Errorf("%s holds the secret in plain text", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(d.Log(), value) {
		t.Fatal("the dev log shows the secret")
	}
	d.MustBerth(t, "job", "stop", "sec-web")
}
