//go:build !linux

package ipfix

// Off Linux the socket's send queue cannot be read: a write the kernel
// accepted counts as delivered, so TCP export there is at most once
// across a collector's failure, and the spool keeps only what was never
// written. The sensor itself runs on Linux; this keeps replay and
// check-config building elsewhere.

func (t *Transport) unacked() (int, error) { return 0, nil }

func (t *Transport) tcpState() (state uint8, soErr error) { return 0, nil }
