package network

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// dnsQuery builds a one-question query.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0) // RD, one question
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, dnsClassIN)
}

// dnsReply reads the rcode and the A records of a response to a query
// for one name.
func dnsReply(t testing.TB, b []byte) (int, []netip.Addr) {
	t.Helper()
	if len(b) < 12 || b[2]&0x80 == 0 {
		t.Fatalf("not a DNS response: %x", b)
	}
	q, err := parseQuestion(append(append([]byte{}, b[:2]...), append([]byte{b[2] &^ 0x80}, b[3:]...)...))
	if err != nil {
		t.Fatalf("response question: %v", err)
	}
	n := int(binary.BigEndian.Uint16(b[6:8]))
	var out []netip.Addr
	off := q.End
	for i := 0; i < n; i++ {
		if off+16 > len(b) {
			t.Fatalf("short answer %d in %x", i, b)
		}
		out = append(out, netip.AddrFrom4([4]byte(b[off+12:off+16])))
		off += 16
	}
	return int(b[3] & 0x0f), out
}

func TestResolverAnswers(t *testing.T) {
	r := newResolver(nil)
	a1, a2 := netip.MustParseAddr("10.9.0.2"), netip.MustParseAddr("10.9.0.3")
	r.add("c1", a1, "Alpha", "db")
	r.add("c2", a2, "beta")
	tests := []struct {
		name  string
		qname string
		qtype uint16
		rcode int
		addrs []netip.Addr
	}{
		{name: "container name", qname: "alpha", qtype: dnsTypeA, addrs: []netip.Addr{a1}},
		{name: "case insensitive", qname: "ALPHA.", qtype: dnsTypeA, addrs: []netip.Addr{a1}},
		{name: "alias", qname: "db", qtype: dnsTypeA, addrs: []netip.Addr{a1}},
		{name: "other", qname: "beta", qtype: dnsTypeA, addrs: []netip.Addr{a2}},
		{name: "AAAA of a known name is empty", qname: "beta", qtype: dnsTypeAAAA},
		{name: "unknown without upstream fails", qname: "gamma", qtype: dnsTypeA, rcode: rcodeFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc, addrs := dnsReply(t, r.answer(dnsQuery(7, tt.qname, tt.qtype)))
			if rc != tt.rcode || len(addrs) != len(tt.addrs) || (len(addrs) > 0 && addrs[0] != tt.addrs[0]) {
				t.Fatalf("answer rcode %d %v, want %d %v", rc, addrs, tt.rcode, tt.addrs)
			}
		})
	}
	r.remove("c1", a1)
	if _, ok := r.lookup("db"); ok {
		t.Fatal("alias still resolves after remove")
	}
}

func TestResolverForwardsUnknownNames(t *testing.T) {
	up, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	upstream := newResolver(nil)
	upstream.add("x", netip.MustParseAddr("192.0.2.7"), "far.example")
	go upstream.serve(up)
	r := newResolver([]string{up.LocalAddr().String()})
	rc, addrs := dnsReply(t, r.answer(dnsQuery(9, "far.example", dnsTypeA)))
	if rc != 0 || len(addrs) != 1 || addrs[0].String() != "192.0.2.7" {
		t.Fatalf("forwarded answer %d %v", rc, addrs)
	}
}

func TestUpstreams(t *testing.T) {
	got := upstreams([]byte("search x\nnameserver 10.0.0.2\nnameserver ::1\nnameserver bad\n"))
	if strings.Join(got, ",") != "10.0.0.2:53,[::1]:53" {
		t.Fatalf("upstreams = %v", got)
	}
}

func FuzzParseQuestion(f *testing.F) {
	f.Add(dnsQuery(1, "alpha", dnsTypeA))
	f.Add(dnsQuery(2, "a.b.c.example.com", dnsTypeAAAA))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1})
	r := newResolver(nil)
	r.add("c", netip.MustParseAddr("10.0.0.2"), "alpha")
	f.Fuzz(func(t *testing.T, msg []byte) {
		q, err := parseQuestion(msg)
		if err != nil {
			return
		}
		if q.End > len(msg) || len(q.Name) > 255 {
			t.Fatalf("question %+v past a %d-byte message", q, len(msg))
		}
		if _, ok := r.lookup(q.Name); ok {
			resp := r.answer(msg)
			if len(resp) < q.End {
				t.Fatalf("short response %x", resp)
			}
		}
	})
}
