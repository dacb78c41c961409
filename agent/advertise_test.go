package agent

import (
	"net"
	"testing"
)

func TestAdvertiseIP(t *testing.T) {
	tests := []struct {
		name string
		bind string
		want func(string) bool
	}{
		{name: "loopback dev bind is kept", bind: "127.0.0.1", want: func(s string) bool { return s == "127.0.0.1" }},
		{name: "a host address is kept", bind: "10.0.0.5", want: func(s string) bool { return s == "10.0.0.5" }},
		{name: "wildcard becomes one of the host's addresses", bind: "0.0.0.0", want: func(s string) bool {
			own := hostIPv4s(t)
			if len(own) == 0 {
				return s == "0.0.0.0"
			}
			return own[s]
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := advertiseIP(tt.bind); !tt.want(got) {
				t.Errorf("advertiseIP(%q) = %q", tt.bind, got)
			}
		})
	}
}

// hostIPv4s is the set of this host's global unicast IPv4 addresses.
func hostIPv4s(t *testing.T) map[string]bool {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatalf("interface addresses: %v", err)
	}
	out := map[string]bool{}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			out[n.IP.String()] = true
		}
	}
	return out
}
