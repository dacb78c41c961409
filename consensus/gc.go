package consensus

import (
	"fmt"
	"sort"

	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
)

// GCRequestType removes what no one needs any more; see GCRequest.
const GCRequestType MessageType = 11

// GCRequest asks the FSM to remove old finished state:
//
//   - terminal evaluations (complete or failed);
//   - terminal allocations of stopped jobs, and of jobs that are gone;
//   - dead batch jobs (stopped, or every allocation finished, and no
//     evaluation pending or blocked), with their allocations and
//     evaluations.
//
// "Old" means last written before Now − Threshold. Objects carry Raft
// indexes, not times, so the FSM keeps a time table: each GC entry
// records (its index, Now), and an object is old when its ModifyIndex is
// at or below the newest recorded index whose time is at or before the
// cutoff. Both times come from the request (the leader's clock), never
// from a clock inside Apply, so every server removes the same objects.
// The table is coarse (one row per GC run), which can only make an
// object look newer than it is: collection is late, never early.
//
// Threshold 0 collects everything finished before this entry (`berth
// system gc`).
type GCRequest struct {
	Now       int64 `json:"now"`       // unix nanoseconds, stamped by the leader
	Threshold int64 `json:"threshold"` // nanoseconds
}

// GCResult counts what a GC entry removed.
type GCResult struct {
	Evals  int `json:"evals"`
	Allocs int `json:"allocs"`
	Jobs   int `json:"jobs"`
}

// TableTimetable holds the one row of (Raft index, time) pairs recorded
// by GC entries.
const TableTimetable = "timetable"

// maxTimetableRows bounds the time table: at one row per GC run (every
// few minutes) it spans days, far longer than any sensible threshold.
const maxTimetableRows = 1024

// Witness is one row of the time table: the entry at Index was written at
// Time (unix nanoseconds, the leader's clock).
type Witness struct {
	Index uint64 `json:"index"`
	Time  int64  `json:"time"`
}

// timetable is the single row of TableTimetable. It is replaced, never
// changed in place.
type timetable struct {
	ID   string
	Rows []Witness
}

const timetableRowID = "timetable"

func timetableSchema() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableTimetable, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("ID")}}
}

// indexAt returns the newest recorded index whose time is at or before t,
// or 0 when there is none.
func (tt *timetable) indexAt(t int64) uint64 {
	if tt == nil {
		return 0
	}
	// Times only grow with the index (witness refuses older ones).
	i := sort.Search(len(tt.Rows), func(i int) bool { return tt.Rows[i].Time > t })
	if i == 0 {
		return 0
	}
	return tt.Rows[i-1].Index
}

func (w *writer) timetable() *timetable {
	if obj := w.first(TableTimetable, timetableRowID); obj != nil {
		return obj.(*timetable)
	}
	return nil
}

// witness records that this entry was written at t. A time not after the
// last one recorded (a new leader whose clock is behind) is skipped, so
// the table stays ordered.
func (w *writer) witness(old *timetable, t int64) {
	var rows []Witness
	if old != nil {
		if n := len(old.Rows); n > 0 && old.Rows[n-1].Time >= t {
			return
		}
		rows = old.Rows
	}
	if len(rows) >= maxTimetableRows {
		rows = rows[len(rows)-maxTimetableRows+1:]
	}
	next := make([]Witness, len(rows), len(rows)+1)
	copy(next, rows)
	next = append(next, Witness{Index: w.index, Time: t})
	if err := w.txn.Insert(TableTimetable, &timetable{ID: timetableRowID, Rows: next}); err != nil && w.err == nil {
		w.err = fmt.Errorf("update the time table: %w", err)
	}
}

func evalTerminal(e *api.Evaluation) bool {
	return e.Status == api.EvalStatusComplete || e.Status == api.EvalStatusFailed
}

// gc applies a GCRequest. It walks the tables in ID order and decides
// from the stored state and the request alone.
func (w *writer) gc(req *GCRequest) (*GCResult, error) {
	if req.Now <= 0 || req.Threshold < 0 {
		return nil, fmt.Errorf("%w: gc needs a positive now and a threshold >= 0", ErrInvalidRequest)
	}
	tt := w.timetable()
	w.witness(tt, req.Now)
	cutoff := tt.indexAt(req.Now - req.Threshold)
	if req.Threshold == 0 {
		cutoff = w.index - 1 // everything before this entry
	}
	res := &GCResult{}
	if cutoff == 0 {
		return res, nil
	}
	old := func(modifyIndex uint64) bool { return modifyIndex <= cutoff }

	jobs := w.all(TableJobs, "id")
	deadJobs := map[string]bool{}
	for _, obj := range jobs {
		j := obj.(*api.Job)
		if j.Type != api.JobTypeBatch || !old(j.ModifyIndex) {
			continue
		}
		allocs := w.byJob(TableAllocs, j.ID)
		evals := w.byJob(TableEvals, j.ID)
		dead := j.Stop || len(allocs) > 0
		for _, a := range allocs {
			if al := a.(*api.Allocation); !al.Terminal() || !old(al.ModifyIndex) {
				dead = false
			}
		}
		for _, e := range evals {
			if ev := e.(*api.Evaluation); !evalTerminal(ev) || !old(ev.ModifyIndex) {
				dead = false
			}
		}
		if dead {
			deadJobs[j.ID] = true
			w.delete(TableJobs, j)
			res.Jobs++
		}
	}

	for _, obj := range w.all(TableEvals, "id") {
		e := obj.(*api.Evaluation)
		if deadJobs[e.JobID] || (evalTerminal(e) && old(e.ModifyIndex)) {
			w.delete(TableEvals, e)
			res.Evals++
		}
	}

	touched := map[string]bool{}
	for _, obj := range w.all(TableAllocs, "id") {
		a := obj.(*api.Allocation)
		collect := deadJobs[a.JobID]
		if !collect && a.Terminal() && old(a.ModifyIndex) {
			j := w.job(a.JobID)
			collect = j == nil || j.Stop
		}
		if collect {
			w.delete(TableAllocs, a)
			touched[a.NodeID] = true
			res.Allocs++
		}
	}
	// An agent watches its node's allocations by the newest index among
	// them (and the node's own); a deletion leaves nothing to carry a new
	// index, so the node is stamped with this entry's, as a purge does.
	nodes := make([]string, 0, len(touched))
	for id := range touched {
		nodes = append(nodes, id)
	}
	sort.Strings(nodes)
	for _, id := range nodes {
		if n := w.node(id); n != nil {
			c := CopyNode(n)
			c.ModifyIndex = w.index
			w.insert(TableNodes, c)
		}
	}
	return res, nil
}

// all lists a table through an index, in index order.
func (w *writer) all(table, index string, args ...any) []any {
	it, err := w.txn.Get(table, index, args...)
	if err != nil {
		if w.err == nil {
			w.err = fmt.Errorf("read %s: %w", table, err)
		}
		return nil
	}
	var out []any
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, obj)
	}
	return out
}

func (w *writer) byJob(table, jobID string) []any { return w.all(table, "job", jobID) }

// Timetable returns the (index, time) pairs recorded by GC entries,
// oldest first.
func (s *StateStore) Timetable() []Witness {
	obj, err := s.txn().First(TableTimetable, "id", timetableRowID)
	if err != nil {
		panic(readErr("time table", err))
	}
	if obj == nil {
		return nil
	}
	return append([]Witness(nil), obj.(*timetable).Rows...)
}
