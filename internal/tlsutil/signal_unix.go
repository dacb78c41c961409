//go:build unix

package tlsutil

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// ReloadOnSIGHUP reloads the files on every SIGHUP until ctx ends. A failed
// reload is logged and the previous certificate stays in force.
func (s *Source) ReloadOnSIGHUP(ctx context.Context, log *slog.Logger) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
		}
		if err := s.Reload(); err != nil {
			log.Error("TLS reload failed; the previous certificate stays in use", "err", err)
			continue
		}
		log.Info("TLS certificate reloaded", "cert", s.cfg.CertFile, "expires", s.NotAfter())
	}
}
