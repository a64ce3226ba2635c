package ipfix

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

func ipfixSendAll(t *testing.T, tr *Transport, items [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := tr.Send(ctx, items)
	if err != nil || n != len(items) {
		t.Fatalf("Send = %d, %v; want %d, nil", n, err, len(items))
	}
}

// TestIPFIXSequenceAndSizeLimit sends many records in small messages:
// every message stays within the limit and is filled, records keep
// their order, and each header's sequence number counts the data
// records (selector records included) of the messages before it.
func TestIPFIXSequenceAndSizeLimit(t *testing.T) {
	u := newUDPCollector(t)
	const limit = 600
	tr := newTransport("udp", u.addr(), options{MaxMessageSize: limit})
	defer tr.Close()
	var recs []flow.Record
	for i := range 300 {
		rate := uint32(1)
		if i >= 150 {
			rate = 50 // a new rate in the middle of the stream
		}
		recs = append(recs, ipfixTestRecord(i, i%3 == 0, rate))
	}
	items := ipfixItems(recs)
	ipfixSendAll(t, tr, items[:100])
	ipfixSendAll(t, tr, items[100:])

	c := newIPFIXCollector(t)
	var flows []ipfixFlow
	var seq uint32
	var selectors []uint32
	dgrams := u.read(t)
	for i, d := range dgrams {
		if len(d) > limit {
			t.Errorf("message %d: %d bytes > %d", i, len(d), limit)
		}
		m := c.decode(d)
		if m.Seq != seq {
			t.Errorf("message %d: sequence %d, want %d", i, m.Seq, seq)
		}
		seq += uint32(len(m.Flows) + len(m.Selectors))
		for _, s := range m.Selectors {
			if s.Template == TemplateSelector {
				selectors = append(selectors, s.ID)
			}
		}
		flows = append(flows, m.Flows...)
		// Filled: the next record (at most a v6 record in a new set
		// with a selector record) would not have fitted, except at the
		// end of a Send.
		if i < len(dgrams)-1 && len(flows) != 100 && len(d)+4+ipfixRecLenV6+ipfixSelectorLen <= limit {
			t.Errorf("message %d: %d bytes, room left", i, len(d))
		}
	}
	if len(flows) != len(recs) {
		t.Fatalf("%d flows, want %d", len(flows), len(recs))
	}
	for i := range recs {
		if w := wantIPFIXFlow(&recs[i]); !cmp.Equal(w, flows[i], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
			t.Fatalf("flow %d: %+v, want %+v", i, flows[i], w)
		}
	}
	// Rate 1 at the start, rate 50 once, when it first appears.
	if diff := cmp.Diff([]uint32{1, 50}, selectors); diff != "" {
		t.Errorf("selector records (-want +got):\n%s", diff)
	}
}

// TestIPFIXSelectorBeforeFirstUse: a rate's options record comes right
// before the first data record that refers to it, in the same message.
func TestIPFIXSelectorBeforeFirstUse(t *testing.T) {
	u := newUDPCollector(t)
	tr := newTransport("udp", u.addr(), options{})
	defer tr.Close()
	recs := []flow.Record{
		ipfixTestRecord(0, false, 10), ipfixTestRecord(1, false, 10),
		ipfixTestRecord(2, false, 20), ipfixTestRecord(3, true, 20),
		ipfixTestRecord(4, true, 10),
	}
	ipfixSendAll(t, tr, ipfixItems(recs))
	m := newIPFIXCollector(t).decode(u.read(t)[0])
	want := []string{"T", "O", "O", "S10", "P10", "D256", "S20", "P20", "D256", "D257"}
	if diff := cmp.Diff(want, m.Order); diff != "" {
		t.Errorf("sets (-want +got):\n%s", diff)
	}
}

// TestIPFIXTemplateRefresh: over UDP the templates and selector records
// go again after TemplateRefresh and after TemplateRefreshMessages
// messages, and not in between.
func TestIPFIXTemplateRefresh(t *testing.T) {
	u := newUDPCollector(t)
	start := time.Unix(1_800_000_000, 0)
	clock := flow.NewManualClock(start)
	tr := newTransport("udp", u.addr(), options{Clock: clock, TemplateRefresh: time.Minute, TemplateRefreshMessages: 4})
	defer tr.Close()
	c := newIPFIXCollector(t)
	send := func(i int, at time.Duration) ipfixMessage {
		t.Helper()
		clock.Set(start.Add(at))
		ipfixSendAll(t, tr, ipfixItems([]flow.Record{ipfixTestRecord(i, false, 8)}))
		d := u.read(t)
		if len(d) != 1 {
			t.Fatalf("%d datagrams", len(d))
		}
		return c.decode(d[0])
	}
	templated := func(m ipfixMessage) bool { return len(m.Templates) == 2 && len(m.OptionsTemplates) == 2 }
	steps := []struct {
		at        time.Duration
		templates bool
	}{
		{0, true},
		{10 * time.Second, false},
		{59 * time.Second, false},
		{60 * time.Second, true}, // time
		{61 * time.Second, false},
		{62 * time.Second, false},
		{63 * time.Second, false},
		{64 * time.Second, false},
		{65 * time.Second, true}, // 4 messages since the last templates
		{66 * time.Second, false},
	}
	for i, s := range steps {
		m := send(i, s.at)
		if templated(m) != s.templates {
			t.Errorf("message %d at %v: templates %v, want %v (%v)", i, s.at, templated(m), s.templates, m.Order)
		}
		// The selector record comes with every refresh, and only then.
		if got := len(m.Selectors) == 2; got != s.templates {
			t.Errorf("message %d: selector records %v", i, m.Selectors)
		}
	}
}

// TestIPFIXUDPConnectionRefused: with nobody listening, the kernel's
// ICMP port unreachable turns into ECONNREFUSED on a later send, which
// Send reports; the next Send opens a new session (templates again,
// sequence 0) once a collector is back on the port.
func TestIPFIXUDPConnectionRefused(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	tr := newTransport("udp", addr, options{})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 1)})
	var sendErr error
	for range 50 {
		if _, sendErr = tr.Send(context.Background(), items); sendErr != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !errors.Is(sendErr, syscall.ECONNREFUSED) {
		t.Fatalf("Send error %v, want ECONNREFUSED", sendErr)
	}

	// A collector on the same port again.
	pc, err = net.ListenPacket("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	u := &udpCollector{pc: pc}
	defer pc.Close()
	ipfixSendAll(t, tr, items)
	d := u.read(t)
	if len(d) != 1 {
		t.Fatalf("%d datagrams", len(d))
	}
	if m := newIPFIXCollector(t).decode(d[0]); m.Seq != 0 || len(m.Templates) != 2 {
		t.Errorf("after reconnecting: sequence %d, %d templates", m.Seq, len(m.Templates))
	}
}

// TestIPFIXRejectsForeignItems: a malformed item stops Send after the
// items before it went out, with a *export.RejectedError the pipeline drops.
func TestIPFIXRejectsForeignItems(t *testing.T) {
	u := newUDPCollector(t)
	tr := newTransport("udp", u.addr(), options{})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 1), ipfixTestRecord(1, false, 1)})
	items = [][]byte{items[0], []byte(`{"kind":"flow"}`), items[1]}
	n, err := tr.Send(context.Background(), items)
	var rej *export.RejectedError
	if n != 1 || !errors.As(err, &rej) {
		t.Fatalf("Send = %d, %v; want 1, *export.RejectedError", n, err)
	}
	ipfixSendAll(t, tr, items[2:])
	var flows int
	c := newIPFIXCollector(t)
	for _, d := range u.read(t) {
		flows += len(c.decode(d).Flows)
	}
	if flows != 2 {
		t.Errorf("%d flows arrived, want 2", flows)
	}
}

