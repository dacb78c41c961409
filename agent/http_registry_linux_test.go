package agent

import (
	"context"
	"strings"
	"testing"

	"github.com/berth-dev/berth/api"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/image"
)

// TestImageRegistryRoutes drives push, pull, history, save and prune
// through the server's proxy to the agent, against a real registry.
func TestImageRegistryRoutes(t *testing.T) {
	reg := testutil.StartRegistry(t, testutil.RegistryOptions{TLS: true, Username: "u", Password: "pw"})
	c := startCluster(t, t.TempDir())
	c.importBusybox()
	ag, err := api.NewAgentClient(c.srv.HTTPAddr(), "n1")
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/lib/busybox:v1"
	if err := ag.TagImage("busybox", ref); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	auth := &api.RegistryAuth{Username: "u", Password: "pw"}
	var pushed []string
	err = ag.PushImage(ctx, api.ImagePushRequest{Ref: ref, Insecure: true, Auth: auth}, func(p api.ImageProgress) {
		pushed = append(pushed, p.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(pushed, ","), "Pushed") {
		t.Fatalf("push progress: %v", pushed)
	}

	// Wrong password: one clear line.
	_, err = ag.PullImage(ctx, api.ImagePullRequest{Ref: ref, Insecure: true, Auth: &api.RegistryAuth{Username: "u", Password: "bad"}}, nil)
	if err == nil || !strings.Contains(err.Error(), "unauthorized: check the user name and password") || strings.Contains(err.Error(), "bad") {
		t.Fatalf("wrong password: %v", err)
	}

	if _, err := ag.RemoveImage(ref, false); err != nil {
		t.Fatal(err)
	}
	if _, err := ag.RemoveImage("busybox", false); err != nil {
		t.Fatal(err)
	}
	var statuses []string
	img, err := ag.PullImage(ctx, api.ImagePullRequest{Ref: ref, Insecure: true, Auth: auth}, func(p api.ImageProgress) {
		statuses = append(statuses, p.Status)
	})
	if err != nil {
		t.Fatal(err)
	}
	if img.Node != "n1" || len(img.RepoTags) != 1 || img.RepoTags[0] != ref {
		t.Fatalf("pulled %+v", img)
	}
	joined := strings.Join(statuses, ",")
	if !strings.Contains(joined, "Pulling fs layer") || !strings.Contains(joined, "Done") {
		t.Fatalf("pull progress: %v", statuses)
	}

	hist, err := ag.ImageHistory(ref)
	if err != nil || len(hist) == 0 {
		t.Fatalf("history: %v %v", hist, err)
	}

	rc, err := ag.SaveImages(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := s.Load(ctx, rc)
	rc.Close()
	if err != nil || len(loaded) != 1 || loaded[0].ID != img.ID {
		t.Fatalf("load of a saved archive: %+v %v", loaded, err)
	}
	if _, err := ag.SaveImages(ctx, "nosuch:1"); !api.IsNotFound(err) {
		t.Fatalf("save of a missing image: %v", err)
	}

	rep, err := ag.PruneImages(true)
	if err != nil || len(rep.Images) != 1 || rep.SpaceReclaimed <= 0 {
		t.Fatalf("prune -a: %+v %v", rep, err)
	}
	if ims, _ := ag.Images(); len(ims) != 0 {
		t.Fatalf("images left after prune -a: %+v", ims)
	}
}
