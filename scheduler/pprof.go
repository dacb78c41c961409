package scheduler

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
)

// EnvPprof names an environment variable that, when set to host:port,
// makes a server serve Go's profiling endpoints (/debug/pprof/) there. It
// is off by default: profiles reveal internals and cost CPU while taken.
const EnvPprof = "BERTH_PPROF"

// startPprof serves net/http/pprof on $BERTH_PPROF, if set.
func startPprof(log *slog.Logger) {
	addr := os.Getenv(EnvPprof)
	if addr == "" {
		return
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	go func() {
		log.Info("serving profiles", "addr", addr)
		if err := http.ListenAndServe(addr, mux); err != nil {
			log.Warn("profiling listener stopped", "addr", addr, "err", err)
		}
	}()
}
