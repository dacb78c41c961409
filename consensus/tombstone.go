package consensus

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// ServerTombstoneRequestType records or clears a server tombstone; see
// ServerTombstoneRequest.
const ServerTombstoneRequestType MessageType = 12

// ServerTombstoneRequest marks a server, by Raft ID, as removed on
// purpose while it was still alive (`berth operator raft remove-peer
// --force`): no leader adds it back to the Raft configuration while the
// tombstone stands, although gossip shows it alive. The leader clears the
// tombstone (Clear) once gossip no longer shows that server alive, so a
// restart — with the same identity or a fresh one — joins as usual.
type ServerTombstoneRequest struct {
	ServerID string `json:"server_id"`
	Clear    bool   `json:"clear,omitempty"`
}

// TableServerTombstones holds the tombstones, one row per server ID.
const TableServerTombstones = "server_tombstones"

// ServerTombstone is one row: the server and the Raft index that removed it.
type ServerTombstone struct {
	ServerID string `json:"server_id"`
	Index    uint64 `json:"index"`
}

func tombstoneSchema() *memdb.TableSchema {
	return &memdb.TableSchema{Name: TableServerTombstones, Indexes: map[string]*memdb.IndexSchema{"id": idIndex("ServerID")}}
}

func (w *writer) serverTombstone(req *ServerTombstoneRequest) error {
	if req.ServerID == "" {
		return fmt.Errorf("%w: server tombstone without a server ID", ErrInvalidRequest)
	}
	if req.Clear {
		if _, err := w.txn.DeleteAll(TableServerTombstones, "id", req.ServerID); err != nil && w.err == nil {
			w.err = fmt.Errorf("delete tombstone of %q: %w", req.ServerID, err)
		}
		return nil
	}
	if err := w.txn.Insert(TableServerTombstones, &ServerTombstone{ServerID: req.ServerID, Index: w.index}); err != nil && w.err == nil {
		w.err = fmt.Errorf("insert tombstone of %q: %w", req.ServerID, err)
	}
	return nil
}

// ServerTombstones returns the servers kept out of the Raft
// configuration, sorted by ID.
func (s *StateStore) ServerTombstones() []ServerTombstone {
	it, err := s.txn().Get(TableServerTombstones, "id")
	if err != nil {
		panic(readErr("server tombstones", err))
	}
	var out []ServerTombstone
	for obj := it.Next(); obj != nil; obj = it.Next() {
		out = append(out, *obj.(*ServerTombstone))
	}
	return out
}
