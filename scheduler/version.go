package scheduler

// Version is the build's version, reported by /v1/agent/health. The berth
// binary sets it at start-up.
var Version = "dev"
