package main

import (
	"log/slog"
	"os"
	"strings"
)

// roleLogger is the structured logger of the long-running roles (server,
// agent, dev): text to stderr, level from BERTH_LOG_LEVEL (debug, info,
// warn, error; default info).
func roleLogger() *slog.Logger {
	level := slog.LevelInfo
	switch strings.ToLower(os.Getenv("BERTH_LOG_LEVEL")) {
	case "debug":
		level = slog.LevelDebug
	case "warn", "warning":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}
