// Package api holds berth's wire types (jobs, groups, tasks, nodes,
// allocations, evaluations, images) and the Go HTTP client that the CLI and
// the agent use to talk to a server. It imports only the standard library,
// so every other package can depend on it.
//
// Field names in JSON are snake_case and match the job spec format in
// DESIGN.md; YAML job files are converted to JSON and decoded into the same
// structs, so there is one set of tags.
package api
