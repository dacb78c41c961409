package agent

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-dev/berth/api"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketMeta   = []byte("meta")
	bucketAllocs = []byte("allocs")
	keyNodeID    = []byte("node_id")
)

// localAlloc is what the agent persists about one allocation: the latest
// version the server sent and the state of each task.
type localAlloc struct {
	Alloc *api.Allocation           `json:"alloc"`
	Tasks map[string]*api.TaskState `json:"tasks"`
}

// stateDB is the agent's local state in bbolt. It is safe for concurrent
// use (bbolt serialises writers).
type stateDB struct{ db *bolt.DB }

func openState(dataDir string) (*stateDB, error) {
	dir := filepath.Join(dataDir, "agent")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, "state.db"), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("agent: open %s: %w (is another agent using this data dir?)", filepath.Join(dir, "state.db"), err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketAllocs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("agent: init state: %w", err)
	}
	return &stateDB{db: db}, nil
}

func (s *stateDB) Close() error { return s.db.Close() }

// nodeID returns the persisted node ID, making one on first use.
func (s *stateDB) nodeID() (string, error) {
	var id string
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		if v := b.Get(keyNodeID); v != nil {
			id = string(v)
			return nil
		}
		buf := make([]byte, 16)
		if _, err := rand.Read(buf); err != nil {
			return err
		}
		h := hex.EncodeToString(buf)
		id = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
		return b.Put(keyNodeID, []byte(id))
	})
	return id, err
}

func (s *stateDB) putAlloc(la *localAlloc) error {
	b, err := json.Marshal(la)
	if err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAllocs).Put([]byte(la.Alloc.ID), b)
	})
}

func (s *stateDB) deleteAlloc(id string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAllocs).Delete([]byte(id))
	})
}

func (s *stateDB) allocs() ([]*localAlloc, error) {
	var out []*localAlloc
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAllocs).ForEach(func(k, v []byte) error {
			var la localAlloc
			if err := json.Unmarshal(v, &la); err != nil {
				return fmt.Errorf("agent: state of alloc %s: %w", k, err)
			}
			out = append(out, &la)
			return nil
		})
	})
	return out, err
}
