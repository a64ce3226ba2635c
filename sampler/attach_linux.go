package sampler

import (
	"errors"
	"fmt"
	"net"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Attachment is the capture program attached to one interface.
type Attachment struct {
	Name    string
	Ifindex int
	Mode    Mode // the ingress mode it got
	Egress  bool // also attached to tcx egress
	links   []link.Link
}

// Close detaches the programs. Closing after the interface is gone is
// fine: the kernel already dropped the attachment.
func (a *Attachment) Close() error {
	var errs []error
	for _, l := range a.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	a.links = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detaching from %s: %w", a.Name, err)
	}
	return nil
}

// Attach puts the capture program on an interface's ingress in the mode
// asked for; ModeAuto tries native XDP, then generic XDP, then tcx, and
// the Attachment says which one held. With egress, the tc program is
// also attached to tcx egress.
func (p *Programs) Attach(ifc net.Interface, mode Mode, egress bool) (*Attachment, error) {
	a := &Attachment{Name: ifc.Name, Ifindex: ifc.Index}
	try := []Mode{mode}
	if mode == ModeAuto || mode == "" {
		try = []Mode{ModeXDPNative, ModeXDPGeneric, ModeTCX}
	}
	var errs []error
	for _, m := range try {
		l, err := p.attachIngress(ifc.Index, m)
		if err == nil {
			a.Mode = m
			a.links = append(a.links, l)
			break
		}
		errs = append(errs, fmt.Errorf("%s: %w", m, err))
	}
	if a.Mode == "" {
		return nil, fmt.Errorf("attaching to %s: %w", ifc.Name, errors.Join(errs...))
	}
	if egress {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifc.Index,
			Program:   p.objs.VigilTcEgress,
			Attach:    ebpf.AttachTCXEgress,
		})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("attaching tcx egress to %s: %w", ifc.Name, err)
		}
		a.links = append(a.links, l)
		a.Egress = true
	}
	return a, nil
}

func (p *Programs) attachIngress(ifindex int, m Mode) (link.Link, error) {
	switch m {
	case ModeXDPNative:
		return link.AttachXDP(link.XDPOptions{Program: p.objs.VigilXdp, Interface: ifindex, Flags: link.XDPDriverMode})
	case ModeXDPGeneric:
		return link.AttachXDP(link.XDPOptions{Program: p.objs.VigilXdp, Interface: ifindex, Flags: link.XDPGenericMode})
	case ModeTCX:
		return link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: p.objs.VigilTcIngress, Attach: ebpf.AttachTCXIngress})
	}
	return nil, fmt.Errorf("unknown attach mode %q", m)
}
