//go:build linux

package container

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/cgroups"
	"github.com/berth-dev/berth/runtime/logs"
)

func TestOOMKilledIsReported(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "")
	s.Args = []string{"tail", "/dev/zero"} // one endless line, held in memory
	s.Resources = cgroups.Resources{MemoryLimit: 32 << 20}
	r := run(t, m, s)
	if !r.exit.OOMKilled || r.exit.Code != 137 {
		t.Fatalf("exit %+v, want OOMKilled with code 137", r.exit)
	}
	c, _ := m.Get(s.ID)
	if !c.State.OOMKilled || c.State.Status != StatusExited {
		t.Errorf("state %+v, want exited and OOMKilled", c.State)
	}
}

func TestCPUQuotaEnforced(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "timeout 2 sh -c 'while :; do :; done'; true")
	quota, period := cgroups.CPUQuota(0.5)
	s.Resources = cgroups.Resources{CPUQuota: quota, CPUPeriod: period}
	r := run(t, m, s)
	if r.exit.Code != 0 {
		t.Fatalf("exit %+v", r.exit)
	}
	st, err := m.Stats(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := m.Get(s.ID)
	wall := c.State.FinishedAt.Sub(c.State.StartedAt)
	ratio := float64(st.CPUUsageNanos) / float64(wall.Nanoseconds())
	t.Logf("cpu %v over wall %v: %.2f", time.Duration(st.CPUUsageNanos), wall, ratio)
	if wall < 1900*time.Millisecond || ratio > 0.7 || st.CPUUsageNanos == 0 {
		t.Errorf("CPU/wall = %.2f over %v, want about 0.5 (at most 0.7) with --cpus 0.5", ratio, wall)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	m := newManager(t)
	// The bomb runs in a subshell, which exits when a fork fails; the count
	// uses only builtins, as no fork is left.
	s := testSpec(t, `(while :; do sleep 30 & done) 2>/dev/null; set -- /proc/[0-9]*; echo $#`)
	s.Resources = cgroups.Resources{PidsLimit: 20}
	r := run(t, m, s)
	n, err := strconv.Atoi(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("exit %+v stdout %q stderr %q", r.exit, r.stdout, r.stderr)
	}
	if n > 20 || n < 10 {
		t.Errorf("%d processes in the container, want between 10 and the limit of 20", n)
	}
}

func TestStats(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, "echo ready; sleep 100")
	s.Resources = cgroups.Resources{MemoryLimit: 64 << 20, PidsLimit: 50}
	start(t, m, s)
	waitLog(t, m, s.ID, "ready")
	st, err := m.Stats(s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimit != 64<<20 || st.Pids < 1 || st.PidsLimit != 50 || st.MemoryUsage == 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestLogsStreamsAndRotation(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, `echo out1; echo err1 >&2; printf 'no newline'`)
	r := run(t, m, s)
	if r.stdout != "out1\nno newline" || r.stderr != "err1\n" {
		t.Errorf("stdout %q stderr %q", r.stdout, r.stderr)
	}
	data, _ := os.ReadFile(filepath.Join(m.dir(s.ID), logFile))
	for _, l := range lines(string(data)) {
		e, err := logs.Decode([]byte(l))
		if err != nil || e.Time.IsZero() || time.Since(e.Time) > time.Minute {
			t.Errorf("line %q: %+v %v", l, e, err)
		}
	}

	s = testSpec(t, `i=0; while [ $i -lt 2000 ]; do echo "line $i"; i=$((i+1)); done`)
	s.LogMaxSize, s.LogMaxFiles = 8192, 3
	r = run(t, m, s)
	l := lines(r.stdout)
	if l[len(l)-1] != "line 1999" || l[0] == "line 0" || len(l) > 3*8192/40 {
		t.Errorf("rotated log kept %d lines from %q to %q", len(l), l[0], l[len(l)-1])
	}
	for i := 1; i < len(l); i++ {
		a, _ := strconv.Atoi(strings.TrimPrefix(l[i-1], "line "))
		b, _ := strconv.Atoi(strings.TrimPrefix(l[i], "line "))
		if b != a+1 {
			t.Fatalf("lines out of order at %q, %q", l[i-1], l[i])
		}
	}
	for _, f := range []string{logFile, logFile + ".1", logFile + ".2"} {
		st, err := os.Stat(filepath.Join(m.dir(s.ID), f))
		if err != nil || st.Size() > 8192 {
			t.Errorf("%s: %v, size over 8192", f, err)
		}
	}
	if _, err := os.Stat(filepath.Join(m.dir(s.ID), logFile+".3")); err == nil {
		t.Error("kept more than LogMaxFiles files")
	}

	tail, err := m.Logs(s.ID, LogOptions{Tail: 2})
	if err != nil {
		t.Fatal(err)
	}
	data, _ = io.ReadAll(tail)
	if n := strings.Count(string(data), "\n"); n != 2 || !strings.Contains(string(data), `"line 1999\n"`) {
		t.Errorf("tail 2: %q", data)
	}
}

func TestLogsEscapeBytes(t *testing.T) {
	m := newManager(t)
	r := run(t, m, testSpec(t, `printf 'bin\377\001<&>\t"\\ \342\200\250 é\n'`))
	if want := "bin\uFFFD\u0001<&>\t\"\\ \u2028 é\n"; r.stdout != want {
		t.Errorf("logged %q, want %q", r.stdout, want)
	}
}

func TestLogsFollow(t *testing.T) {
	m := newManager(t)
	s := testSpec(t, `for i in 1 2 3; do echo tick $i; sleep 0.2; done`)
	start(t, m, s)
	r, err := m.Logs(s.ID, LogOptions{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	done := make(chan []string)
	go func() {
		var got []string
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			e, _ := logs.Decode(sc.Bytes())
			got = append(got, strings.TrimSpace(e.Log))
		}
		done <- got
	}()
	select {
	case got := <-done:
		if strings.Join(got, ",") != "tick 1,tick 2,tick 3" {
			t.Errorf("followed %q", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("follow did not end after the container exited")
	}
	if _, err := m.Wait(context.Background(), s.ID); err != nil {
		t.Fatal(err)
	}
}
