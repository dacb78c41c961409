package api

import (
	"strings"
	"testing"
)

func TestJobTasks(t *testing.T) {
	a, b, c := &Task{Name: "a"}, &Task{Name: "b"}, &Task{Name: "c"}
	j := &Job{Groups: []*Group{{Name: "g1", Tasks: []*Task{a, nil, b}}, nil, {Name: "g2", Tasks: []*Task{c}}}}
	var got []string
	for g, t := range j.Tasks() {
		got = append(got, g.Name+"/"+t.Name)
	}
	if want := "g1/a g1/b g2/c"; strings.Join(got, " ") != want {
		t.Fatalf("Tasks() = %v, want %s", got, want)
	}
	got = got[:0]
	for _, t := range j.Tasks() {
		got = append(got, t.Name)
		break
	}
	if len(got) != 1 {
		t.Fatalf("a break still yielded %v", got)
	}
	var nilJob *Job
	for range nilJob.Tasks() {
		t.Fatal("a nil job yielded a task")
	}
}
