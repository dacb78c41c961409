package placement

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/berth-dev/berth/api"
)

func FuzzParseVersionConstraint(f *testing.F) {
	for _, s := range []string{">= 1.2, < 2", "~> 535.104", "= 6.1", "!= v1.0.0", "1", ">=", ", ,", "~> 1", "< 99999999999999999999"} {
		f.Add(s, "6.1.0-18-amd64")
	}
	f.Fuzz(func(t *testing.T, constraint, version string) {
		checks, err := parseVersionConstraint(constraint)
		if err != nil {
			return
		}
		have, ok := parseVersion(version)
		if !ok {
			return
		}
		for _, c := range checks {
			c.ok(have) // must not panic
		}
	})
}

// FuzzJobSpec feeds arbitrary JSON through the edge (Canonicalize,
// ValidateJob) and schedules every job that passes: Schedule must not fail
// and every node of the plan must pass Fits.
func FuzzJobSpec(f *testing.F) {
	for _, s := range []string{
		`{"name":"web","groups":[{"name":"web","count":3,"tasks":[{"name":"t","image":"nginx","resources":{"cpu":500,"memory":256}}]}]}`,
		`{"name":"gpu","type":"batch","groups":[{"name":"g","gang":true,"count":2,"tasks":[{"name":"t","image":"x","resources":{"gpus":{"count":2,"model":"H100","topology":"nvlink"}}}]}]}`,
		`{"name":"sys","type":"system","constraints":[{"attribute":"${node.label.rack}","operator":"regexp","value":"r[12]"}],"groups":[{"name":"g","tasks":[{"name":"t","image":"x","ports":[{"to":80,"static":8080},{"to":81}]}]}]}`,
		`{"name":"aff","affinities":[{"attribute":"${attr.kernel.version}","operator":"version","value":">= 6","weight":-40}],"spread":[{"attribute":"${node.datacenter}"}],"groups":[{"name":"g","count":5,"tasks":[{"name":"t","image":"x","resources":{"gpus":{"count":1,"mig_profile":"1g.10gb"}}}]}]}`,
		`{"name":"","groups":[]}`,
	} {
		f.Add([]byte(s))
	}
	nodes := []*api.Node{
		mkNode("a", 8000, 16384, withLabel("rack", "r1"), withAttr("kernel.version", "6.1.0"), withGPUs("H100", 4, 81920)),
		mkNode("b", 4000, 8192, withLabel("rack", "r2"), withDC("dc2")),
		migNode("c"),
	}
	for i := range nodes[0].Resources.GPUs {
		for j := range nodes[0].Resources.GPUs {
			if i != j {
				nodes[0].Resources.GPUs[i].NVLinkPeers = append(nodes[0].Resources.GPUs[i].NVLinkPeers, nodes[0].Resources.GPUs[j].UUID)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var job api.Job
		if err := json.Unmarshal(data, &job); err != nil {
			return
		}
		Canonicalize(&job)
		if err := ValidateJob(&job); err != nil {
			if !errors.Is(err, ErrInvalidJob) {
				t.Fatalf("validation error %v is not ErrInvalidJob", err)
			}
			return
		}
		for _, g := range job.Groups {
			if g.Count > 50 {
				return // keep each input fast
			}
		}
		job.Stop = false
		st := newFakeState(nodes)
		p, err := Schedule(st, evalFor(&job), &job, Options{PreemptionEnabled: true, NewID: counterIDs("f")})
		if err != nil {
			t.Fatalf("Schedule of a valid job: %v", err)
		}
		for nodeID, placed := range p.NodeAllocation {
			n := st.node(nodeID)
			all := append(st.AllocsByNode(nodeID), placed...)
			if ok, reason := Fits(n, all); !ok {
				t.Fatalf("plan overcommits node %s: %s", nodeID, reason)
			}
		}
	})
}
