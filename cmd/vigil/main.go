// Command vigil is the Vigil edge network sensor.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vigil-sensor/vigil/daemon"
	"github.com/vigil-sensor/vigil/sampler"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vigil:", err)
		os.Exit(1)
	}
}

const usage = `usage: vigil <command> [flags]

commands:
  run       capture on network interfaces (default: those carrying default routes)
  version   print the version
`

func run(args []string) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:])
	case "version":
		fmt.Println("vigil", daemon.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Print(usage)
		return nil
	}
	fmt.Fprint(os.Stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func runCmd(args []string) error {
	cfg := daemon.DefaultConfig()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var ifaces listFlag
	fs.Var(&ifaces, "interface", "interface to capture on (repeatable); default: those carrying default routes")
	rate := fs.Uint("sample-rate", uint(cfg.SampleRate), "sample 1 packet in N")
	mode := fs.String("attach-mode", string(cfg.AttachMode), "auto, xdp-native, xdp-generic or tcx")
	fs.BoolVar(&cfg.Egress, "egress", cfg.Egress, "also capture egress (tcx)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", cfg.MetricsAddr, "HTTP address for /metrics, /healthz, /readyz")
	fs.StringVar(&cfg.SamplesOut, "samples-out", cfg.SamplesOut, "write every sample as a JSON line to PATH or - (debugging)")
	fs.IntVar(&cfg.HeadBytes, "head-bytes", cfg.HeadBytes, "bytes of each sampled frame to keep (0-128)")
	fs.DurationVar(&cfg.StatsEvery, "stats-every", cfg.StatsEvery, "log a counter summary this often (0: never)")
	logJSON := fs.Bool("log-json", false, "log as JSON instead of text")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.Interfaces = ifaces
	cfg.SampleRate = uint32(*rate)
	m, err := sampler.ParseMode(*mode)
	if err != nil {
		return err
	}
	cfg.AttachMode = m

	var h slog.Handler = slog.NewTextHandler(os.Stderr, nil)
	if *logJSON {
		h = slog.NewJSONHandler(os.Stderr, nil)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return daemon.Run(ctx, cfg, slog.New(h))
}
