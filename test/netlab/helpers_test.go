package netlab

import (
	"slices"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// TestCapturePingTCP checks the ICMP, TCP and capture helpers against
// each other: echo requests are answered, TCP exchanges complete, and
// the capture on the peer end sees exactly the frames sent, with the
// fields ParseFrame reads.
func TestCapturePingTCP(t *testing.T) {
	testutil.RequirePrivileged(t)
	l := New(t)
	capt := l.Peer.StartCapture(t, PeerIf)

	type key struct {
		ver   int
		proto uint8
		dport uint16
	}
	want := map[key][2]int{} // packets, bytes
	for _, family := range []int{4, 6} {
		p := l.NewPinger(t, family)
		sizes := []int{0, 1, 56, 1000, 1400, 333}
		if n, err := p.Send(sizes); err != nil || n != len(sizes) {
			t.Fatalf("IPv%d ping: sent %d: %v", family, n, err)
		}
		if !p.WaitReplies(uint64(len(sizes)), 5*time.Second) {
			t.Fatalf("IPv%d ping: %d of %d replies", family, p.Replies(), len(sizes))
		}
		k := key{family, 1, uint16(p.Type()) << 8}
		if family == 6 {
			k.proto = 58
		}
		w := want[k]
		for _, s := range sizes {
			w[0]++
			w[1] += p.FrameLen(s)
		}
		want[k] = w
		if p.NoBufs() != 0 {
			t.Fatalf("ENOBUFS on a quiet lab")
		}
	}

	var clients []*TCPClient
	for _, family := range []int{4, 6} {
		srv := l.NewTCPServer(t, family, 8000)
		c := l.DialTCP(t, srv.Addr)
		if err := c.Exchange(100, 50000); err != nil {
			t.Fatal(err)
		}
		if err := c.Exchange(3000, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Shutdown(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	time.Sleep(300 * time.Millisecond)
	frames, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	got := map[key][2]int{}
	tcpFlags := map[uint16]uint8{}
	for _, f := range frames {
		if !f.Outgoing {
			continue
		}
		fi, ok := ParseFrame(f.Head)
		if !ok {
			continue
		}
		if fi.Proto == 6 {
			tcpFlags[fi.SrcPort] |= fi.TCPFlags
			if fi.TTL != 64 {
				t.Errorf("TCP TTL %d", fi.TTL)
			}
			continue
		}
		k := key{fi.IPVersion, fi.Proto, fi.DstPort}
		g := got[k]
		g[0]++
		g[1] += f.Len
		got[k] = g
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%+v: captured %v, sent %v", k, got[k], w)
		}
	}
	for _, c := range clients {
		if f := tcpFlags[c.Src.Port()]; f&0x13 != 0x13 {
			t.Errorf("client %s: flags %#x, want SYN, ACK and FIN", c.Src, f)
		}
	}
}

// TestFragSender checks that the peer's kernel fragments as
// FragmentLens says, in both families, and that an aborted TCP
// connection sends a RST.
func TestFragSender(t *testing.T) {
	testutil.RequirePrivileged(t)
	l := New(t)
	capt := l.Peer.StartCapture(t, PeerIf)
	var senders []*FragSender
	for _, family := range []int{4, 6} {
		l.NewSink(t, family, 7100)
		s := l.NewFragSender(t, family, 7100, 3000)
		if n, err := s.Send(3); err != nil || n != 3 {
			t.Fatalf("sent %d: %v", n, err)
		}
		senders = append(senders, s)
	}
	srv := l.NewTCPServer(t, 4, 8001)
	c := l.DialTCP(t, srv.Addr)
	if err := c.Exchange(10, 10); err != nil {
		t.Fatal(err)
	}
	if err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	frames, err := capt.Stop()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range senders {
		var lens []int
		for _, f := range frames {
			fi, ok := ParseFrame(f.Head)
			if f.Outgoing && ok && fi.Proto == 17 && fi.Dst == s.Dst.Addr() {
				lens = append(lens, f.Len)
				if (fi.SrcPort == 0) != (len(lens)%3 != 1) {
					t.Errorf("%s: fragment %d has ports %d -> %d", s.Dst, len(lens), fi.SrcPort, fi.DstPort)
				}
			}
		}
		want := append(append(s.FragmentLens(), s.FragmentLens()...), s.FragmentLens()...)
		if len(s.FragmentLens()) != 3 || !slices.Equal(lens, want) {
			t.Errorf("%s: captured fragments %v, want %v", s.Dst, lens, want)
		}
	}
	var flags uint8
	for _, f := range frames {
		if fi, ok := ParseFrame(f.Head); f.Outgoing && ok && fi.Proto == 6 && fi.SrcPort == c.Src.Port() {
			flags |= fi.TCPFlags
		}
	}
	if flags&0x04 == 0 || flags&0x01 != 0 {
		t.Errorf("aborted connection sent flags %#x, want RST and no FIN", flags)
	}
}
