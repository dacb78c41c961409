package network

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// DNS record types and response codes the resolver uses.
const (
	dnsTypeA    = 1
	dnsTypeAAAA = 28
	dnsClassIN  = 1
	rcodeOK     = 0
	rcodeFail   = 2
	rcodeNX     = 3
)

var errDNSMessage = errors.New("network: malformed DNS message")

// dnsQuestion is the first question of a query.
type dnsQuestion struct {
	Name  string // lower case, no trailing dot
	Type  uint16
	Class uint16
	End   int // offset just past the question
}

// parseQuestion reads the header and the first question of a DNS query.
// Names in questions are not compressed; a pointer is refused.
func parseQuestion(msg []byte) (dnsQuestion, error) {
	var q dnsQuestion
	if len(msg) < 12 || binary.BigEndian.Uint16(msg[4:6]) != 1 || msg[2]&0x80 != 0 {
		return q, errDNSMessage
	}
	off := 12
	var labels []string
	total := 0
	for {
		if off >= len(msg) {
			return q, errDNSMessage
		}
		l := int(msg[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(msg) {
			return q, errDNSMessage
		}
		total += l + 1
		if total > 255 {
			return q, errDNSMessage
		}
		labels = append(labels, asciiLower(msg[off:off+l]))
		off += l
	}
	if off+4 > len(msg) {
		return q, errDNSMessage
	}
	q.Name = strings.Join(labels, ".")
	q.Type = binary.BigEndian.Uint16(msg[off : off+2])
	q.Class = binary.BigEndian.Uint16(msg[off+2 : off+4])
	q.End = off + 4
	return q, nil
}

// dnsAnswer builds the response to query (whose question is q) with the
// given rcode and A records.
func dnsAnswer(query []byte, q dnsQuestion, rcode int, addrs []netip.Addr) []byte {
	out := make([]byte, 0, q.End+16*len(addrs))
	out = append(out, query[:2]...)                           // ID
	out = append(out, 0x84|(query[2]&0x01), 0x80|byte(rcode)) // QR, AA, RD copied; RA
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, uint16(len(addrs)))
	out = append(out, 0, 0, 0, 0)
	out = append(out, query[12:q.End]...)
	for _, a := range addrs {
		b := a.As4()
		out = append(out, 0xc0, 12) // the question's name
		out = binary.BigEndian.AppendUint16(out, dnsTypeA)
		out = binary.BigEndian.AppendUint16(out, dnsClassIN)
		out = binary.BigEndian.AppendUint32(out, 0) // no caching: containers come and go
		out = binary.BigEndian.AppendUint16(out, 4)
		out = append(out, b[:]...)
	}
	return out
}

// resolver answers a user network's containers on the bridge address, port
// 53: container names and aliases on that network resolve to their
// addresses, everything else is forwarded to the host's resolvers.
type resolver struct {
	conn     *net.UDPConn
	upstream []string // host:port
	mu       sync.RWMutex
	names    map[string][]netip.Addr
	byID     map[string][]string // container ID -> its names
}

func newResolver(upstream []string) *resolver {
	return &resolver{upstream: upstream, names: map[string][]netip.Addr{}, byID: map[string][]string{}}
}

// add registers a container's names (names are case-insensitive).
func (r *resolver) add(id string, addr netip.Addr, names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range names {
		n = asciiLower([]byte(strings.TrimSuffix(n, ".")))
		if n == "" {
			continue
		}
		r.names[n] = append(r.names[n], addr)
		r.byID[id] = append(r.byID[id], n)
	}
}

// remove drops a container's names.
func (r *resolver) remove(id string, addr netip.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range r.byID[id] {
		as := r.names[n][:0]
		for _, a := range r.names[n] {
			if a != addr {
				as = append(as, a)
			}
		}
		if len(as) == 0 {
			delete(r.names, n)
		} else {
			r.names[n] = as
		}
	}
	delete(r.byID, id)
}

func (r *resolver) lookup(name string) ([]netip.Addr, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	as, ok := r.names[name]
	return append([]netip.Addr(nil), as...), ok
}

// answer returns the reply to one query, or nil to drop it.
func (r *resolver) answer(query []byte) []byte {
	q, err := parseQuestion(query)
	if err != nil {
		return nil
	}
	if addrs, ok := r.lookup(q.Name); ok && q.Class == dnsClassIN {
		if q.Type != dnsTypeA {
			addrs = nil // the name exists, with no record of that type
		}
		return dnsAnswer(query, q, rcodeOK, addrs)
	}
	for _, up := range r.upstream {
		if resp := forward(up, query); resp != nil {
			return resp
		}
	}
	return dnsAnswer(query, q, rcodeFail, nil)
}

func forward(upstream string, query []byte) []byte {
	c, err := net.DialTimeout("udp", upstream, time.Second)
	if err != nil {
		return nil
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(query); err != nil {
		return nil
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || n < 12 || buf[0] != query[0] || buf[1] != query[1] {
		return nil
	}
	return buf[:n]
}

// serve answers queries on conn until it is closed.
func (r *resolver) serve(conn *net.UDPConn) {
	r.conn = conn
	buf := make([]byte, 1500)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		query := append([]byte(nil), buf[:n]...)
		go func() {
			if resp := r.answer(query); resp != nil {
				conn.WriteToUDPAddrPort(resp, from)
			}
		}()
	}
}

// upstreams lists the nameservers of a resolv.conf as host:53.
func upstreams(resolvConf []byte) []string {
	var out []string
	for _, line := range strings.Split(string(resolvConf), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53).String())
			}
		}
	}
	return out
}

// asciiLower lowers A-Z only: DNS names compare case-insensitively in
// ASCII, and other bytes must pass through unchanged.
func asciiLower(b []byte) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return string(out)
}
