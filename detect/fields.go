package detect

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/vigil-sensor/vigil/flow"
)

type groupKind uint8

const (
	gAddr groupKind = iota + 1
	gNum
	gDirection
)

// groupField is one group-by field of a rule.
type groupField struct {
	name         string // in alert keys: dst_addr, dst_prefix, dst_port
	base         string // the event field: dst_addr
	kind         groupKind
	dst          bool // gAddr: the destination address
	bits4, bits6 int  // gAddr: prefix lengths; 32/128 for whole addresses
	num          func(*Event) uint32
	rnum         func(*Event) uint32 // gNum: the field seen from the other end (dst_port for src_port)
}

var numFields = map[string]func(*Event) uint32{
	"src_port":   func(e *Event) uint32 { return uint32(e.SrcPort) },
	"dst_port":   func(e *Event) uint32 { return uint32(e.DstPort) },
	"proto":      func(e *Event) uint32 { return uint32(e.Proto) },
	"ip_version": func(e *Event) uint32 { return uint32(e.IPVersion) },
	"ifindex":    func(e *Event) uint32 { return e.Ifindex },
	"vni":        func(e *Event) uint32 { return e.VNI },
	"tcp_flags":  func(e *Event) uint32 { return uint32(e.TCPFlags) },
}

// parseGroupField parses src_addr, dst_port, or a prefix grouping:
// dst_addr/24 groups IPv4 by /24 and IPv6 by /64; dst_addr/24,48 names
// the IPv6 length too.
func parseGroupField(s string) (groupField, error) {
	base, plen, hasLen := strings.Cut(s, "/")
	switch base {
	case "src_addr", "dst_addr":
		g := groupField{name: base, base: base, kind: gAddr, dst: base == "dst_addr", bits4: 32, bits6: 128}
		if !hasLen {
			return g, nil
		}
		g.name = strings.TrimSuffix(base, "_addr") + "_prefix"
		v4, v6, has6 := strings.Cut(plen, ",")
		n4, err := strconv.Atoi(v4)
		if err != nil || n4 < 0 || n4 > 32 {
			return g, fmt.Errorf("%q: the IPv4 prefix length must be 0..32", s)
		}
		g.bits4, g.bits6 = n4, 64
		if n4 == 32 {
			g.bits6 = 128
		}
		if has6 {
			n6, err := strconv.Atoi(v6)
			if err != nil || n6 < 0 || n6 > 128 {
				return g, fmt.Errorf("%q: the IPv6 prefix length must be 0..128", s)
			}
			g.bits6 = n6
		}
		return g, nil
	case "direction":
		if hasLen {
			break
		}
		return groupField{name: base, base: base, kind: gDirection}, nil
	default:
		if f, ok := numFields[base]; ok && !hasLen {
			rf := f
			switch base {
			case "src_port":
				rf = numFields["dst_port"]
			case "dst_port":
				rf = numFields["src_port"]
			}
			return groupField{name: base, base: base, kind: gNum, num: f, rnum: rf}, nil
		}
	}
	return groupField{}, fmt.Errorf("%q cannot be grouped by: use src_addr, dst_addr (with /len for prefixes), src_port, dst_port, proto, ip_version, ifindex, vni, tcp_flags or direction", s)
}

// keyBuf is a rule key: each group-by field's value, fixed-size so it
// can be a map key without allocating.
type keyBuf [maxGroupFields * 17]byte

// makeKey encodes the event's group-by values. ok is false when the
// event lacks an address the key needs (an alert without it).
func makeKey(e *Event, group []groupField) (k keyBuf, ok bool) {
	return makeKeyDir(e, group, false)
}

// makeKeyDir is makeKey, or with reverse the key of the event seen from
// its other end: source and destination addresses and ports swapped.
func makeKeyDir(e *Event, group []groupField, reverse bool) (k keyBuf, ok bool) {
	off := 0
	for i := range group {
		g := &group[i]
		switch g.kind {
		case gAddr:
			a := e.SrcAddr
			if g.dst != reverse {
				a = e.DstAddr
			}
			a, fam := keyPrefix(a, g.bits4, g.bits6)
			if fam == 0 {
				return k, false
			}
			k[off] = fam
			b := a.As16()
			copy(k[off+1:off+17], b[:])
			off += 17
		case gNum:
			f := g.num
			if reverse {
				f = g.rnum
			}
			binary.BigEndian.PutUint32(k[off:], f(e))
			off += 4
		case gDirection:
			k[off] = byte(e.Direction)
			off++
		}
	}
	return k, true
}

