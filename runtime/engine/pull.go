package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/runtime/image"
)

// resolveImage finds a task's image in the local store. A missing image is
// pulled from its registry (pullImage) with the task's credentials, when
// it has any.
func (e *Engine) resolveImage(ctx context.Context, ref string, auth *api.RegistryAuth) (*image.Image, error) {
	img, err := e.Images.Get(ref)
	if err == nil {
		return img, nil
	}
	if !isNotFound(err) {
		return nil, err
	}
	img, perr := e.pullImage(ctx, ref, auth)
	if perr != nil {
		return nil, perr
	}
	if img == nil {
		return nil, fmt.Errorf("%w: %s: import it with 'berth image import' or load it with 'berth image load'", ErrImageNotFound, ref)
	}
	return img, nil
}

// PullOptions returns the registry options the agent uses for the pulls
// it makes on its own: credentials from the agent host's berth config
// ($BERTH_CONFIG or ~/.berth/config.json) and then its docker config, and
// the insecure registries that config, BERTH_INSECURE_REGISTRIES and the
// engine's InsecureRegistries (--insecure-registry) list.
func (e *Engine) PullOptions() image.PullOptions {
	var opts image.PullOptions
	opts.InsecureRegistries = append(image.InsecureRegistriesFromEnv(), e.InsecureRegistries...)
	if cfg, err := image.LoadClientConfig(""); err == nil {
		opts.Keychain = cfg.Keychain()
		opts.InsecureRegistries = append(opts.InsecureRegistries, cfg.InsecureRegistries...)
	} else {
		slog.Warn("reading the client config for registry credentials", "err", err)
	}
	return opts
}

// pullImage fetches ref from its registry into the store. auth, the
// task's own credential (api.Task.Auth), is used when set; otherwise the
// node's keychain (PullOptions) is asked. Neither is ever logged.
// Concurrent tasks that need the same image share one download
// (image.Store.Pull). A failed pull wraps both ErrImageNotFound and the
// registry's error.
func (e *Engine) pullImage(ctx context.Context, ref string, auth *api.RegistryAuth) (*image.Image, error) {
	start := time.Now()
	opts := e.PullOptions()
	creds := "node"
	if a := taskAuth(auth); a != nil {
		opts.Auth, creds = a, "task"
	}
	img, err := e.Images.Pull(ctx, ref, opts)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		slog.Info("pull failed", "image", ref, "credentials", creds, "err", err)
		return nil, fmt.Errorf("%w: %s is not on this node and pulling it failed: %w; import it with 'berth image import' or load it with 'berth image load'", ErrImageNotFound, ref, err)
	}
	slog.Info("pulled image", "image", ref, "id", img.ID, "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// taskAuth converts a task's credential; nil when it carries none.
func taskAuth(a *api.RegistryAuth) *image.Auth {
	if a == nil {
		return nil
	}
	out := &image.Auth{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
	if out.Empty() {
		return nil
	}
	return out
}

func isNotFound(err error) bool { return errors.Is(err, image.ErrNotFound) }
