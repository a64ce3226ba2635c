package ipfix

import (
	"errors"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// unacked returns the bytes written to the socket that the peer has not
// acknowledged yet (SIOCOUTQ: sent but unacknowledged plus unsent).
func (t *Transport) unacked() (int, error) {
	tc, ok := t.conn.(*net.TCPConn)
	if !ok {
		return 0, errors.New("not a TCP connection")
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading IPFIX socket: %w", err)
	}
	var n int
	var ierr error
	if err := raw.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) }); err != nil {
		return 0, fmt.Errorf("reading IPFIX socket: %w", err)
	}
	if ierr != nil {
		return 0, fmt.Errorf("reading the IPFIX socket's send queue: %w", ierr)
	}
	return n, nil
}

// tcpState returns the socket's TCP state and pending error.
func (t *Transport) tcpState() (state uint8, soErr error) {
	tc, ok := t.conn.(*net.TCPConn)
	if !ok {
		return 0, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, err
	}
	_ = raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state = info.State
		}
		if e, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR); err == nil && e != 0 {
			soErr = unix.Errno(e)
		}
	})
	return state, soErr
}
