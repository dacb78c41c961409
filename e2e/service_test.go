//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServicePublishedEndpoints runs a busybox httpd with a published port
// on `berth dev` and finds it the way a client elsewhere in the cluster
// would: `berth service ls` names the node address and port, `berth ps`
// shows it in PORTS, and an HTTP GET to that address is answered.
func TestServicePublishedEndpoints(t *testing.T) {
	d := StartDev(t)
	d.ImportBusybox()
	hostPort := freePorts(t, 1)[0]

	d.MustBerth(t, "run", "-d", "-p", fmt.Sprintf("%d:80", hostPort), "--name", "web", "busybox",
		"sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 80 -h /www")

	type endpoint struct {
		Job      string `json:"job"`
		Group    string `json:"group"`
		Alloc    string `json:"alloc"`
		Node     string `json:"node"`
		Address  string `json:"address"`
		Port     int    `json:"port"`
		To       int    `json:"to"`
		Protocol string `json:"protocol"`
	}
	var ep endpoint
	Eventually(t, 30*time.Second, "service ls to list web's endpoint", func() error {
		r := d.Berth("service", "ls", "web", "--format", "json")
		if r.Code != 0 {
			return fmt.Errorf("service ls: %s", r)
		}
		var eps []endpoint
		if err := json.Unmarshal([]byte(r.Stdout), &eps); err != nil {
			t.Fatalf("service ls --format json is not a list of endpoints: %v\n%s", err, r)
		}
		if len(eps) != 1 {
			return fmt.Errorf("%d endpoints, want 1: %s\nps -a: %s", len(eps), r.Stdout, d.Berth("ps", "-a", "--format", "json").Stdout)
		}
		ep = eps[0]
		return nil
	})
	if ep.Job != "web" || ep.Port != hostPort || ep.To != 80 || ep.Protocol != "tcp" || ep.Alloc == "" || ep.Node == "" {
		t.Fatalf("endpoint = %+v, want job web, port %d->80/tcp on a node", ep, hostPort)
	}
	if ip := net.ParseIP(ep.Address); ip == nil || ip.IsUnspecified() {
		t.Fatalf("endpoint address %q is not a reachable IP", ep.Address)
	}
	want := net.JoinHostPort(ep.Address, strconv.Itoa(hostPort)) + "->80/tcp"

	ls := d.MustBerth(t, "service", "ls")
	if !strings.Contains(ls.Stdout, "ENDPOINTS") || !strings.Contains(ls.Stdout, want) {
		t.Fatalf("service ls lacks %s:\n%s", want, ls)
	}
	t.Logf("berth service ls:\n%s", ls.Stdout)
	ps := d.MustBerth(t, "ps")
	if !strings.Contains(ps.Stdout, "PORTS") || !strings.Contains(ps.Stdout, want) {
		t.Fatalf("ps lacks the PORTS column with %s:\n%s", want, ps)
	}
	t.Logf("berth ps:\n%s", ps.Stdout)

	var insp []struct {
		Ports     []string `json:"ports"`
		Container *struct {
			Ports []struct {
				HostIP string `json:"host_ip"`
				Value  int    `json:"value"`
			} `json:"ports"`
		} `json:"container"`
	}
	ir := d.MustBerth(t, "inspect", "web")
	if err := json.Unmarshal([]byte(ir.Stdout), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect web: %v\n%s", err, ir)
	}
	if len(insp[0].Ports) != 1 || insp[0].Ports[0] != want {
		t.Fatalf("inspect ports = %q, want [%s]", insp[0].Ports, want)
	}
	if c := insp[0].Container; c == nil || len(c.Ports) != 1 || c.Ports[0].HostIP != ep.Address || c.Ports[0].Value != hostPort {
		t.Fatalf("inspect container ports do not name %s:%d:\n%s", ep.Address, hostPort, ir.Stdout)
	}

	url := "http://" + net.JoinHostPort(ep.Address, strconv.Itoa(ep.Port)) + "/"
	client := &http.Client{Timeout: 3 * time.Second}
	Eventually(t, 20*time.Second, "GET "+url, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK || string(b) != "ok\n" {
			return fmt.Errorf("HTTP %d %q, want 200 with the index file \"ok\\n\"", resp.StatusCode, b)
		}
		return nil
	})
}
