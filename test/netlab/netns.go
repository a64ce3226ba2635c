// Package netlab is a small network lab for privileged tests: two
// network namespaces joined by a veth pair, with addresses, static
// neighbours and helpers to run code inside a namespace, read interface
// counters and send known UDP traffic between the two ends.
//
// Traffic never leaves the lab: both ends live in namespaces the lab
// created, and everything is removed by t.Cleanup. The caller must be
// root (see internal/testutil.RequirePrivileged).
package netlab

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"runtime"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Namespace is a named network namespace owned by a lab.
type Namespace struct {
	Name string
	h    netns.NsHandle
	nl   *netlink.Handle
}

var seq atomic.Uint64

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// uniqueName builds a namespace name from the process id, a sequence
// number and the test name, so parallel test binaries never collide.
func uniqueName(test, suffix string) string {
	test = unsafeChars.ReplaceAllString(test, "_")
	if len(test) > 40 {
		test = test[:40]
	}
	return fmt.Sprintf("vigil-%d-%d-%s-%s", os.Getpid(), seq.Add(1), test, suffix)
}

// onFreshThread runs fn on a locked OS thread that is thrown away
// afterwards (the goroutine exits locked, so the runtime kills the
// thread): whatever fn does to the thread's namespaces cannot leak into
// other goroutines.
func onFreshThread(fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread may have changed namespace.
		done <- fn()
	}()
	return <-done
}

// newNamespace creates a named network namespace (bound under
// /run/netns like `ip netns add`) and a netlink handle inside it.
func newNamespace(name string) (*Namespace, error) {
	var h netns.NsHandle
	err := onFreshThread(func() error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		netns.DeleteNamed(name)
		return nil, fmt.Errorf("netlink handle in %s: %w", name, err)
	}
	return &Namespace{Name: name, h: h, nl: nl}, nil
}

// close releases the handles and removes the namespace's name. The
// kernel frees the namespace (and its interfaces) once no thread or
// socket refers to it any more.
func (n *Namespace) close() error {
	n.nl.Close()
	n.h.Close()
	return netns.DeleteNamed(n.Name)
}

// Do runs fn on an OS thread that has entered the namespace, and waits
// for it. Sockets, BPF links and netlink subscriptions that fn creates
// belong to the namespace and stay valid after Do returns. The thread
// is discarded afterwards. fn must not call t.Fatal (it runs on another
// goroutine): return an error instead.
func (n *Namespace) Do(fn func() error) error {
	return <-n.Go(fn)
}

// Go is Do without waiting: fn runs on its own goroutine, pinned to a
// thread inside the namespace, and its result arrives on the channel.
// Use it for long-running loops that must live in the namespace, such
// as sampler.Manager.Run.
func (n *Namespace) Go(fn func() error) <-chan error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread is in another namespace now.
		if err := netns.Set(n.h); err != nil {
			done <- fmt.Errorf("entering namespace %s: %w", n.Name, err)
			return
		}
		done <- fn()
	}()
	return done
}

// Link returns the named link of the namespace.
func (n *Namespace) Link(name string) (netlink.Link, error) {
	l, err := n.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %s in %s: %w", name, n.Name, err)
	}
	return l, nil
}

// Interface returns the named interface as a net.Interface (ifindex,
// name, MTU, MAC), looked up inside the namespace.
func (n *Namespace) Interface(name string) (net.Interface, error) {
	l, err := n.Link(name)
	if err != nil {
		return net.Interface{}, err
	}
	a := l.Attrs()
	return net.Interface{Index: a.Index, Name: a.Name, MTU: a.MTU, HardwareAddr: a.HardwareAddr, Flags: a.Flags}, nil
}

// Stats returns the kernel's counters of the named interface
// (rx_packets, rx_bytes, tx_packets, ... as in /sys/class/net/*/statistics).
func (n *Namespace) Stats(name string) (netlink.LinkStatistics, error) {
	l, err := n.Link(name)
	if err != nil {
		return netlink.LinkStatistics{}, err
	}
	st := l.Attrs().Statistics
	if st == nil {
		return netlink.LinkStatistics{}, fmt.Errorf("link %s in %s: no statistics", name, n.Name)
	}
	return *st, nil
}

// DeleteLink removes the named link (for a veth, both ends).
func (n *Namespace) DeleteLink(name string) error {
	l, err := n.Link(name)
	if err != nil {
		return err
	}
	if err := n.nl.LinkDel(l); err != nil {
		return fmt.Errorf("deleting %s in %s: %w", name, n.Name, err)
	}
	return nil
}

// Sysctl writes a per-namespace sysctl, e.g.
// Sysctl("net/ipv6/conf/veth0/accept_dad", "0").
func (n *Namespace) Sysctl(key, value string) error {
	return n.Do(func() error {
		// /proc/sys/net resolves against the calling thread's namespace.
		if err := os.WriteFile("/proc/sys/"+key, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, n.Name, err)
		}
		return nil
	})
}
