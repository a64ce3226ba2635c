package ipfix

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// options are a transport's settings: Config's keys resolved, and the
// knobs tests turn. Zero values take the defaults.
type options struct {
	// ObservationDomainID goes in every message header.
	ObservationDomainID uint32
	// MaxMessageSize bounds an IPFIX message (header included), in
	// bytes: 1400 for UDP by default (fits a 1500-byte MTU), 65535 (the
	// most the length field holds) for TCP. Values below 512 are raised
	// to 512.
	MaxMessageSize int
	// TemplateRefresh is how often UDP resends the templates and the
	// sampling rates (RFC 7011 §8.4); default 60 s, negative: never
	// after the first message.
	TemplateRefresh time.Duration
	// TemplateRefreshMessages also resends them over UDP every this many
	// messages; default 1000, negative: never.
	TemplateRefreshMessages int
	// DialTimeout bounds connecting; default 5 s.
	DialTimeout time.Duration
	// WriteTimeout bounds one Send over TCP, writes and the wait for the
	// collector's acknowledgements included; default 10 s.
	WriteTimeout time.Duration
	// Clock tells the export time and when to refresh templates; tests
	// set a flow.ManualClock. Default: the system clock.
	Clock flow.Clock
	// Log receives connection events; default slog.Default().
	Log *slog.Logger
}

const (
	ipfixMinMessage = 512
	ipfixMaxMessage = 65535
	// ipfixMaxSelectors bounds the rates remembered as announced in one
	// session; past it they are forgotten and announced again when
	// next used.
	ipfixMaxSelectors = 4096
)

