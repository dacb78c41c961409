//go:build !unix

package tlsutil

import (
	"context"
	"log/slog"
)

// ReloadOnSIGHUP does nothing where there is no SIGHUP; call Reload.
func (s *Source) ReloadOnSIGHUP(ctx context.Context, log *slog.Logger) { <-ctx.Done() }
