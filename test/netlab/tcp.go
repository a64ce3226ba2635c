package netlab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The lab's TCP request/response protocol: the client sends an 8-byte
// header (request body length, response length; big-endian uint32) and
// the request body; the server answers with the response bytes. A
// connection carries any number of exchanges. When the client shuts
// its side down, the server closes the connection.
const (
	MaxTCPMessage = 16 << 20         // largest request body or response
	TCPTimeout    = 30 * time.Second // longest any connection lives
)

// TCPServer accepts connections in the sensor namespace and answers the
// lab's request/response protocol. Keepalives are off, so an idle
// connection sends nothing.
type TCPServer struct {
	Addr netip.AddrPort
	ln   net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	err    error
}

// NewTCPServer listens on the sensor end's address of the family (4 or
// 6) and port. It is closed by t.Cleanup, which fails the test if a
// connection broke the protocol.
func (l *Lab) NewTCPServer(t testing.TB, family int, port uint16) *TCPServer {
	t.Helper()
	addr := SensorIPv4
	if family == 6 {
		addr = SensorIPv6
	}
	s := &TCPServer{Addr: netip.AddrPortFrom(addr, port), conns: map[net.Conn]struct{}{}}
	err := l.Sensor.Do(func() error {
		var err error
		lc := net.ListenConfig{KeepAlive: -1}
		s.ln, err = lc.Listen(context.Background(), "tcp", s.Addr.String())
		return err
	})
	if err != nil {
		t.Fatalf("netlab: TCP listener in %s: %v", l.Sensor.Name, err)
	}
	s.wg.Add(1)
	go s.accept()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("netlab: TCP server %s: %v", s.Addr, err)
		}
	})
	return s
}

func (s *TCPServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			err := serveTCP(c)
			s.mu.Lock()
			delete(s.conns, c)
			// After Close, a broken read is Close's doing, not the client's.
			if err != nil && s.err == nil && !s.closed {
				s.err = err
			}
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func serveTCP(c net.Conn) error {
	c.SetDeadline(time.Now().Add(TCPTimeout))
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return nil // the client shut down (or aborted) between exchanges
			}
			return fmt.Errorf("reading request header: %w", err)
		}
		req, resp := binary.BigEndian.Uint32(hdr[0:4]), binary.BigEndian.Uint32(hdr[4:8])
		if req > MaxTCPMessage || resp > MaxTCPMessage {
			return fmt.Errorf("request %d / response %d bytes over %d", req, resp, MaxTCPMessage)
		}
		if _, err := io.CopyN(io.Discard, c, int64(req)); err != nil {
			return fmt.Errorf("reading %d-byte request: %w", req, err)
		}
		if _, err := c.Write(pattern(int(resp))); err != nil {
			return fmt.Errorf("writing %d-byte response: %w", resp, err)
		}
	}
}

// Close stops accepting, closes the connections still open and returns
// the first protocol error any connection met.
func (s *TCPServer) Close() error {
	s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Err returns the first protocol error a connection met, so far.
func (s *TCPServer) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// TCPClient is a connection from the peer namespace to a TCPServer.
// Every frame it sends travels from the peer to the sensor end; the
// server's frames travel back.
type TCPClient struct {
	Src, Dst netip.AddrPort
	conn     *net.TCPConn
}

// DialTCP connects from the peer's address of dst's family to dst (a
// TCPServer's Addr), keepalives off. It is closed by t.Cleanup.
func (l *Lab) DialTCP(t testing.TB, dst netip.AddrPort) *TCPClient {
	t.Helper()
	src := PeerIPv4
	if dst.Addr().Is6() {
		src = PeerIPv6
	}
	var conn net.Conn
	err := l.Peer.Do(func() error {
		d := net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: -1,
			LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0)),
		}
		var err error
		conn, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		t.Fatalf("netlab: dialing %s from %s: %v", dst, l.Peer.Name, err)
	}
	tc := conn.(*net.TCPConn)
	tc.SetDeadline(time.Now().Add(TCPTimeout))
	c := &TCPClient{
		Src:  tc.LocalAddr().(*net.TCPAddr).AddrPort(),
		Dst:  dst,
		conn: tc,
	}
	c.Src = netip.AddrPortFrom(c.Src.Addr().Unmap(), c.Src.Port())
	t.Cleanup(func() { tc.Close() })
	return c
}

// Exchange sends a request body of req bytes and reads the whole
// response of resp bytes.
func (c *TCPClient) Exchange(req, resp int) error {
	if req < 0 || req > MaxTCPMessage || resp < 0 || resp > MaxTCPMessage {
		return fmt.Errorf("request %d / response %d bytes out of range 0..%d", req, resp, MaxTCPMessage)
	}
	msg := make([]byte, 8, 8+req)
	binary.BigEndian.PutUint32(msg[0:4], uint32(req))
	binary.BigEndian.PutUint32(msg[4:8], uint32(resp))
	msg = append(msg, pattern(req)...)
	if _, err := c.conn.Write(msg); err != nil {
		return fmt.Errorf("%s -> %s: writing request: %w", c.Src, c.Dst, err)
	}
	got, err := io.CopyN(io.Discard, c.conn, int64(resp))
	if err != nil {
		return fmt.Errorf("%s -> %s: read %d of %d response bytes: %w", c.Src, c.Dst, got, resp, err)
	}
	return nil
}

// Shutdown closes the connection in order: the client sends its FIN,
// waits for the server's FIN (the server closes when it reads the
// client's), and closes. Both sides exchange FINs; there is no RST.
func (c *TCPClient) Shutdown() error {
	if err := c.conn.CloseWrite(); err != nil {
		return fmt.Errorf("%s -> %s: shutting down: %w", c.Src, c.Dst, err)
	}
	var b [1]byte
	n, err := c.conn.Read(b[:])
	if n != 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s -> %s: waiting for the server's FIN: read %d bytes, %v", c.Src, c.Dst, n, err)
	}
	return c.conn.Close()
}

// Abort closes the connection with a RST instead of a FIN (SO_LINGER
// 0), between exchanges.
func (c *TCPClient) Abort() error {
	if err := c.conn.SetLinger(0); err != nil {
		return fmt.Errorf("%s -> %s: SO_LINGER: %w", c.Src, c.Dst, err)
	}
	return c.conn.Close()
}