func (o options) withDefaults(network string) options {
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 1400
		if network == "tcp" {
			o.MaxMessageSize = ipfixMaxMessage
		}
	}
	o.MaxMessageSize = min(max(o.MaxMessageSize, ipfixMinMessage), ipfixMaxMessage)
	if o.TemplateRefresh == 0 {
		o.TemplateRefresh = time.Minute
	}
	if o.TemplateRefreshMessages == 0 {
		o.TemplateRefreshMessages = 1000
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.Clock == nil {
		o.Clock = flow.SystemClock{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// Transport sends IPFIX items (made by Encoder) to a
// collector over UDP or TCP. Each connection is one IPFIX session: it
// starts with the templates and a sequence number of 0. What a
// successful Send guarantees is in docs/IPFIX.md: over TCP, that the
// collector's kernel acknowledged every byte; over UDP, only that the
// local kernel took the datagrams. Send and Close may be called from
// several goroutines; sends are serialised.
type Transport struct {
	network string
	addr    string
	opt     options

	mu     sync.Mutex
	conn   net.Conn
	sess   ipfixSession
	msg    []byte
	newSel []uint32
	marks  []ipfixMark

	wireBytes uint64 // IPFIX bytes sent, for benchmarks
}

// ipfixSession is what the collector knows in the current session.
type ipfixSession struct {
	seq          uint32              // data records sent so far (RFC 7011 §3.1)
	templated    bool                // templates sent at least once
	templatesAt  time.Time           // when they were last sent (UDP refresh)
	sinceRefresh int                 // messages sent since then
	announced    map[uint32]struct{} // rates whose selector record was sent since then
}

// ipfixMark ends a TCP message: bytes written and items consumed up to
// and including it.
type ipfixMark struct {
	bytes int
	items int
}

// NewTransport returns a transport to the collector of c, over UDP
// (messages of at most c.MTU bytes, templates resent every
// c.TemplateRefresh) or TCP (messages of up to 65535 bytes, templates
// once per connection). It connects at the first Send.
func NewTransport(c Config, deps export.Dependencies) *Transport {
	o := options{ObservationDomainID: c.ObservationDomain, TemplateRefresh: c.TemplateRefresh.D, Log: deps.Log}
	if c.Transport == "udp" {
		o.MaxMessageSize = c.MTU
	}
	return newTransport(c.Transport, c.Address, o)
}

// newTransport returns a transport to addr (host:port) over network,
// udp (one connected socket) or tcp.
func newTransport(network, addr string, o options) *Transport {
	return &Transport{network: network, addr: addr, opt: o.withDefaults(network)}
}

// Close closes the connection; the next Send opens a new session.
func (t *Transport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closeConn()
}

func (t *Transport) closeConn() error {
	if t.conn == nil {
		return nil
	}
	err := t.conn.Close()
	t.conn = nil
	t.sess = ipfixSession{}
	if err != nil {
		return fmt.Errorf("closing IPFIX %s connection to %s: %w", t.network, t.addr, err)
	}
	return nil
}

func (t *Transport) connect(ctx context.Context) error {
	if t.conn != nil {
		return nil
	}
	d := net.Dialer{Timeout: t.opt.DialTimeout}
	c, err := d.DialContext(ctx, t.network, t.addr)
	if err != nil {
		return fmt.Errorf("connecting to IPFIX collector %s over %s: %w", t.addr, t.network, err)
	}
	t.conn = c
	t.sess = ipfixSession{announced: make(map[uint32]struct{})}
	t.opt.Log.Debug("IPFIX session opened", "network", t.network, "collector", t.addr, "local", c.LocalAddr().String())
	return nil
}

// Send sends items in order, packed into messages of at most
// MaxMessageSize bytes. It returns how many leading items were
// accepted (see Transport). A malformed item stops the send with a
// *export.RejectedError for it, after the items before it went out.
func (t *Transport) Send(ctx context.Context, items [][]byte) (int, error) {
	if len(items) == 0 {
		return 0, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := t.connect(ctx); err != nil {
		return 0, err
	}
	if t.network == "udp" {
		return t.sendUDP(ctx, items)
	}
	return t.sendTCP(ctx, items)
}

func (t *Transport) sendUDP(ctx context.Context, items [][]byte) (int, error) {
	done := 0
	for done < len(items) {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		b, err := t.build(items[done:])
		if b.items > 0 {
			if _, werr := t.conn.Write(t.msg); werr != nil {
				_ = t.closeConn()
				return done, fmt.Errorf("sending IPFIX message to %s over udp: %w", t.addr, werr)
			}
			t.commit(b)
			done += b.items
		}
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

func (t *Transport) sendTCP(ctx context.Context, items [][]byte) (int, error) {
	deadline := time.Now().Add(t.opt.WriteTimeout)
	conn := t.conn
	if err := conn.SetWriteDeadline(deadline); err != nil {
		return 0, t.failTCP(0, fmt.Errorf("setting IPFIX write deadline: %w", err))
	}
	// ctx (cancelled or past its deadline) interrupts a blocked write.
	// Wait for that to finish before returning, so that it cannot hit
	// the next Send's writes.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = conn.SetWriteDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()

	t.marks = t.marks[:0]
	written, done := 0, 0
	var rejected error
	for done < len(items) {
		b, err := t.build(items[done:])
		if b.items > 0 {
			n, werr := conn.Write(t.msg)
			written += n
			if werr != nil {
				if ctx.Err() != nil {
					werr = ctx.Err()
				}
				return t.ackedItems(written), t.failTCP(written, fmt.Errorf("sending IPFIX message to %s over tcp: %w", t.addr, werr))
			}
			t.commit(b)
			done += b.items
			t.marks = append(t.marks, ipfixMark{bytes: written, items: done})
		}
		if err != nil {
			rejected = err
			break
		}
	}
	if err := t.waitAcked(ctx, deadline); err != nil {
		return t.ackedItems(written), t.failTCP(written, err)
	}
	return done, rejected
}

// failTCP closes the connection after a failed send: the next Send
// starts a new session and sends again what was not acknowledged.
func (t *Transport) failTCP(written int, err error) error {
	t.opt.Log.Debug("IPFIX tcp send failed; closing the session", "collector", t.addr, "written", written, "error", err)
	_ = t.closeConn()
	return err
}

// ackedItems returns how many items are in messages the collector's
// kernel acknowledged entirely, from the socket's unacknowledged byte
// count. It must run before the connection is closed.
func (t *Transport) ackedItems(written int) int {
	unacked, err := t.unacked()
	if err != nil {
		return 0
	}
	acked := written - unacked
	n := 0
	for _, m := range t.marks {
		if m.bytes > acked {
			break
		}
		n = m.items
	}
	return n
}

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpCloseWait   = 8
)

// waitAcked waits until the collector's kernel has acknowledged every
// byte written, the connection fails, ctx is done or deadline passes.
func (t *Transport) waitAcked(ctx context.Context, deadline time.Time) error {
	wait := 200 * time.Microsecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		n, err := t.unacked()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if state, soErr := t.tcpState(); soErr != nil {
			return fmt.Errorf("IPFIX collector %s: %w", t.addr, soErr)
		} else if state != 0 && state != tcpEstablished && state != tcpCloseWait {
			return fmt.Errorf("IPFIX collector %s: connection closed with %d bytes unacknowledged", t.addr, n)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("IPFIX collector %s: %d bytes not acknowledged within the write timeout", t.addr, n)
		}
		timer.Reset(min(wait, left))
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for IPFIX collector %s to acknowledge %d bytes: %w", t.addr, n, ctx.Err())
		case <-timer.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}
