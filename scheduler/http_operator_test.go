package scheduler

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/consensus"
)

// TestSchedulerConfigEndpoint drives GET/PUT
// /v1/operator/scheduler/configuration on a real server and checks that
// the change reaches placement: with spread, a second copy goes to the
// empty node instead of being packed beside the first.
func TestSchedulerConfigEndpoint(t *testing.T) {
	s, c := startLeader(t, nil)
	get := func() consensus.SchedulerConfig {
		t.Helper()
		var sc consensus.SchedulerConfig
		if _, err := c.Do(http.MethodGet, "/v1/operator/scheduler/configuration", nil, nil, &sc); err != nil {
			t.Fatalf("get configuration: %v", err)
		}
		return sc
	}
	if sc := get(); sc.Algorithm != consensus.AlgorithmBinpack || sc.PreemptionEnabled {
		t.Fatalf("default configuration %+v, want binpack without preemption", sc)
	}

	tests := []struct {
		name, body string
		code       int
		errHas     string
	}{
		{"unknown algorithm", `{"algorithm":"random"}`, 400, "algorithm"},
		{"unknown field", `{"algorithm":"spread","preemption":true}`, 400, "preemption"},
		{"not json", `{`, 400, ""},
		{"spread with preemption", `{"algorithm":"spread","preemption_enabled":true}`, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, hdr, body := rawRequest(t, s, http.MethodPut, "/v1/operator/scheduler/configuration", tc.body)
			if code != tc.code || !strings.Contains(body, tc.errHas) {
				t.Fatalf("PUT %s: %d %s, want %d mentioning %q", tc.body, code, body, tc.code, tc.errHas)
			}
			if hdr.Get(api.HeaderIndex) == "" {
				t.Fatal("no index header")
			}
		})
	}
	sc := get()
	if sc.Algorithm != consensus.AlgorithmSpread || !sc.PreemptionEnabled || sc.ModifyIndex == 0 {
		t.Fatalf("configuration after PUT: %+v", sc)
	}
	// A refused PUT changed nothing.
	if code, _, _ := rawRequest(t, s, http.MethodPut, "/v1/operator/scheduler/configuration", `{"algorithm":"x"}`); code != 400 {
		t.Fatalf("bad PUT: %d", code)
	}
	if again := get(); again != sc {
		t.Fatalf("a refused PUT changed the configuration: %+v → %+v", sc, again)
	}

	// A blocking GET wakes on the next change.
	woke := make(chan consensus.SchedulerConfig, 1)
	go func() {
		var out consensus.SchedulerConfig
		if _, err := c.Do(http.MethodGet, "/v1/operator/scheduler/configuration",
			map[string][]string{"index": {jsonNum(sc.ModifyIndex)}, "wait": {"10s"}}, nil, &out); err == nil {
			woke <- out
		}
	}()
	time.Sleep(100 * time.Millisecond)
	if _, err := c.Do(http.MethodPut, "/v1/operator/scheduler/configuration", nil,
		&consensus.SchedulerConfig{Algorithm: consensus.AlgorithmSpread}, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-woke:
		if got.PreemptionEnabled || got.ModifyIndex <= sc.ModifyIndex {
			t.Fatalf("blocking GET returned %+v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking GET did not wake on the change")
	}

	// Placement uses it: binpack stacks two one-copy jobs on one node,
	// spread then picks the empty node.
	registerNodes(t, c, simNode("n1", 8000, 8192), simNode("n2", 8000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1", "n2")
	place := func(job string) string {
		t.Helper()
		if _, err := c.Jobs().Register(simpleJob(job, 1, 500, 512)); err != nil {
			t.Fatal(err)
		}
		return waitLive(t, c, job, 1)[0].NodeID
	}
	setAlgo := func(algo string) {
		t.Helper()
		if _, err := c.Do(http.MethodPut, "/v1/operator/scheduler/configuration", nil,
			&consensus.SchedulerConfig{Algorithm: algo}, nil); err != nil {
			t.Fatal(err)
		}
	}
	setAlgo(consensus.AlgorithmBinpack)
	if first, second := place("packed-a"), place("packed-b"); first != second {
		t.Fatalf("binpack placed two one-copy jobs on %s and %s", first, second)
	} else {
		setAlgo(consensus.AlgorithmSpread)
		if third := place("spread"); third == first {
			t.Fatalf("spread placed a job on the busy node %s beside an empty one", third)
		}
	}
}

func jsonNum(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// TestSystemGC checks PUT /v1/system/gc on a real server: a finished
// batch job and its evaluations go, a running service job stays.
func TestSystemGC(t *testing.T) {
	s, c := startLeader(t, nil)
	registerNodes(t, c, simNode("n1", 4000, 8192))
	heartbeat(t, c, 200*time.Millisecond, "n1")
	batch := simpleJob("once", 1, 100, 64)
	batch.Type = api.JobTypeBatch
	for _, j := range []*api.Job{batch, simpleJob("web", 1, 100, 64)} {
		if _, err := c.Jobs().Register(j); err != nil {
			t.Fatal(err)
		}
	}
	var upd []*api.Allocation
	for _, a := range waitLive(t, c, "once", 1) {
		upd = append(upd, &api.Allocation{ID: a.ID, ClientStatus: api.AllocClientComplete,
			TaskStates: map[string]*api.TaskState{"t": {State: api.TaskStateDead}}})
	}
	waitLive(t, c, "web", 1)
	if _, err := c.Allocations().UpdateStatus(upd); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "batch job dead", func() bool {
		j, _, err := c.Jobs().Info("once", nil)
		return err == nil && j.Status == api.JobStatusDead
	})
	var wr api.WriteResponse
	if _, err := c.Do(http.MethodPut, "/v1/system/gc", nil, nil, &wr); err != nil || wr.Index == 0 {
		t.Fatalf("system gc: %+v, %v", wr, err)
	}
	if _, _, err := c.Jobs().Info("once", nil); !api.IsNotFound(err) {
		t.Fatalf("dead batch job still there after gc: %v", err)
	}
	if n := len(liveAllocs(jobAllocs(t, c, "web"))); n != 1 {
		t.Fatalf("running job has %d live allocations after gc", n)
	}
	evals, err := s.raft.State().Evals(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evals {
		if e.Status == api.EvalStatusComplete || e.JobID == "once" {
			t.Fatalf("evaluation %s (%s, %s) left after gc", e.ID, e.JobID, e.Status)
		}
	}
	if got := s.raft.State().Timetable(); len(got) != 1 {
		t.Fatalf("time table after one gc: %v", got)
	}
}
