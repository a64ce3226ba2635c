// Command vigil is the Vigil edge network sensor.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/goccy/go-yaml"

	"github.com/vigil-sensor/vigil/daemon"
	"github.com/vigil-sensor/vigil/sampler"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "vigil:", err)
		}
		os.Exit(exitCode(err))
	}
}

// errUsage marks command-line mistakes (exit status 2).
var errUsage = errors.New("usage")

func exitCode(err error) int {
	if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
		return 2
	}
	return 1
}

const usage = `usage: vigil <command> [flags]

commands:
  run            capture on network interfaces and write flows
                 (default: the interfaces carrying default routes, 1-in-100
                 sampling, flows as JSON lines on stdout, metrics on ` + daemon.DefaultMetricsAddr + `)
  replay FILE... run pcap/pcapng files through the same pipeline
  check-config   validate a configuration file
  version        print the version

'vigil <command> -h' shows a command's flags.
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command", errUsage)
	}
	switch args[0] {
	case "run":
		return runCmd(args[1:], stderr)
	case "replay":
		return replayCmd(args[1:], stderr)
	case "check-config":
		return checkConfigCmd(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "vigil", daemon.Version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// parse parses flags, turning errors into usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func runCmd(args []string, stderr io.Writer) error {
	def := daemon.DefaultConfig()
	fs := flag.NewFlagSet("vigil run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "YAML configuration file (flags override it)")
	var ifaces listFlag
	fs.Var(&ifaces, "interface", "interface to capture on (repeatable); default: those carrying default routes")
	rate := fs.Uint("sample-rate", uint(def.Capture.SampleRate), "sample 1 packet in N, fixed (instead of adaptive sampling)")
	budget := fs.Int("sample-budget", def.Capture.Adaptive.Budget, "adaptive sampling: samples per second to aim for")
	flowsOut := fs.String("flows-out", def.Flows.Output, "write flows as JSON lines to PATH, or - for stdout")
	metricsAddr := fs.String("metrics-addr", def.HTTP.Listen, "HTTP address for /metrics, /healthz, /readyz")
	mode := fs.String("attach-mode", def.Capture.AttachMode, "auto, xdp-native, xdp-generic or tcx")
	egress := fs.Bool("egress", def.Capture.Egress, "also capture egress (tcx)")
	samplesOut := fs.String("samples-out", def.Capture.SamplesOut, "debugging: write every sample as a JSON line to PATH or -")
	headBytes := fs.Int("head-bytes", def.Capture.HeadBytes, "bytes of each sampled frame to keep (0-128)")
	logJSON := fs.Bool("log-json", false, "log as JSON instead of text")
	logLevel := fs.String("log-level", def.Log.Level, "debug, info, warn or error")
	statsEvery := fs.Duration("stats-every", def.Log.StatsInterval.D, "log a counter summary this often (0: never)")
	var rules listFlag
	fs.Var(&rules, "rules", "detection rule file to add to the built-in pack (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	// Flags given on the command line override the file, now and after
	// every reload.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	override := func(c *daemon.Config) {
		c.Detect.Rules = append(c.Detect.Rules, rules...)
		if set["interface"] {
			c.Capture.Interfaces = ifaces
		}
		if set["sample-rate"] {
			c.Capture.SampleRate = uint32(min(*rate, 1<<31))
			c.Capture.Sampling = sampler.SamplingFixed
		}
		if set["sample-budget"] {
			c.Capture.Adaptive.Budget = *budget
			c.Capture.Sampling = sampler.SamplingAdaptive
		}
		if set["flows-out"] {
			c.Flows.Output = *flowsOut
		}
		if set["metrics-addr"] {
			c.HTTP.Listen = *metricsAddr
		}
		if set["attach-mode"] {
			c.Capture.AttachMode = *mode
		}
		if set["egress"] {
			c.Capture.Egress = *egress
		}
		if set["samples-out"] {
			c.Capture.SamplesOut = *samplesOut
		}
		if set["head-bytes"] {
			c.Capture.HeadBytes = *headBytes
		}
		if set["log-json"] && *logJSON {
			c.Log.Format = "json"
		}
		if set["log-level"] {
			c.Log.Level = *logLevel
		}
		if set["stats-every"] {
			c.Log.StatsInterval = daemon.Duration{D: *statsEvery}
		}
	}
	cfg := def
	if *configPath != "" {
		var err error
		if cfg, err = daemon.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	override(&cfg)

	level := new(slog.LevelVar)
	if err := level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		return fmt.Errorf("%w: log level %q: %v", errUsage, cfg.Log.Level, err)
	}
	log := newLogger(stderr, cfg.Log.Format, level)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{}, 1)
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return daemon.Run(ctx, daemon.RunOptions{
		Config:     cfg,
		ConfigPath: *configPath,
		Override:   override,
		Log:        log,
		Level:      level,
		Reload:     reload,
	})
}

func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func replayCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil replay [flags] FILE...")
		fs.PrintDefaults()
	}
	configPath := fs.String("config", "", "YAML configuration file (flows.*, capture.decap_* and, with --sample-budget, capture.adaptive.min_rate and max_rate apply)")
	rate := fs.Uint("sample-rate", 1, "sample 1 packet in N (1: every packet)")
	budget := fs.Int("sample-budget", 0, "adaptive sampling: samples per second of capture time to aim for, starting at capture.adaptive.min_rate (instead of --sample-rate)")
	seed := fs.Uint64("seed", 1, "seed of the sampler: the same seed samples the same packets")
	flowsOut := fs.String("flows-out", "-", "write flows as JSON lines to PATH, or - for stdout")
	ifname := fs.String("interface", "replay", "interface name written in the records")
	quiet := fs.Bool("quiet", false, "do not print the summary on stderr")
	var rules listFlag
	fs.Var(&rules, "rules", "detection rule file to add to the built-in pack (repeatable)")
	noDetect := fs.Bool("no-detect", false, "write flows only: run no detection rules")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no capture file", errUsage)
	}
	if *rate == 0 || *rate > 1<<31 {
		return fmt.Errorf("%w: --sample-rate %d out of range 1..%d", errUsage, *rate, 1<<31)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["sample-rate"] && set["sample-budget"] {
		return fmt.Errorf("%w: --sample-rate (fixed) and --sample-budget (adaptive) exclude each other", errUsage)
	}
	if set["sample-budget"] && *budget < 1 {
		return fmt.Errorf("%w: --sample-budget %d: must be at least 1 sample per second", errUsage, *budget)
	}
	cfg := daemon.DefaultConfig()
	if *configPath != "" {
		var err error
		if cfg, err = daemon.LoadConfig(*configPath); err != nil {
			return err
		}
	}
	// Adaptive replay starts at the lowest rate allowed: a capture under
	// the budget is sampled whole, and one above it has its rate raised
	// from the controller's second step (after at most 100 ms of capture).
	// capture.sampling is not read: a replay is fixed unless
	// --sample-budget says otherwise.
	start := uint32(*rate)
	if *budget > 0 {
		start = max(cfg.Capture.Adaptive.MinRate, 1)
	}
	cfg.Detect.Rules = append(cfg.Detect.Rules, rules...)
	if *noDetect {
		cfg.Detect.Enabled = false
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	st, err := daemon.Replay(ctx, daemon.ReplayOptions{
		Files:        fs.Args(),
		Config:       cfg,
		ConfigPath:   *configPath,
		SampleRate:   start,
		SampleBudget: *budget,
		Seed:         *seed,
		Output:       *flowsOut,
		Interface:    *ifname,
		Log:          newLogger(stderr, "text", slog.LevelInfo),
	})
	if err != nil && st.Packets == 0 {
		return err
	}
	// A bad file among good ones: what the good ones held is written and
	// summed up, then the error.
	if !*quiet {
		fmt.Fprintf(stderr, "vigil replay: %d packets, %d bytes, %d samples, %d flow records, %d alert reports", st.Packets, st.Bytes, st.Samples, st.Flows, st.Alerts)
		if st.Packets > 0 {
			fmt.Fprintf(stderr, "; self-check: the samples stand for %.0f packets (±%.1f%%)", st.Estimated, 100*st.EstimateBound)
		}
		if *budget > 0 {
			fmt.Fprintf(stderr, "; adaptive sampling at %d samples/s: %d rate changes", *budget, st.RateChanges)
			if st.MinRate == st.MaxRate {
				fmt.Fprintf(stderr, ", 1 in %d throughout", st.Rate)
			} else {
				fmt.Fprintf(stderr, ", 1 in %d to 1 in %d, 1 in %d at the end", st.MinRate, st.MaxRate, st.Rate)
			}
		}
		if n := st.Times.Total(); n > 0 {
			fmt.Fprintf(stderr, "; %d timestamps corrected (%d out of order, %d in unconfirmed jumps, %d impossible and not sampled)",
				n, st.Times.Reordered, st.Times.Clamped, st.Times.Untimed)
		}
		fmt.Fprintln(stderr)
	}
	return err
}

func checkConfigCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("vigil check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: vigil check-config [-print] [-rules FILE]... FILE")
		fs.PrintDefaults()
	}
	printCfg := fs.Bool("print", false, "print the effective configuration (the file over the defaults)")
	var rules listFlag
	fs.Var(&rules, "rules", "also check this detection rule file (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("%w: check-config takes one file", errUsage)
	}
	cfg, err := daemon.LoadConfig(fs.Arg(0))
	if err != nil {
		return err
	}
	cfg.Detect.Rules = append(cfg.Detect.Rules, rules...)
	if cfg.Detect.Enabled {
		// The rule files and lists the configuration names must load too.
		if _, err := daemon.LoadRules(&cfg, fs.Arg(0)); err != nil {
			return err
		}
	}
	for _, w := range cfg.Warnings() {
		fmt.Fprintf(stderr, "%s: warning: %s\n", fs.Arg(0), w)
	}
	if *printCfg {
		b, err := yaml.Marshal(cfg)
		if err != nil {
			return fmt.Errorf("printing configuration: %w", err)
		}
		_, err = stdout.Write(b)
		return err
	}
	fmt.Fprintf(stdout, "%s: ok\n", fs.Arg(0))
	return nil
}
