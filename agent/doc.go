// Package agent is the worker role of berth: `berth agent`, and the agent
// half of `berth dev`. An agent
//
//   - fingerprints its host (CPU, memory, kernel, OS, cgroup version, disk,
//     GPUs) and registers it with the servers as a node, then heartbeats;
//   - finds servers through the gossip pool (or the addresses it was given);
//   - watches its allocations with a blocking query and runs each task as a
//     container through runtime/engine, applying the group's restart policy;
//   - reports task and allocation status back to the servers;
//   - keeps what it runs in a local bbolt database, so that a restarted
//     agent re-attaches to its containers instead of restarting them, and
//     reports exits that happened while it was down;
//   - serves the agent HTTP API (logs, exec, stats, images, volumes) that
//     the servers proxy for the CLI.
//
// Restarting an agent never kills a running container (DESIGN invariant 4):
// Shutdown stops the agent's loops and leaves the containers to their shims.
package agent
