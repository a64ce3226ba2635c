package sampler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

	watchMu     sync.Mutex
	watchErrs   map[string]uint64 // what the link subscription reported, by reason
	watchLogged map[string]time.Time
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

		watchErrs:   map[string]uint64{},
		watchLogged: map[string]time.Time{},
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
//
// Following links never stops the capture: what the subscription
// reports is counted by reason (LinkWatchErrors) and logged at most
// once a minute per reason. Messages from another netlink socket (a
// second sensor, or any privileged listener in the namespace, sending
// to the group) are ignored; a dump cut short by a change, or a
// subscription that fails (its socket overran), is followed by a fresh
// subscription that lists every link again, after a backoff while it
// keeps failing. The interfaces attached stay attached meanwhile.
func (m *Manager) Run(ctx context.Context) error {
	defer m.detachAll()
	backoff := linkRetryMin
	for {
		start := time.Now()
		err := m.follow(ctx)
		if ctx.Err() != nil {
			return nil
		}
		m.watchErr(linkResubscribe, err)
		if time.Since(start) > linkRetryMax {
			backoff = linkRetryMin // it ran a while: not a loop of failures
		}
		t := time.NewTimer(backoff)
		backoff = min(2*backoff, linkRetryMax)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case names := <-m.setNames:
				m.apply(names)
			case <-t.C:
				break wait
			}
		}
	}
}

// Backoff between subscriptions to link updates while they keep failing.
const (
	linkRetryMin = 100 * time.Millisecond
	linkRetryMax = 30 * time.Second
)

// follow subscribes to link updates, lists every link (attaching the
// configured ones that exist) and handles updates until ctx ends or the
// subscription must be made again; it says why.
func (m *Manager) follow(ctx context.Context) error {
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	var closing atomic.Bool // closing the socket ends its reads with an error
	defer func() {
		closing.Store(true)
		close(done)
	}()
	resync := make(chan error, 1)
	err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{
		ListExisting: true,
		ErrorCallback: func(err error) {
			if closing.Load() {
				return
			}
			reason := linkErrReason(err)
			m.watchErr(reason, err)
			if reason == linkDumpInterrupted {
				select {
				case resync <- err:
				default:
				}
			}
		},
	})
	if err != nil {
		return fmt.Errorf("subscribing to link updates: %w", err)
	}
	m.prune()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-resync:
			return err
		case names := <-m.setNames:
			m.apply(names)
		case u, ok := <-updates:
			if !ok {
				return errors.New("the link update subscription ended")
			}
			m.handle(u)
		}
	}
}

// prune detaches what is attached to an interface that is gone: links
// removed while no subscription was there to see it.
func (m *Manager) prune() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for n, a := range m.attached {
		if l, err := netlink.LinkByIndex(a.Ifindex); err != nil || l.Attrs().Name != n {
			m.detachLocked(n, "interface removed")
		}
	}
}

// Reasons a link subscription reported something, for LinkWatchErrors.
const (
	linkForeignSender   = "foreign_sender"   // a message from another netlink socket: ignored
	linkDumpInterrupted = "dump_interrupted" // the listing changed while read: listed again
	linkReceive         = "receive"          // the socket failed (overrun): subscribed again
	linkErrorMessage    = "error_message"    // the kernel answered with an error: ignored
	linkDecode          = "decode"           // a message that did not decode: ignored
	linkResubscribe     = "resubscribe"      // subscriptions made again
)

var linkErrReasons = []string{linkForeignSender, linkDumpInterrupted, linkReceive, linkErrorMessage, linkDecode, linkResubscribe}

// linkErrReason sorts what vishvananda/netlink's subscription reports;
// it has no error types but ErrDumpInterrupted, so the rest go by the
// text it writes.
func linkErrReason(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, netlink.ErrDumpInterrupted):
		return linkDumpInterrupted
	case strings.HasPrefix(msg, "Wrong sender portid"):
		return linkForeignSender
	case strings.HasPrefix(msg, "Receive failed"):
		return linkReceive
	case strings.HasPrefix(msg, "error message"):
		return linkErrorMessage
	}
	return linkDecode
}

// watchErr counts a subscription event and logs it, at most once a
// minute for each reason.
func (m *Manager) watchErr(reason string, err error) {
	m.watchMu.Lock()
	m.watchErrs[reason]++
	last := m.watchLogged[reason]
	now := time.Now()
	logIt := now.Sub(last) >= time.Minute
	if logIt {
		m.watchLogged[reason] = now
	}
	n := m.watchErrs[reason]
	m.watchMu.Unlock()
	if logIt {
		m.log.Warn("following link updates", "reason", reason, "count", n, "error", err)
	}
}

// LinkWatchErrors returns what following link updates reported, by
// reason (foreign_sender, dump_interrupted, receive, error_message,
// decode, resubscribe).
func (m *Manager) LinkWatchErrors() map[string]uint64 {
	m.watchMu.Lock()
	defer m.watchMu.Unlock()
	out := make(map[string]uint64, len(linkErrReasons))
	for _, r := range linkErrReasons {
		out[r] = m.watchErrs[r]
	}
	return out
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
