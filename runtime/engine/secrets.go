package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/container"
)

// ErrSecretValue means a task names a secret the server did not hand
// over: it was deleted, or the servers cannot decrypt it (their secrets
// keys differ).
var ErrSecretValue = errors.New("engine: a task secret has no value (deleted, or the servers' secrets keys differ); recreate it with `berth secret create`")

// A task's secrets live on a tmpfs of their own on the host,
// DATA_DIR/secrets/CONTAINER (mode 0700), one file per secret (mode 0400,
// owned by root), never on disk; each file is bind-mounted read-only at
// its target in the container. The tmpfs goes when the container is
// removed.

// secretTarget is where a secret appears in the container.
func secretTarget(ts api.TaskSecret) string {
	if ts.Target != "" {
		return ts.Target
	}
	return api.DefaultSecretDir + "/" + ts.Name
}

func (e *Engine) secretDir(id string) string {
	return filepath.Join(filepath.Dir(e.metaDir), "secrets", id)
}

// secretMounts writes a task's secrets to their tmpfs and returns the
// mounts that put them in the container.
func (e *Engine) secretMounts(id string, secrets []api.TaskSecret) ([]container.Mount, error) {
	if len(secrets) == 0 {
		return nil, nil
	}
	size := 4096
	for _, s := range secrets {
		if len(s.Value) == 0 {
			return nil, fmt.Errorf("%w: secret %q", ErrSecretValue, s.Name)
		}
		t := secretTarget(s)
		if !strings.HasPrefix(t, "/") || filepath.Clean(t) != t || t == "/" {
			return nil, fmt.Errorf("engine: secret %q: target %q is not a clean absolute path", s.Name, t)
		}
		size += len(s.Value) + 4096
	}
	dir := e.secretDir(id)
	if err := mountSecretFS(dir, size); err != nil {
		return nil, fmt.Errorf("engine: secrets tmpfs for %s: %w", id, err)
	}
	var out []container.Mount
	for i, s := range secrets {
		p := filepath.Join(dir, strconv.Itoa(i))
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
		if err == nil {
			_, err = f.Write(s.Value)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			e.removeSecrets(id)
			return nil, fmt.Errorf("engine: write secret %q: %w", s.Name, err)
		}
		out = append(out, container.Mount{Type: "bind", Source: p, Destination: secretTarget(s), ReadOnly: true})
	}
	return out, nil
}

// removeSecrets unmounts and removes a container's secrets tmpfs, if any.
func (e *Engine) removeSecrets(id string) {
	dir := e.secretDir(id)
	unmountSecretFS(dir)
	_ = os.RemoveAll(dir)
}
