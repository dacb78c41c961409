//go:build !linux

package gpu

func deviceNode(path string) (DeviceNode, error) { return DeviceNode{}, ErrNotSupported }
