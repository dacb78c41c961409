package gpu

import (
	"fmt"
	"syscall"
)

// deviceNode reads a host device node's type and numbers.
func deviceNode(path string) (DeviceNode, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return DeviceNode{}, fmt.Errorf("stat %s: %w", path, err)
	}
	var typ byte
	switch st.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		typ = 'c'
	case syscall.S_IFBLK:
		typ = 'b'
	default:
		return DeviceNode{}, fmt.Errorf("%s is not a device node", path)
	}
	dev := uint64(st.Rdev)
	major := (dev>>8)&0xfff | (dev>>32)&^uint64(0xfff)
	minor := dev&0xff | (dev>>12)&^uint64(0xff)
	return DeviceNode{
		Path: path, Type: typ, Major: int64(major), Minor: int64(minor),
		Mode: st.Mode & 0o777, UID: st.Uid, GID: st.Gid,
	}, nil
}
