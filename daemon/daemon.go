package daemon

import (
	"log/slog"
)

// Version is set at build time (-ldflags "-X ...daemon.Version=...").
var Version = "dev"

// RunOptions is what `vigil run` hands the daemon.
type RunOptions struct {
	Config     Config
	ConfigPath string        // file to re-read on Reload; "" if none
	Override   func(*Config) // command-line flags, applied again after every reload
	Log        *slog.Logger
	Level      *slog.LevelVar  // the logger's level, changed on reload
	Reload     <-chan struct{} // SIGHUP
}
