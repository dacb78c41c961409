package network

import (
	"bytes"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// Chains berth owns. They are shared by every bridge on the host; a rule
// belongs to one bridge (its subnet or name appears in it) or one
// container (a "berth:ID" comment).
const (
	chainDNAT        = "BERTH-DNAT"
	chainPostrouting = "BERTH-POSTROUTING"
	chainForward     = "BERTH-FORWARD"
	chainIsolate     = "BERTH-ISOLATE"
)

// iptablesBin is the iptables binary this host uses, found once.
var iptablesBin = sync.OnceValues(findIptables)

// findIptables picks the iptables binary whose nat table can be listed:
// the nf_tables one first, the legacy one when that fails.
func findIptables() (string, error) {
	for _, bin := range []string{"iptables", "iptables-legacy"} {
		if path, err := exec.LookPath(bin); err == nil {
			if exec.Command(path, "-w", "-t", "nat", "-S", "POSTROUTING").Run() == nil {
				return path, nil
			}
		}
	}
	return "", ErrNoFirewall
}

func (m *Manager) ipt(args ...string) error {
	bin, err := iptablesBin()
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("network: iptables %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

func (m *Manager) iptRestore(input string) error {
	bin, err := iptablesBin()
	if err != nil {
		return err
	}
	cmd := exec.Command(bin+"-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network: iptables-restore: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

type rule struct {
	table, chain string
	spec         []string
	insert       bool // at the head of the chain
}

// bridgeRules are this bridge's rules in berth's chains: outbound
// masquerade for the subnet, masquerade for loopback-sourced DNAT traffic
// (published ports on 127.0.0.1) and for DNAT traffic between containers
// (another container's or its own published port via a host address), and
// forwarding to and from the bridge.
func (m *Manager) bridgeRules() []rule {
	sub, br := m.subnet.String(), m.cfg.Bridge
	rules := []rule{
		{table: "nat", chain: chainPostrouting, spec: []string{"-s", sub, "!", "-o", br, "-j", "MASQUERADE"}},
		{table: "nat", chain: chainPostrouting, spec: []string{"-s", "127.0.0.0/8", "-o", br, "-j", "MASQUERADE"}},
		{table: "nat", chain: chainPostrouting, spec: []string{"-s", sub, "-o", br, "-m", "conntrack", "--ctstate", "DNAT", "-j", "MASQUERADE"}},
		// Isolation: traffic from this bridge to a user network's bridge
		// other than itself is dropped before the accepts below.
		{table: "filter", chain: chainIsolate, spec: []string{"-i", br, "-o", br, "-j", "RETURN"}},
		{table: "filter", chain: chainIsolate, spec: []string{"-i", br, "-o", userBridgePrefix + "+", "-j", "DROP"}},
	}
	for _, other := range m.cfg.Isolate {
		rules = append(rules, rule{table: "filter", chain: chainIsolate, spec: []string{"-i", br, "-o", other, "-j", "DROP"}})
	}
	return append(rules,
		rule{table: "filter", chain: chainForward, spec: []string{"-i", br, "-j", "ACCEPT"}},
		rule{table: "filter", chain: chainForward, spec: []string{"-o", br, "-j", "ACCEPT"}},
	)
}

// baseRules makes berth's chains, the jumps into them and the bridge's
// rules, each only when missing.
func (m *Manager) baseRules() error {
	for _, c := range []struct{ table, chain string }{{"nat", chainDNAT}, {"nat", chainPostrouting}, {"filter", chainForward}, {"filter", chainIsolate}} {
		if m.ipt("-t", c.table, "-S", c.chain) != nil {
			if err := m.ipt("-t", c.table, "-N", c.chain); err != nil && m.ipt("-t", c.table, "-S", c.chain) != nil {
				return err
			}
		}
	}
	rules := []rule{
		{table: "nat", chain: "PREROUTING", spec: []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainDNAT}},
		{table: "nat", chain: "OUTPUT", spec: []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainDNAT}},
		{table: "nat", chain: "POSTROUTING", spec: []string{"-j", chainPostrouting}},
		{table: "filter", chain: "FORWARD", spec: []string{"-j", chainForward}, insert: true},
		{table: "filter", chain: chainForward, spec: []string{"-j", chainIsolate}, insert: true},
		// Published ports are open to every network: traffic DNATed to
		// a container skips the isolation.
		{table: "filter", chain: chainIsolate, spec: []string{"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN"}, insert: true},
	}
	for _, r := range append(rules, m.bridgeRules()...) {
		if m.ipt(append([]string{"-t", r.table, "-C", r.chain}, r.spec...)...) == nil {
			continue
		}
		op := "-A"
		if r.insert {
			op = "-I"
		}
		if err := m.ipt(append([]string{"-t", r.table, op, r.chain}, r.spec...)...); err != nil {
			return err
		}
	}
	return nil
}

func comment(id string) string { return "berth:" + id }

// addPortRules adds one DNAT rule per published port, all in one
// iptables-restore run.
func (m *Manager) addPortRules(ep *Endpoint) error {
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, p := range ep.Ports {
		proto := p.Protocol
		if proto == "" {
			proto = "tcp"
		}
		b.WriteString("-A " + chainDNAT)
		if p.HostIP != "" && p.HostIP != "0.0.0.0" {
			b.WriteString(" -d " + p.HostIP + "/32")
		}
		fmt.Fprintf(&b, " -p %s -m %s --dport %d -m comment --comment %s -j DNAT --to-destination %s:%d\n",
			proto, proto, p.HostPort, comment(ep.ID), ep.Addr, p.ContainerPort)
	}
	b.WriteString("COMMIT\n")
	return m.iptRestore(b.String())
}

// PortRules lists container id's DNAT rules as iptables -S prints them.
func (m *Manager) PortRules(id string) ([]string, error) {
	bin, err := iptablesBin()
	if err != nil {
		return nil, err
	}
	out, err := exec.Command(bin, "-w", "-t", "nat", "-S", chainDNAT).Output()
	if err != nil {
		// No chain: no rules.
		return nil, nil
	}
	var rules []string
	want := []string{"--comment " + strconv.Quote(comment(id)) + " ", "--comment " + comment(id) + " "}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, "-A ") && (strings.Contains(line, want[0]) || strings.Contains(line, want[1])) {
			rules = append(rules, line)
		}
	}
	return rules, nil
}

// deletePortRules deletes every rule carrying container id's comment, so
// it also finds rules whose record was lost.
func (m *Manager) deletePortRules(id string) error {
	rules, err := m.PortRules(id)
	if err != nil || len(rules) == 0 {
		return err
	}
	var b strings.Builder
	b.WriteString("*nat\n")
	for _, r := range rules {
		b.WriteString("-D" + strings.TrimPrefix(r, "-A") + "\n")
	}
	b.WriteString("COMMIT\n")
	return m.iptRestore(b.String())
}

func execCommand(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}
