package consensus

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// Table names of the state store, as used by StateStore.Index.
const (
	TableJobs            = "jobs"
	TableEvals           = "evals"
	TableAllocs          = "allocs"
	TableNodes           = "nodes"
	TableIndex           = "index"
	TableSchedulerConfig = "scheduler_config"
)

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
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		TableJobs: {Name: TableJobs, Indexes: map[string]*memdb.IndexSchema{
			"id": idIndex("ID"),
		}},
		TableEvals: {Name: TableEvals, Indexes: map[string]*memdb.IndexSchema{
			"id":  idIndex("ID"),
			"job": fieldIndex("job", "JobID"),
		}},
		TableAllocs: {Name: TableAllocs, Indexes: map[string]*memdb.IndexSchema{
			"id":   idIndex("ID"),
			"job":  fieldIndex("job", "JobID"),
			"node": fieldIndex("node", "NodeID"),
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
	}}
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
