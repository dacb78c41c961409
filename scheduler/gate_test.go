package scheduler

import (
	"sync"
	"testing"
	"time"
)

// TestPlanGateOrder checks that waiting workers are let in by priority,
// then cost, then arrival, one at a time.
func TestPlanGateOrder(t *testing.T) {
	g := &planGate{}
	g.Enter(50, 50) // a bulk job is being planned
	type ask struct {
		name           string
		priority, cost int
	}
	asks := []ask{{"bulk-a", 50, 50}, {"bulk-b", 50, 50}, {"probe", 50, 1}, {"urgent-bulk", 80, 50}, {"low", 10, 1}}
	var (
		mu    sync.Mutex
		order []string
		wg    sync.WaitGroup
	)
	for i, a := range asks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.Enter(a.priority, a.cost)
			mu.Lock()
			order = append(order, a.name)
			mu.Unlock()
			g.Leave()
		}()
		// Wait until it is queued, so arrival order is known.
		for deadline := time.Now().Add(5 * time.Second); ; {
			g.mu.Lock()
			n := g.waiting.Len()
			g.mu.Unlock()
			if n == i+1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never queued at the gate", a.name)
			}
			time.Sleep(time.Millisecond)
		}
	}
	g.Leave()
	wg.Wait()
	want := []string{"urgent-bulk", "probe", "bulk-a", "bulk-b", "low"}
	for i := range want {
		if i >= len(order) || order[i] != want[i] {
			t.Fatalf("admitted %v, want %v", order, want)
		}
	}
	if g.busy {
		t.Fatal("gate still busy after everyone left")
	}
}
