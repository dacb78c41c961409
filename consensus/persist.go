package consensus

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/hashicorp/go-memdb"
	"github.com/hashicorp/raft"

	"github.com/berth-dev/berth/api"
)

// A snapshot is a stream of JSON records, one per line:
//
//	{"t":"index","v":{"Key":"allocs","Value":42}}
//	{"t":"config","v":{...SchedulerConfig}}
//	{"t":"node","v":{...}}   {"t":"job","v":{...}}   {"t":"eval","v":{...}}
//	{"t":"alloc_job","k":1,"v":{...Job}}
//	{"t":"alloc","k":1,"v":{...Allocation without its job}}
//	{"t":"timetable","v":{"ID":"timetable","Rows":[...]}}   (see GCRequest)
//	{"t":"tombstone","v":{"server_id":"s3","index":7}}     (see ServerTombstoneRequest)
//
// Allocations share their job versions through "alloc_job" records (keyed
// by content, numbered in order of first use), so a snapshot of 100k
// allocations does not repeat a job 100k times. Tables are written in a fixed
// order and each in ID order, so two servers with the same state write the
// same bytes.
const (
	recIndex    = "index"
	recConfig   = "config"
	recNode     = "node"
	recJob      = "job"
	recEval     = "eval"
	recAllocJob = "alloc_job"
	recAlloc    = "alloc"

	recACLPolicy = "acl_policy"
	recACLToken  = "acl_token"
	recACLMeta   = "acl_meta"
	recSecret    = "secret"

	recTimetable = "timetable"
	recTombstone = "tombstone"
)

var recordTable = map[string]string{recIndex: TableIndex, recConfig: TableSchedulerConfig, recNode: TableNodes,
	recJob: TableJobs, recEval: TableEvals, recAlloc: TableAllocs,
	recACLPolicy: TableACLPolicies, recACLToken: TableACLTokens, recACLMeta: TableACLMeta, recSecret: TableSecrets,
	recTimetable: TableTimetable, recTombstone: TableServerTombstones}

type record struct {
	T string          `json:"t"`
	K int             `json:"k,omitempty"`
	V json.RawMessage `json:"v"`
}

type fsmSnapshot struct {
	db *memdb.MemDB
}

// Snapshot captures the current state in O(1): memdb snapshots are
// immutable trees, so Persist can stream one while Apply carries on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{db: f.state.cur.Load().db.Snapshot()}, nil
}

// Persist writes the snapshot to sink; Raft calls it off the apply path.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(sink, s.db); err != nil {
		sink.Cancel()
		return fmt.Errorf("consensus: persist snapshot: %w", err)
	}
	return sink.Close()
}

// Release has nothing to free: the memdb snapshot is garbage collected.
func (s *fsmSnapshot) Release() {}

func writeSnapshot(out io.Writer, db *memdb.MemDB) error {
	bw := bufio.NewWriterSize(out, 256<<10)
	txn := db.Txn(false)
	// Records are framed by hand: the tags need no escaping, and it saves
	// re-encoding every object through record.
	emit := func(t string, k int, v any) error {
		raw, ok := v.([]byte)
		if !ok {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode %s: %w", t, err)
			}
			raw = b
		}
		bw.WriteString(`{"t":"`)
		bw.WriteString(t)
		bw.WriteString(`",`)
		if k != 0 {
			bw.WriteString(`"k":`)
			bw.WriteString(strconv.Itoa(k))
			bw.WriteByte(',')
		}
		bw.WriteString(`"v":`)
		bw.Write(raw)
		_, err := bw.WriteString("}\n")
		return err
	}
	tables := []struct{ table, rec string }{
		{TableIndex, recIndex}, {TableSchedulerConfig, recConfig},
		{TableNodes, recNode}, {TableJobs, recJob}, {TableEvals, recEval},
		{TableACLMeta, recACLMeta}, {TableACLPolicies, recACLPolicy}, {TableACLTokens, recACLToken}, {TableSecrets, recSecret},
		{TableTimetable, recTimetable}, {TableServerTombstones, recTombstone},
	}
	for _, tb := range tables {
		it, err := txn.Get(tb.table, "id")
		if err != nil {
			return fmt.Errorf("read %s: %w", tb.table, err)
		}
		for obj := it.Next(); obj != nil; obj = it.Next() {
			if tb.table == TableSchedulerConfig {
				obj = obj.(*configEntry).Config
			}
			if err := emit(tb.rec, 0, obj); err != nil {
				return err
			}
		}
	}
	byPtr := map[*api.Job]int{}
	byContent := map[string]int{}
	it, err := txn.Get(TableAllocs, "id")
	if err != nil {
		return fmt.Errorf("read allocs: %w", err)
	}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a := *obj.(*api.Allocation)
		key := 0
		if a.Job != nil {
			var ok bool
			if key, ok = byPtr[a.Job]; !ok {
				b, err := json.Marshal(a.Job)
				if err != nil {
					return fmt.Errorf("encode job of allocation %s: %w", a.ID, err)
				}
				if key, ok = byContent[string(b)]; !ok {
					key = len(byContent) + 1
					byContent[string(b)] = key
					if err := emit(recAllocJob, key, b); err != nil {
						return err
					}
				}
				byPtr[a.Job] = key
			}
		}
		a.Job = nil
		if err := emit(recAlloc, key, &a); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Restore replaces the whole state with a snapshot's. It builds a new store
