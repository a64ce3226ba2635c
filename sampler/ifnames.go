package sampler

import (
	"net"
	"strconv"
	"sync"
)

// IfNames names interfaces by index for records, caching what it
// learns; an index it cannot resolve is written as "if<N>". The zero
// value is ready; Fixed names every index the same (a replay).
type IfNames struct {
	mu    sync.RWMutex
	names map[uint32]string
	Fixed string
}

// Name is the interface's name.
func (n *IfNames) Name(ifindex uint32) string {
	if n.Fixed != "" {
		return n.Fixed
	}
	n.mu.RLock()
	s, ok := n.names[ifindex]
	n.mu.RUnlock()
	if ok {
		return s
	}
	s = "if" + strconv.FormatUint(uint64(ifindex), 10)
	if ifi, err := net.InterfaceByIndex(int(ifindex)); err == nil {
		s = ifi.Name
	}
	n.set(ifindex, s)
	return s
}

func (n *IfNames) set(ifindex uint32, name string) {
	n.mu.Lock()
	if n.names == nil {
		n.names = map[uint32]string{}
	}
	n.names[ifindex] = name
	n.mu.Unlock()
}
