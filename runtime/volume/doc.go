// Package volume keeps the named volumes of one host, the way Docker's
// "local" volume driver does, and parses the -v mount specs of `berth run`
// and of job specs.
//
// A volume is a directory, ROOT/NAME/_data, that containers bind-mount and
// that outlives them. Its metadata (creation time, labels, whether it is
// anonymous, and the IDs of the containers that use it) sits beside it in
// ROOT/NAME/meta.json, replaced atomically on every change, so the list of
// users survives an agent restart. ROOT is DATA_DIR/volumes.
//
//	s, err := volume.Open(filepath.Join(dataDir, "volumes"))
//	m, err := volume.ParseMount("data:/var/lib/data:ro")
//	v, err := s.Acquire(m.Source, containerID) // creates "data" if missing
//	// bind-mount v.Mountpoint at m.Destination
//	err = s.Release(m.Source, containerID)     // on container removal
//	err = s.Remove("data", false)              // ErrInUse while used
//
// Removing a container releases its volumes but never deletes their data;
// Remove refuses a volume that a container still uses unless forced, and
// Prune deletes every volume no container uses.
package volume
