// Command berth is the single binary of berth: server, agent, dev mode and
// the docker-style client. Each command group lives in its own file and
// registers itself with addCommand from an init function.
package main

import (
	"os"

	"github.com/berth-dev/berth/runtime/reexec"
)

func main() {
	if reexec.Run() {
		return
	}
	os.Exit(run(os.Args[1:]))
}
