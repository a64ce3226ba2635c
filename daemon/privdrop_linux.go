package daemon

import (
	"fmt"
	"log/slog"
	"strings"

	"kernel.org/pub/linux/libs/security/libcap/cap"
)

// runtimeCaps are the capabilities the daemon keeps once start-up is
// done, the documented set (packaging/vigil.service runs with only
// these): CAP_NET_ADMIN and CAP_BPF attach and detach the programs when
// a reload changes capture.interfaces or an interface comes back (XDP
// and tcx links, netlink); CAP_BPF and CAP_PERFMON are what loading a
// program with these helpers takes, which cilium/ebpf may still do
// after start-up when it probes a kernel feature on a first attach.
// Everything else start-up may have used (CAP_SYS_RESOURCE for the
// memlock limit, CAP_NET_BIND_SERVICE for a low http.listen port,
// CAP_DAC_OVERRIDE for the files, CAP_SYS_ADMIN, ...) is dropped: a
// reload re-reads files with the permission bits of the user only.
var runtimeCaps = []cap.Value{cap.NET_ADMIN, cap.PERFMON, cap.BPF}

// dropCapabilities reduces the process, every OS thread of it, to
// runtimeCaps: permitted and effective hold those of the three the
// process has, inheritable and ambient are emptied (the daemon execs
// nothing), and, when the process may (CAP_SETPCAP, as root), the
// bounding set is cut to the three too, so that no exec of a setuid or
// file-capability program could gain more. The uid stays as it is: a
// daemon started as root keeps reading root's files on reload.
//
// Capabilities are per thread on Linux and the Go runtime moves
// goroutines between threads; libcap's cap package applies each change
// to every thread at once (psx), so no thread keeps the old set.
//
// A process that already holds no more than the three (vigil run as
// an unprivileged user with ambient capabilities) is left alone.
func dropCapabilities(log *slog.Logger) error {
	if cap.MaxBits() <= cap.BPF {
		log.Warn("the kernel predates CAP_BPF and CAP_PERFMON (Linux 5.8); keeping the capabilities vigil started with")
		return nil
	}
	keepSet := map[cap.Value]bool{}
	for _, v := range runtimeCaps {
		keepSet[v] = true
	}
	cur := cap.GetProc()
	// Without CAP_SETPCAP the bounding set cannot shrink; it is then
	// left as it is (such a process is not root, and execs nothing).
	canBound, err := cur.GetFlag(cap.Permitted, cap.SETPCAP)
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	extra, err := extraCaps(cur, cap.IABGetProc(), keepSet, canBound)
	if err != nil {
		return fmt.Errorf("reading capabilities: %w", err)
	}
	if len(extra) == 0 {
		log.Debug("capabilities already reduced", "capabilities", cur.String())
		return nil
	}

	// Inheritable, ambient and bounding first: cutting the bounding set
	// needs CAP_SETPCAP, which the permitted set drops next.
	next := cap.NewIAB()
	if canBound {
		for v := cap.Value(0); v < cap.MaxBits(); v++ {
			if !keepSet[v] {
				if err := next.SetVector(cap.Bound, true, v); err != nil {
					return fmt.Errorf("dropping capabilities: %w", err)
				}
			}
		}
	}
	if err := next.SetProc(); err != nil {
		return fmt.Errorf("dropping the bounding, inheritable and ambient capabilities: %w", err)
	}

	var keep []cap.Value
	for _, v := range runtimeCaps {
		if ok, _ := cur.GetFlag(cap.Permitted, v); ok {
			keep = append(keep, v)
		}
	}
	set := cap.NewSet()
	if len(keep) > 0 {
		if err := set.SetFlag(cap.Permitted, true, keep...); err != nil {
			return fmt.Errorf("dropping capabilities: %w", err)
		}
		if err := set.SetFlag(cap.Effective, true, keep...); err != nil {
			return fmt.Errorf("dropping capabilities: %w", err)
		}
	}
	if err := set.SetProc(); err != nil {
		return fmt.Errorf("dropping capabilities: %w", err)
	}

	now := cap.GetProc()
	left, err := extraCaps(now, cap.IABGetProc(), keepSet, canBound)
	if err != nil || len(left) > 0 {
		return fmt.Errorf("dropping capabilities: the process still holds %s (%q, %v)", capNames(left), now.String(), err)
	}
	attrs := []any{"kept", capNames(keep), "dropped", capNames(extra)}
	if !canBound {
		attrs = append(attrs, "bounding_set", "unchanged (no CAP_SETPCAP)")
	}
	log.Info("dropped capabilities", attrs...)
	return nil
}

// extraCaps lists the capabilities outside keep that the process holds
// in any set: permitted, effective, inheritable, ambient and, with
// bound, the bounding set.
func extraCaps(cur *cap.Set, iab *cap.IAB, keep map[cap.Value]bool, bound bool) ([]cap.Value, error) {
	var extra []cap.Value
	for v := cap.Value(0); v < cap.MaxBits(); v++ {
		if keep[v] {
			continue
		}
		held := false
		for _, f := range []cap.Flag{cap.Permitted, cap.Effective, cap.Inheritable} {
			on, err := cur.GetFlag(f, v)
			if err != nil {
				return nil, err
			}
			held = held || on
		}
		for _, vec := range []cap.Vector{cap.Amb, cap.Bound} {
			on, err := iab.GetVector(vec, v)
			if err != nil {
				return nil, err
			}
			if vec == cap.Bound {
				on = bound && !on // the IAB's Bound vector holds what is blocked
			}
			held = held || on
		}
		if held {
			extra = append(extra, v)
		}
	}
	return extra, nil
}

func capNames(vs []cap.Value) string {
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.String()
	}
	return strings.Join(names, ",")
}