// TestIPFIXTCPStream sends over TCP and decodes the stream message by
// message: templates once at the start of the connection, sequence
// numbers across Sends, every record in order.
func TestIPFIXTCPStream(t *testing.T) {
	col := newTCPCollector(t, 0)
	clock := flow.NewManualClock(time.Unix(1_800_000_000, 0))
	tr := newTransport("tcp", col.ln.Addr().String(), options{ObservationDomainID: 9, Clock: clock, MaxMessageSize: 4000})
	defer tr.Close()
	var recs []flow.Record
	for i := range 500 {
		recs = append(recs, ipfixTestRecord(i, i%2 == 0, uint32(1+i/100)))
	}
	items := ipfixItems(recs)
	ipfixSendAll(t, tr, items[:250])
	clock.Set(time.Unix(1_800_000_000, 0).Add(time.Hour)) // no refresh over TCP
	ipfixSendAll(t, tr, items[250:])

	conn := col.accept(t)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c := newIPFIXCollector(t)
	var flows []ipfixFlow
	var seq uint32
	for i := 0; len(flows) < len(recs); i++ {
		m := c.decode(readIPFIXMessage(t, conn))
		if m.Len > 4000 || m.Domain != 9 || m.Seq != seq {
			t.Fatalf("message %d: length %d domain %d sequence %d (want %d)", i, m.Len, m.Domain, m.Seq, seq)
		}
		if (len(m.Templates) > 0) != (i == 0) {
			t.Errorf("message %d: %d templates", i, len(m.Templates))
		}
		seq += uint32(len(m.Flows) + len(m.Selectors))
		flows = append(flows, m.Flows...)
	}
	for i := range recs {
		if w := wantIPFIXFlow(&recs[i]); !cmp.Equal(w, flows[i], cmp.Comparer(func(a, b netip.Addr) bool { return a == b })) {
			t.Fatalf("flow %d: %+v, want %+v", i, flows[i], w)
		}
	}
}

