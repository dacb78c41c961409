//go:build linux

package container

import (
	"context"
	"testing"
	"time"
)

// BenchmarkSeccompStart is what Docker's default seccomp profile costs a
// container's start: the life of a container running /bin/true, once
// with the default profile and once unconfined, interleaved iteration by
// iteration (the order alternating) so that the machine's load falls on
// both alike. It reports each one's start and whole-life time, the CPU
// time of all their processes, and the ratios (target: default/unconfined
// ≤ 1.05).
func BenchmarkSeccompStart(b *testing.B) {
	m := newManager(b)
	layer := busyboxLayer(b)
	ctx := context.Background()
	life := func(profile string) (start, total, cpu time.Duration) {
		id := testID(b)
		c0 := cpuTime()
		t0 := time.Now()
		if _, err := m.Create(&Spec{ID: id, Layers: []string{layer}, Args: []string{"/bin/true"}, Seccomp: profile}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Start(id); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if ex, err := m.Wait(ctx, id); err != nil || ex.Code != 0 {
			b.Fatalf("wait: %+v %v", ex, err)
		}
		if err := m.Remove(id, false); err != nil {
			b.Fatal(err)
		}
		total = time.Since(t0)
		// The shim is reaped by Start's goroutine as it exits: give it
		// the moment it needs, so its CPU time (and its children's) is
		// counted here and not in the next container's.
		time.Sleep(time.Millisecond)
		return t2.Sub(t1), total, cpuTime() - c0
	}
	// The first start of each pays for compiling the profile and sealing
	// the binary, once per agent.
	life(SeccompDefault)
	life(SeccompUnconfined)
	var startD, startU, totalD, totalU, cpuD, cpuU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []string{SeccompDefault, SeccompUnconfined}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, p := range order {
			s, t, c := life(p)
			if p == SeccompDefault {
				startD += s
				totalD += t
				cpuD += c
			} else {
				startU += s
				totalU += t
				cpuU += c
			}
		}
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(float64(startD.Microseconds())/n, "default-start-µs/op")
	b.ReportMetric(float64(startU.Microseconds())/n, "unconfined-start-µs/op")
	b.ReportMetric(float64(startD)/float64(startU), "start-ratio")
	b.ReportMetric(float64(totalD.Microseconds())/n, "default-life-µs/op")
	b.ReportMetric(float64(totalU.Microseconds())/n, "unconfined-life-µs/op")
	b.ReportMetric(float64(totalD)/float64(totalU), "life-ratio")
	// CPU time of every process of the life (this one, the shim, init and
	// /bin/true): the steadiest measure on a loaded machine.
	b.ReportMetric(float64(cpuD.Microseconds())/n, "default-cpu-µs/op")
	b.ReportMetric(float64(cpuU.Microseconds())/n, "unconfined-cpu-µs/op")
	b.ReportMetric(float64(cpuD)/float64(cpuU), "cpu-ratio")
}

// BenchmarkSeccompCompile is the one-time cost of compiling Docker's
// default profile (cached per profile and capability set afterwards).
func BenchmarkSeccompCompile(b *testing.B) {
	caps, _ := ParseCaps(nil, nil)
	for i := 0; i < b.N; i++ {
		filters.Clear()
		if _, err := seccompFor(&Spec{}, caps); err != nil {
			b.Fatal(err)
		}
	}
}
