package scheduler

import (
	"errors"
	"testing"
)

func TestConfigRefusesInsecureBind(t *testing.T) {
	tests := []struct {
		name     string
		bind     string
		adv      string
		insecure bool
		want     error
	}{
		{name: "loopback", bind: "127.0.0.1"},
		{name: "host address without TLS", bind: "10.0.0.1", want: ErrInsecure},
		{name: "any address without TLS", bind: "0.0.0.0", adv: "10.0.0.1", want: ErrInsecure},
		{name: "insecure allowed", bind: "10.0.0.1", insecure: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Config{DataDir: t.TempDir(), BindAddr: tt.bind, AdvertiseAddr: tt.adv, Insecure: tt.insecure})
			if !errors.Is(err, tt.want) {
				t.Fatalf("New: %v, want %v", err, tt.want)
			}
		})
	}
}
