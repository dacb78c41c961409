package engine

import (
	"fmt"

	"github.com/berth-dev/berth/runtime/container"
)

// applyGPUs gives the container the GPUs assigned to its allocation (their
// UUIDs): device nodes, device-cgroup rules, driver libraries and the
// NVIDIA_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES variables.
func (e *Engine) applyGPUs(uuids []string, spec *container.Spec) error {
	if len(uuids) == 0 {
		return nil
	}
	return fmt.Errorf("engine: %d GPU(s) assigned but this node cannot give GPUs to containers yet", len(uuids))
}
