//go:build !linux

package daemon

import (
	"context"
	"errors"
)

// Run needs Linux: XDP, tcx and BPF ring buffers. Replay and
// check-config work everywhere.
func Run(context.Context, RunOptions) error {
	return errors.New("vigil run needs Linux (XDP, tcx and BPF); vigil replay and check-config work here")
}
