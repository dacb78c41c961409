package agent

import (
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

func TestParseHealth(t *testing.T) {
	tests := []struct {
		name string
		in   *v1.HealthConfig
		args []string // nil: no probe
	}{
		{"none given", nil, nil},
		{"NONE", &v1.HealthConfig{Test: []string{"NONE"}}, nil},
		{"exec form", &v1.HealthConfig{Test: []string{"CMD", "curl", "-f", "http://localhost/"}}, []string{"curl", "-f", "http://localhost/"}},
		{"shell form", &v1.HealthConfig{Test: []string{"CMD-SHELL", "test -f /ok"}}, []string{"/bin/sh", "-c", "test -f /ok"}},
		{"empty CMD", &v1.HealthConfig{Test: []string{"CMD"}}, nil},
		{"unknown", &v1.HealthConfig{Test: []string{"WAT", "x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := parseHealth(tt.in)
			if tt.args == nil {
				if p != nil {
					t.Fatalf("want no probe, got %+v", p)
				}
				return
			}
			if p == nil || !slices.Equal(p.args, tt.args) {
				t.Fatalf("probe %+v, want args %q", p, tt.args)
			}
			if p.interval != defaultHealthInterval || p.timeout != defaultHealthTimeout || p.retries != defaultHealthRetries {
				t.Fatalf("defaults not applied: %+v", p)
			}
		})
	}
}

func TestHealthState(t *testing.T) {
	p := &healthProbe{interval: time.Second, timeout: time.Second, startPeriod: 10 * time.Second, retries: 2}
	type obs struct {
		ok    bool
		at    time.Duration
		want  string
		moved bool
	}
	steps := []obs{
		{false, 1 * time.Second, HealthStarting, true}, // a failure in the start period does not count
		{false, 5 * time.Second, HealthStarting, false},
		{true, 6 * time.Second, HealthHealthy, true},
		{false, 11 * time.Second, HealthHealthy, false}, // one failure of two
		{true, 12 * time.Second, HealthHealthy, false},  // the streak is reset
		{false, 13 * time.Second, HealthHealthy, false},
		{false, 14 * time.Second, HealthUnhealthy, true},
		{false, 15 * time.Second, HealthUnhealthy, false},
		{true, 16 * time.Second, HealthHealthy, true},
	}
	var st healthState
	for i, s := range steps {
		moved := st.observe(p, s.ok, s.at)
		if st.status != s.want || moved != s.moved {
			t.Fatalf("step %d (ok=%v at %s): status %q moved %v, want %q %v", i, s.ok, s.at, st.status, moved, s.want, s.moved)
		}
	}
}
