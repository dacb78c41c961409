// Package deploy holds what a host needs to run berth under systemd: the
// units berth-server.service and berth-agent.service, example configs
// (server.yaml, agent.yaml), install.sh, and example job specs in jobs/.
// It has no Go code of its own; its tests check that the install script
// lays the files out with the right modes and that every example job
// parses and validates. README.md documents the config format.
package deploy
