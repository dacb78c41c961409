//go:build !linux

package agent

func hostAttributes(string) map[string]string { return map[string]string{} }