// keyPrefix is an address as a key holds it: masked to bits4 or bits6,
// and its family (4 or 6; 0: no address).
func keyPrefix(a netip.Addr, bits4, bits6 int) (netip.Addr, byte) {
	switch {
	case a.Is4():
		if bits4 < 32 {
			p, _ := a.Prefix(bits4)
			a = p.Addr()
		}
		return a, 4
	case a.Is6():
		if bits6 < 128 {
			p, _ := a.Prefix(bits6)
			a = p.Addr()
		}
		return a, 6
	}
	return a, 0
}

// keyAddr returns the key's first address, for host groups.
func keyAddr(k *keyBuf, group []groupField) (netip.Addr, bool) {
	off := 0
	for i := range group {
		switch group[i].kind {
		case gAddr:
			return decodeAddr(k[off : off+17]), true
		case gNum:
			off += 4
		case gDirection:
			off++
		}
	}
	return netip.Addr{}, false
}

func decodeAddr(b []byte) netip.Addr {
	a := netip.AddrFrom16([16]byte(b[1:17]))
	if b[0] == 4 {
		a = a.Unmap()
	}
	return a
}

// keyValues renders a key for alerts.
func keyValues(k *keyBuf, group []groupField) []flow.KeyValue {
	kvs := make([]flow.KeyValue, 0, len(group))
	off := 0
	for i := range group {
		g := &group[i]
		var v string
		switch g.kind {
		case gAddr:
			a := decodeAddr(k[off : off+17])
			bits := g.bits6
			if a.Is4() {
				bits = g.bits4
			}
			if bits < a.BitLen() {
				v = netip.PrefixFrom(a, bits).String()
			} else {
				v = a.String()
			}
			off += 17
		case gNum:
			v = strconv.FormatUint(uint64(binary.BigEndian.Uint32(k[off:])), 10)
			off += 4
		case gDirection:
			v = flow.Direction(k[off]).String()
			off++
		}
		kvs = append(kvs, flow.KeyValue{Name: g.name, Value: v})
	}
	return kvs
}

// hashField hashes an event field for distinct counting.
type hashField func(*Event) uint64

var hashFields = map[string]hashField{
	"src_addr": func(e *Event) uint64 { return hashAddr(e.SrcAddr) },
	"dst_addr": func(e *Event) uint64 { return hashAddr(e.DstAddr) },
	"src_port": func(e *Event) uint64 { return mix64(uint64(e.SrcPort) + 1) },
	"dst_port": func(e *Event) uint64 { return mix64(uint64(e.DstPort) + 1) },
	"proto":    func(e *Event) uint64 { return mix64(uint64(e.Proto) + 1) },
}

func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	hi, lo := binary.LittleEndian.Uint64(b[:8]), binary.LittleEndian.Uint64(b[8:])
	return mix64(lo ^ mix64(hi^0x9e3779b97f4a7c15))
}

// mix64 is splitmix64's finalizer: a fast hash good enough for
// HyperLogLog's uniform bits.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// evidenceField is a field whose heaviest values an alert shows.
type evidenceField uint8

const (
	evSrcAddr evidenceField = iota
	evDstAddr
	evSrcPort
	evDstPort
)

var evidenceFields = map[string]evidenceField{
	"src_addr": evSrcAddr, "dst_addr": evDstAddr, "src_port": evSrcPort, "dst_port": evDstPort,
}

// evValue is one evidence value: an address or a port.
type evValue struct {
	addr netip.Addr
	port uint16
}

func (f evidenceField) value(e *Event) evValue {
	switch f {
	case evSrcAddr:
		return evValue{addr: e.SrcAddr}
	case evDstAddr:
		return evValue{addr: e.DstAddr}
	case evSrcPort:
		return evValue{port: e.SrcPort}
	}
	return evValue{port: e.DstPort}
}

func (v evValue) String() string {
	if v.addr.IsValid() {
		return v.addr.String()
	}
	return strconv.Itoa(int(v.port))
}
