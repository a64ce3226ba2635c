package sampler

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultRouteInterfaces returns the names of the interfaces that carry a
// default route (IPv4 or IPv6, including multipath next hops): where a
// gateway's traffic leaves and arrives.
func DefaultRouteInterfaces() ([]string, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	var idx []int
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.LinkIndex > 0 {
			idx = append(idx, r.LinkIndex)
		}
		for _, nh := range r.MultiPath {
			idx = append(idx, nh.LinkIndex)
		}
	}
	var names []string
	for _, i := range idx {
		l, err := netlink.LinkByIndex(i)
		if err != nil {
			return nil, fmt.Errorf("looking up interface %d: %w", i, err)
		}
		if n := l.Attrs().Name; !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names, nil
}

// Manager keeps the capture program attached to a set of interfaces by
// name while they come and go: it attaches when a configured interface
// appears (or is recreated), and detaches when it disappears, without a
// restart. Attach and detach happen in the goroutine that calls Run, so
// a caller that pins Run to a network namespace manages that namespace.
type Manager struct {
	progs  *Programs
	names  []string
	mode   Mode
	egress bool
	log    *slog.Logger

	setNames chan []string // SetInterfaces to Run

	mu       sync.Mutex
	attached map[string]*Attachment
	failures map[string]uint64 // attach failures by interface
}

// NewManager returns a manager for the named interfaces.
func NewManager(progs *Programs, names []string, mode Mode, egress bool, log *slog.Logger) *Manager {
	return &Manager{
		progs:    progs,
		names:    slices.Clone(names),
		mode:     mode,
		egress:   egress,
		log:      log,
		setNames: make(chan []string, 1),
		attached: map[string]*Attachment{},
		failures: map[string]uint64{},
	}
}

// SetInterfaces changes the set of interfaces to capture on, while Run
// runs (configuration reload): interfaces no longer named are detached,
// new ones that exist are attached.
func (m *Manager) SetInterfaces(names []string) {
	names = slices.Clone(names)
	for {
		select {
		case m.setNames <- names:
			return
		default:
		}
		select { // replace a request Run has not taken yet
		case <-m.setNames:
		default:
		}
	}
}

// Interfaces returns the names the manager is asked to capture on.
func (m *Manager) Interfaces() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.names)
}

func (m *Manager) apply(names []string) {
	m.mu.Lock()
	m.names = names
	for n := range m.attached {
		if !slices.Contains(names, n) {
			m.detachLocked(n, "removed from the configuration")
		}
	}
	m.mu.Unlock()
	for _, n := range names {
		link, err := netlink.LinkByName(n)
		if err != nil {
			m.log.Warn("interface not found; will attach when it appears", "interface", n)
			continue
		}
		m.handle(netlink.LinkUpdate{Link: link, Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK}})
	}
}

// Run attaches to the configured interfaces that exist, follows link
// updates until ctx ends, then detaches everything. Attachments tells
// the current state while it runs.
func (m *Manager) Run(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	subErr := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			select {
			case subErr <- err:
			default:
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribing to link updates: %w", err)
	}
	defer m.detachAll()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-subErr:
			return fmt.Errorf("following link updates: %w", err)
		case names := <-m.setNames:
			m.apply(names)
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("link update channel closed")
			}
			m.handle(u)
		}
	}
}

func (m *Manager) handle(u netlink.LinkUpdate) {
	attrs := u.Link.Attrs()
	name, index := attrs.Name, attrs.Index
	m.mu.Lock()
	defer m.mu.Unlock()

	// An attached interface renamed away or recreated under the same name.
	for n, a := range m.attached {
		if a.Ifindex == index && n != name {
			m.detachLocked(n, "renamed to "+name)
		}
	}
	if !slices.Contains(m.names, name) {
		return
	}
	cur := m.attached[name]
	if u.Header.Type == unix.RTM_DELLINK {
		if cur != nil && cur.Ifindex == index {
			m.detachLocked(name, "interface removed")
		}
		return
	}
	if cur != nil && cur.Ifindex == index {
		return // a state change of an interface we hold
	}
	if cur != nil {
		m.detachLocked(name, "interface recreated")
	}
	if err := m.progs.ResetInterfaceStats(uint32(index)); err != nil {
		m.log.Warn("resetting interface counters", "interface", name, "error", err)
	}
	a, err := m.progs.Attach(net.Interface{Name: name, Index: index}, m.mode, m.egress)
	if err != nil {
		m.failures[name]++
		m.log.Error("attach failed; will retry when the interface changes", "interface", name, "error", err)
		return
	}
	m.attached[name] = a
	m.log.Info("attached", "interface", name, "ifindex", index, "mode", a.Mode, "egress", a.Egress)
}

func (m *Manager) detachLocked(name, why string) {
	a := m.attached[name]
	delete(m.attached, name)
	if err := a.Close(); err != nil {
		m.log.Warn("detach", "interface", name, "error", err)
	}
	m.log.Info("detached", "interface", name, "ifindex", a.Ifindex, "reason", why)
}

func (m *Manager) detachAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.attached {
		m.detachLocked(name, "shutdown")
	}
}

// AttachmentInfo describes one attached interface.
type AttachmentInfo struct {
	Name    string
	Ifindex int
	Mode    Mode
	Egress  bool
}

// Attachments returns the interfaces the program is attached to now.
func (m *Manager) Attachments() []AttachmentInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AttachmentInfo, 0, len(m.attached))
	for _, a := range m.attached {
		out = append(out, AttachmentInfo{Name: a.Name, Ifindex: a.Ifindex, Mode: a.Mode, Egress: a.Egress})
	}
	slices.SortFunc(out, func(a, b AttachmentInfo) int { return a.Ifindex - b.Ifindex })
	return out
}

// AttachFailures returns the number of failed attach attempts by interface.
func (m *Manager) AttachFailures() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.failures))
	for k, v := range m.failures {
		out[k] = v
	}
	return out
}
