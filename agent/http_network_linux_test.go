package agent

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
)

// TestNetworkRoutes drives network create, ls, inspect, rm and prune
// through the server's proxy to the agent.
func TestNetworkRoutes(t *testing.T) {
	c := startCluster(t, t.TempDir())
	ag, err := api.NewAgentClient(c.srv.HTTPAddr(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	subnet := fmt.Sprintf("10.191.%d.0/24", rand.IntN(250)+1)
	n, err := ag.CreateNetwork(api.NetworkCreateRequest{Name: "front", Subnet: subnet})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "front" || n.Subnet != subnet || !n.DNS || n.Node != "n1" || !strings.HasPrefix(n.Bridge, "bn") {
		t.Fatalf("created %+v", n)
	}
	if _, err := ag.CreateNetwork(api.NetworkCreateRequest{Name: "back"}); err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		req  api.NetworkCreateRequest
		want string
	}{
		{name: "duplicate", req: api.NetworkCreateRequest{Name: "front"}, want: "already exists"},
		{name: "reserved name", req: api.NetworkCreateRequest{Name: "host"}, want: "bad network name"},
		{name: "bad subnet", req: api.NetworkCreateRequest{Name: "x", Subnet: "10.0.0.0/33"}, want: "bad subnet"},
		{name: "overlapping subnet", req: api.NetworkCreateRequest{Name: "y", Subnet: subnet}, want: "overlaps network front"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ag.CreateNetwork(tt.req); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("create %+v: %v, want %q", tt.req, err, tt.want)
			}
		})
	}
	list, err := ag.Networks()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range list {
		names = append(names, n.Name)
	}
	if strings.Join(names, ",") != "bridge,back,front" || !list[0].Builtin {
		t.Fatalf("networks %v", list)
	}
	got, err := ag.Network("front")
	if err != nil || got.Subnet != subnet {
		t.Fatalf("inspect: %+v, %v", got, err)
	}
	if _, err := ag.Network("nope"); err == nil || !strings.Contains(err.Error(), "no such network") {
		t.Fatalf("inspect unknown: %v", err)
	}
	if err := ag.RemoveNetwork("front"); err != nil {
		t.Fatal(err)
	}
	if err := ag.RemoveNetwork("bridge"); err == nil {
		t.Fatal("removed the default bridge")
	}
	rep, err := ag.PruneNetworks()
	if err != nil || len(rep.Networks) != 1 || rep.Networks[0] != "back" {
		t.Fatalf("prune: %+v, %v", rep, err)
	}
}
