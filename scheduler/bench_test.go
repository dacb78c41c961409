package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
)

// BenchmarkPlacement measures the whole server pipeline on one server with
// Raft on disk: HTTP job register → Raft → broker → workers → plan applier
// → Raft. Each op submits one job of 10 (or 1) copies, 16 submissions in
// flight; it reports placements per second once every copy is committed.
//
//	go test -run x -bench Placement -benchtime 200x ./scheduler/
func BenchmarkPlacement(b *testing.B) {
	for _, tc := range []struct{ nodes, perJob, workers int }{{100, 10, 2}, {1000, 10, 2}, {1000, 1, 2}, {1000, 1, 8}} {
		nodes, perJob := tc.nodes, tc.perJob
		b.Run(fmt.Sprintf("nodes=%d/count=%d/workers=%d", nodes, perJob, tc.workers), func(b *testing.B) {
			cfg := Config{NodeName: "bench", DataDir: b.TempDir(), BindAddr: "127.0.0.1", BootstrapExpect: 1,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HeartbeatTTL: time.Hour, Workers: tc.workers}
			s, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer s.Shutdown()
			for !s.IsLeader() {
				time.Sleep(10 * time.Millisecond)
			}
			c, _ := api.NewClient("http://" + s.HTTPAddr())
			var wg sync.WaitGroup
			sem := make(chan struct{}, 16)
			for i := 0; i < nodes; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					n := simNode(fmt.Sprintf("node-%05d", i), 32000, 128<<10)
					if _, err := c.Nodes().Register(n); err != nil {
						b.Error(err)
					}
				}(i)
			}
			wg.Wait()
			want := s.metrics.placed.Load() + uint64(b.N*perJob)
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func(i int) {
					defer wg.Done()
					defer func() { <-sem }()
					if _, err := c.Jobs().Register(simpleJob(fmt.Sprintf("job-%d", i), perJob, 100, 64)); err != nil {
						b.Error(err)
					}
				}(i)
			}
			wg.Wait()
			for s.metrics.placed.Load() < want {
				time.Sleep(time.Millisecond)
			}
			el := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N*perJob)/el.Seconds(), "placements/s")
			checkNoOvercommitB(b, s)
		})
	}
}

func checkNoOvercommitB(b *testing.B, s *Server) {
	st := s.raft.State()
	nodes, _ := st.Nodes(nil)
	for _, n := range nodes {
		allocs, _ := st.AllocsByNode(nil, n.ID)
		cpu := 0
		for _, a := range allocs {
			if !a.Terminal() {
				cpu += a.Resources.CPU
			}
		}
		if cpu > n.Resources.CPU {
			b.Fatalf("node %s overcommitted", n.ID)
		}
	}
}

// BenchmarkSingleAllocLatency measures, for a count=1 job, the time from
// the HTTP submission to the allocation being committed (seen through a
// blocking query), one job at a time, on 1000 nodes. It reports p50/p99.
//
//	go test -run x -bench SingleAllocLatency -benchtime 500x ./scheduler/
func BenchmarkSingleAllocLatency(b *testing.B) {
	cfg := Config{NodeName: "bench", DataDir: b.TempDir(), BindAddr: "127.0.0.1", BootstrapExpect: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), HeartbeatTTL: time.Hour}
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Shutdown()
	for !s.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}
	c, _ := api.NewClient("http://" + s.HTTPAddr())
	for i := 0; i < 1000; i++ {
		if _, err := c.Nodes().Register(simNode(fmt.Sprintf("node-%05d", i), 32000, 128<<10)); err != nil {
			b.Fatal(err)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("one-%d", i)
		start := time.Now()
		r, err := c.Jobs().Register(simpleJob(name, 1, 100, 64))
		if err != nil {
			b.Fatal(err)
		}
		idx := r.Index
		for {
			allocs, meta, err := c.Jobs().Allocations(name, &api.QueryOptions{WaitIndex: idx, WaitTime: 10 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			if len(allocs) == 1 {
				break
			}
			idx = meta.LastIndex
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
