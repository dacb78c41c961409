//go:build !linux

package engine

import "errors"

// errSecretsNotSupported: secrets need Linux tmpfs mounts.
var errSecretsNotSupported = errors.New("engine: task secrets are not supported on this platform")

func mountSecretFS(string, int) error { return errSecretsNotSupported }

func unmountSecretFS(string) {}
