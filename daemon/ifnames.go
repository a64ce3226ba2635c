package daemon

import (
	"net"
	"strconv"
	"sync"
)

// ifNames names interfaces by index for flow records, caching what it
// learns; an index it cannot resolve is written as "if<N>".
type ifNames struct {
	mu    sync.RWMutex
	names map[uint32]string
	fixed string // replay: every record carries this name
}

func (n *ifNames) name(ifindex uint32) string {
	if n.fixed != "" {
		return n.fixed
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

func (n *ifNames) set(ifindex uint32, name string) {
	n.mu.Lock()
	if n.names == nil {
		n.names = map[uint32]string{}
	}
	n.names[ifindex] = name
	n.mu.Unlock()
}
