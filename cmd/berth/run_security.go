package main

// docker run's security flags for `berth run`: --privileged, --read-only,
// --tmpfs, --security-opt and --userns.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/engine"
)

type runSecurityFlags struct {
	privileged, readOnly bool
	tmpfs, securityOpt   []string
	userns               string
}

// runSecurity holds each run command's flag values, for
// applyRunSecurityFlags.
var runSecurity sync.Map // *cobra.Command → *runSecurityFlags

// addRunSecurityFlags adds the security flags to a run command.
func addRunSecurityFlags(cmd *cobra.Command) {
	f := &runSecurityFlags{}
	runSecurity.Store(cmd, f)
	fl := cmd.Flags()
	fl.BoolVar(&f.privileged, "privileged", false, "give the container every capability and host device, no seccomp filter and no masked paths (logged by the agent; ACLs must allow it)")
	fl.BoolVar(&f.readOnly, "read-only", false, "mount the container's root filesystem read-only")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "mount a tmpfs: /path[:size=64m,mode=1777,ro] (repeatable)")
	fl.StringArrayVar(&f.securityOpt, "security-opt", nil, "seccomp=unconfined, seccomp=PROFILE.json (Docker's format) or no-new-privileges (repeatable)")
	fl.StringVar(&f.userns, "userns", "", "user namespace: private maps the container's root to an unprivileged host range; host (default) shares the host's users")
}

// applyRunSecurityFlags sets task's security options from the flags of
// cmd (made with addRunSecurityFlags). A seccomp profile file is read
// here, on the client, and sent with the job.
func applyRunSecurityFlags(cmd *cobra.Command, task *api.Task) error {
	v, ok := runSecurity.Load(cmd)
	if !ok {
		return nil
	}
	f := v.(*runSecurityFlags)
	task.Privileged = task.Privileged || f.privileged
	task.ReadOnly = f.readOnly
	task.Tmpfs = append(task.Tmpfs, f.tmpfs...)
	task.Userns = f.userns
	for _, o := range f.securityOpt {
		if err := applySecurityOpt(task, o); err != nil {
			return err
		}
	}
	if err := engine.CheckTaskSecurity(task); err != nil {
		return fmt.Errorf("invalid security options: %w", err)
	}
	return nil
}

// applySecurityOpt applies one --security-opt, in docker's KEY=VALUE or
// older KEY:VALUE form.
func applySecurityOpt(task *api.Task, o string) error {
	key, val, hasVal := strings.Cut(o, "=")
	if !hasVal {
		key, val, hasVal = strings.Cut(o, ":")
	}
	switch key {
	case "no-new-privileges":
		switch {
		case !hasVal || val == "true":
			task.NoNewPrivileges = true
		case val == "false":
			task.NoNewPrivileges = false
		default:
			return fmt.Errorf("invalid --security-opt %q: no-new-privileges takes true or false", o)
		}
	case "seccomp":
		switch val {
		case "":
			return fmt.Errorf("invalid --security-opt %q: give seccomp=unconfined or seccomp=FILE", o)
		case "unconfined":
			task.Seccomp = "unconfined"
		default:
			data, err := os.ReadFile(val)
			if err != nil {
				return fmt.Errorf("--security-opt seccomp: %w", err)
			}
			var buf bytes.Buffer
			if err := json.Compact(&buf, data); err != nil {
				return fmt.Errorf("--security-opt seccomp: %s is not JSON: %w", val, err)
			}
			if buf.Len() == 0 || buf.String() == "unconfined" {
				return fmt.Errorf("--security-opt seccomp: %s is empty", val)
			}
			task.Seccomp = buf.String()
		}
	case "apparmor", "label":
		// berth has neither AppArmor nor SELinux profiles: only the
		// values that turn them off are accepted, as no-ops.
		if (key == "apparmor" && val == "unconfined") || (key == "label" && val == "disable") {
			return nil
		}
		return fmt.Errorf("invalid --security-opt %q: berth does not apply AppArmor or SELinux labels", o)
	default:
		return fmt.Errorf("invalid --security-opt %q: want seccomp=unconfined|FILE or no-new-privileges", o)
	}
	return nil
}
