//go:build !linux

package build

import (
	"context"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

func (b *Builder) openContainers() error { return nil }

func (b *Builder) mountImage(id string) (string, func(), error) {
	return "", nil, ErrNotSupported
}

func (j *job) runStep(ctx context.Context, st *stage, c *instructions.RunCommand, args, env []string, key string) (*stageResult, error) {
	return nil, ErrNotSupported
}