// TestIPFIXTCPReconnect: when the collector resets the connection, Send
// fails, and the next Send connects again and starts a new session
// with the templates, the selector records and sequence 0; so does a
// Send after Close.
func TestIPFIXTCPReconnect(t *testing.T) {
	col := newTCPCollector(t, 0)
	tr := newTransport("tcp", col.ln.Addr().String(), options{WriteTimeout: 2 * time.Second})
	defer tr.Close()
	items := ipfixItems([]flow.Record{ipfixTestRecord(0, false, 5), ipfixTestRecord(1, true, 5)})
	ipfixSendAll(t, tr, items)
	first := col.accept(t)
	_ = first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := newIPFIXCollector(t).decode(readIPFIXMessage(t, first)); len(m.Flows) != 2 {
		t.Fatalf("first session: %d flows", len(m.Flows))
	}
	// The collector goes away: it resets the connection.
	_ = first.(*net.TCPConn).SetLinger(0)
	first.Close()

	var err error
	for range 50 { // the reset reaches the sender's socket asynchronously
		var n int
		if n, err = tr.Send(context.Background(), items); err != nil {
			if n != 0 {
				t.Errorf("Send after reset accepted %d items", n)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err == nil {
		t.Fatal("Send kept succeeding after the collector reset the connection")
	}

	ipfixSendAll(t, tr, items)
	second := col.accept(t)
	_ = second.SetReadDeadline(time.Now().Add(5 * time.Second))
	m := newIPFIXCollector(t).decode(readIPFIXMessage(t, second))
	if m.Seq != 0 || len(m.Templates) != 2 || len(m.OptionsTemplates) != 2 || len(m.Selectors) != 2 || len(m.Flows) != 2 {
		t.Errorf("new session: sequence %d, %d templates, %d options templates, %d selectors, %d flows",
			m.Seq, len(m.Templates), len(m.OptionsTemplates), len(m.Selectors), len(m.Flows))
	}

	// Close, then Send: a third session.
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	ipfixSendAll(t, tr, items[:1])
	third := col.accept(t)
	_ = third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := newIPFIXCollector(t).decode(readIPFIXMessage(t, third)); m.Seq != 0 || len(m.Templates) != 2 || len(m.Flows) != 1 {
		t.Errorf("after Close: sequence %d, %d templates, %d flows", m.Seq, len(m.Templates), len(m.Flows))
	}
}

// TestIPFIXTCPUnacknowledged: a collector that stops reading fills its
// window; Send then gives up at WriteTimeout and reports as accepted
// only the items the collector's kernel acknowledged, which the
// collector can then indeed read.
func TestIPFIXTCPUnacknowledged(t *testing.T) {
	col := newTCPCollector(t, 4096)
	tr := newTransport("tcp", col.ln.Addr().String(), options{WriteTimeout: 500 * time.Millisecond, MaxMessageSize: 1400})
	defer tr.Close()
	var recs []flow.Record
	for i := range 60000 {
		recs = append(recs, ipfixTestRecord(i%200, false, 1))
	}
	items := ipfixItems(recs)
	startSend := time.Now()
	n, err := tr.Send(context.Background(), items)
	if err == nil || n <= 0 || n >= len(items) {
		t.Fatalf("Send = %d, %v; want some but fewer than %d and an error", n, err, len(items))
	}
	if d := time.Since(startSend); d > 3*time.Second {
		t.Errorf("Send took %v with a 500 ms write timeout", d)
	}
	t.Logf("accepted %d of %d items: %v", n, len(items), err)

	// Everything acknowledged is in the collector's socket.
	conn := col.accept(t)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	c := newIPFIXCollector(t)
	got := 0
	for got < n {
		got += len(c.decode(readIPFIXMessage(t, conn)).Flows)
	}
}

// TestIPFIXTCPContextCancel: a Send blocked on a collector that does not
// read returns when its context is cancelled.
func TestIPFIXTCPContextCancel(t *testing.T) {
	col := newTCPCollector(t, 4096)
	tr := newTransport("tcp", col.ln.Addr().String(), options{WriteTimeout: time.Minute})
	defer tr.Close()
	var recs []flow.Record
	for i := range 60000 {
		recs = append(recs, ipfixTestRecord(i%200, false, 1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := tr.Send(ctx, ipfixItems(recs))
	if !errors.Is(err, context.DeadlineExceeded) || n >= len(recs) {
		t.Fatalf("Send = %d, %v; want a deadline error", n, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("Send returned after %v", d)
	}
}

func TestIPFIXOptionsDefaults(t *testing.T) {
	u := newTransport("udp", "127.0.0.1:1", options{}).opt
	if u.MaxMessageSize != 1400 || u.TemplateRefresh != time.Minute || u.TemplateRefreshMessages != 1000 {
		t.Errorf("udp defaults: %+v", u)
	}
	if c := newTransport("tcp", "127.0.0.1:1", options{}).opt; c.MaxMessageSize != 65535 {
		t.Errorf("tcp message size %d", c.MaxMessageSize)
	}
	if c := newTransport("udp", "x:1", options{MaxMessageSize: 100}).opt; c.MaxMessageSize != 512 {
		t.Errorf("small message size raised to %d", c.MaxMessageSize)
	}
	if !strings.Contains(string(ipfixTemplateSets), string([]byte{0, 3})) {
		t.Error("no options template set")
	}
}
