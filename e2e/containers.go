package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// KillContainers kills the processes of the containers whose state
// directories match glob (for example DATA/containers/*), through the
// cgroups named after their IDs, and removes those cgroups. Containers
// outlive the agents that started them by design, so a test that kills its
// berth processes cleans up their containers with this.
func KillContainers(glob string) {
	dirs, _ := filepath.Glob(glob)
	for _, d := range dirs {
		id := filepath.Base(d)
		if len(id) != 64 {
			continue
		}
		hier, _ := filepath.Glob("/sys/fs/cgroup/*/berth/" + id)
		for round := 0; round < 50; round++ {
			alive := false
			for _, cg := range hier {
				b, err := os.ReadFile(filepath.Join(cg, "cgroup.procs"))
				if err != nil {
					continue
				}
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						alive = true
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if !alive {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		for _, cg := range hier {
			_ = os.Remove(cg)
		}
	}
}
