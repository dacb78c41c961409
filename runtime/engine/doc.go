// Package engine joins berth's node-local runtime pieces into one object the
// agent drives: the image store, the container manager and the volume
// store. It turns an allocation's task (api.Task) into a container spec the
// way Docker does: the image's Entrypoint and Cmd combined with the task's,
// environment merged over the image's, named and anonymous volumes and bind
// mounts resolved, CPU and memory turned into cgroup limits.
//
// The engine keeps a small record per container (which allocation, task,
// image and volumes it belongs to) next to the container manager's own
// state, so that a restarted agent can describe containers it did not
// create, and so removing a container releases its volumes.
package engine