// off to the side and swaps it in at once, so readers see either the old
// state or the new one; blocking queries on the old one are woken.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	db, err := readSnapshot(rc)
	if err != nil {
		return fmt.Errorf("consensus: restore snapshot: %w", err)
	}
	f.state.swap(db)
	return nil
}

func readSnapshot(r io.Reader) (*memdb.MemDB, error) {
	db := newMemDB()
	txn := db.Txn(true)
	defer txn.Abort()
	dec := json.NewDecoder(bufio.NewReaderSize(r, 256<<10))
	jobs := map[int]*api.Job{}
	for n := 1; ; n++ {
		var rec record
		if err := dec.Decode(&rec); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("record %d: %w", n, err)
		}
		var obj any
		var err error
		switch rec.T {
		case recIndex:
			obj, err = unmarshal[indexEntry](rec.V)
		case recConfig:
			var c *SchedulerConfig
			if c, err = unmarshal[SchedulerConfig](rec.V); err == nil {
				obj = &configEntry{ID: configRowID, Config: *c}
			}
		case recNode:
			obj, err = unmarshal[api.Node](rec.V)
		case recJob:
			obj, err = unmarshal[api.Job](rec.V)
		case recEval:
			obj, err = unmarshal[api.Evaluation](rec.V)
		case recACLPolicy:
			obj, err = unmarshal[api.ACLPolicy](rec.V)
		case recACLToken:
			obj, err = unmarshal[ACLToken](rec.V)
		case recACLMeta:
			obj, err = unmarshal[aclMeta](rec.V)
		case recTimetable:
			obj, err = unmarshal[timetable](rec.V)
		case recTombstone:
			obj, err = unmarshal[ServerTombstone](rec.V)
		case recSecret:
			obj, err = unmarshal[Secret](rec.V)
		case recAllocJob:
			var j *api.Job
			if j, err = unmarshal[api.Job](rec.V); err == nil {
				jobs[rec.K] = j
			}
			continue
		case recAlloc:
			var a *api.Allocation
			if a, err = unmarshal[api.Allocation](rec.V); err == nil && rec.K != 0 {
				if a.Job = jobs[rec.K]; a.Job == nil {
					err = fmt.Errorf("allocation %s refers to job record %d, which no earlier record defines; the snapshot is damaged", a.ID, rec.K)
				}
			}
			obj = a
		default:
			return nil, fmt.Errorf("record %d: unknown type %q; was the snapshot written by a newer berth?", n, rec.T)
		}
		if err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", n, rec.T, err)
		}
		if err := txn.Insert(recordTable[rec.T], obj); err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", n, rec.T, err)
		}
	}
	if err := rebuildAllNodeAllocs(txn); err != nil {
		return nil, err
	}
	txn.Commit()
	return db, nil
}

// rebuildAllNodeAllocs fills the derived node_allocs table of a restored
// store.
func rebuildAllNodeAllocs(txn *memdb.Txn) error {
	it, err := txn.Get(TableAllocs, "id")
	if err != nil {
		return fmt.Errorf("read allocations: %w", err)
	}
	byNode := map[string][]*api.Allocation{}
	for obj := it.Next(); obj != nil; obj = it.Next() {
		a := obj.(*api.Allocation)
		byNode[a.NodeID] = append(byNode[a.NodeID], a) // in ID order
	}
	for id, list := range byNode {
		if err := txn.Insert(tableNodeAllocs, &nodeAllocs{NodeID: id, Allocs: list}); err != nil {
			return fmt.Errorf("write allocation list of node %q: %w", id, err)
		}
	}
	return nil
}

func unmarshal[T any](b []byte) (*T, error) {
	v := new(T)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, err
	}
	return v, nil
}
