package consensus

import (
	"fmt"

	"github.com/hashicorp/go-memdb"

	"github.com/berth-dev/berth/api"
)

// Table names of the state store, as used by StateStore.Index.
const (
	TableJobs            = "jobs"
	TableEvals           = "evals"
	TableAllocs          = "allocs"
	TableNodes           = "nodes"
	TableIndex           = "index"
	TableSchedulerConfig = "scheduler_config"

	// tableNodeAllocs is derived from the allocs table (see nodeAllocs):
	// it is kept in the same transaction as every allocation write,
	// rebuilt on restore and never persisted.
	tableNodeAllocs = "node_allocs"
)

// nodeAllocs is one row of the node_allocs table: every allocation of a
// node, terminal ones included, sorted by ID. The placement algorithm
// reads a node's allocations for every candidate node it weighs (tens of
// thousands of reads per second under load); a row makes that one lookup
// instead of a walk of the allocs table's node index. Rows are immutable:
// a write builds a new slice.
type nodeAllocs struct {
	NodeID string
	Allocs []*api.Allocation
}

// indexEntry is one row of the index table: the Raft index of the last
// write to a table.
type indexEntry struct {
	Key   string
	Value uint64
}

// configEntry is the single row of the scheduler_config table.
type configEntry struct {
	ID     string
	Config SchedulerConfig
}

const configRowID = "config"

func idIndex(field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: "id", Unique: true, Indexer: &memdb.StringFieldIndex{Field: field}}
}

func fieldIndex(name, field string) *memdb.IndexSchema {
	return &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: &memdb.StringFieldIndex{Field: field}}
}

func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableJobs: {Name: TableJobs, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("ID"),
		}},
		TableEvals: {Name: TableEvals, Indexes: map[string]*memdb.IndexSchema{
			"id":  idIndex("ID"),
			"job": fieldIndex("job", "JobID"),
		}},
		TableAllocs: {Name: TableAllocs, Indexes: map[string]*memdb.IndexSchema{
			"id":  idIndex("ID"),
			"job": fieldIndex("job", "JobID"),
			// No "node" index: a node's allocations are one node_allocs
			// row, which the same transaction keeps up to date.
		}},
		TableNodes: {Name: TableNodes, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("ID"),
			"name": fieldIndex("name", "Name"),
		}},
		TableIndex: {Name: TableIndex, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("Key"),
		}},
		TableSchedulerConfig: {Name: TableSchedulerConfig, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("ID"),
		}},
		TableTimetable:        timetableSchema(),
		TableServerTombstones: tombstoneSchema(),
		tableNodeAllocs: {Name: tableNodeAllocs, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("NodeID"),
		}},
	}}
	for name, t := range aclTables() { // acl.go
		s.Tables[name] = t
	}
	return s
}

// newMemDB builds an empty database; the schema is static, so failure is a
// programming error.
func newMemDB() *memdb.MemDB {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		panic(fmt.Sprintf("consensus: invalid state store schema: %v", err))
	}
	return db
}
