package spool

import (
	"log/slog"
	"path/filepath"

	"github.com/vigil-sensor/vigil/internal/config"
)

// Config is the export section's spool block: where every network sink
// queues its records and how much it may keep.
type Config struct {
	Dir    string `yaml:"dir"`     // each sink spools in DIR/<sink name>
	MaxMiB int    `yaml:"max_mib"` // budget per sink; past it the oldest records are dropped and counted
	Fsync  string `yaml:"fsync"`   // interval (every second), always, never
}

// MaxMiB is the largest max_mib: 16 TiB, far past any disk a sink
// spools on, and far from where MiB in bytes overflows.
const MaxMiB = 1 << 24

// DefaultConfig returns the packaged defaults.
func DefaultConfig() Config {
	return Config{Dir: "/var/lib/vigil/spool", MaxMiB: 256, Fsync: "interval"}
}

// Validate checks the block; whether a directory is needed at all is
// the export section's to say.
func (c Config) Validate() config.Problems {
	var p config.Problems
	if c.MaxMiB < 1 || c.MaxMiB > MaxMiB {
		p.Add("max_mib", "must be 1 to %d (16 TiB), got %d", MaxMiB, c.MaxMiB)
	}
	if _, err := ParseFsyncPolicy(c.Fsync); err != nil || c.Fsync == "" {
		p.Add("fsync", "%q is not interval, always or never", c.Fsync)
	}
	return p
}

// Open opens the spool of the sink called name, DIR/name.
// log is where it says what it skips and recovers (nil: slog.Default).
func (c Config) Open(name string, log *slog.Logger) (*Spool, error) {
	fsync, err := ParseFsyncPolicy(c.Fsync)
	if err != nil {
		return nil, err
	}
	if log != nil {
		log = log.With("sink", name)
	}
	return Open(filepath.Join(c.Dir, name), Options{MaxBytes: int64(c.MaxMiB) << 20, Fsync: fsync, Log: log})
}
