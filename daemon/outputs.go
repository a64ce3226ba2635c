package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/flow"
)

// outputs is everything records go to: flows.output, the export files
// and the spooled network sinks. Writing never waits on the network.
type outputs struct {
	primary *export.FileWriter // flows.output; nil for none
	files   []fileOut
	sinks   []*export.Sink
}

type fileOut struct {
	w     *export.FileWriter
	kinds export.Kinds
}

func kindsOf(records string) export.Kinds {
	switch records {
	case "flows":
		return export.KindFlows
	case "alerts":
		return export.KindAlerts
	}
	return export.KindFlows | export.KindAlerts
}

// openOutputs opens flows.output (path, "-" or "" for none) and, when
// withExport, the export section's files and sinks.
func openOutputs(cfg *Config, flowsOut string, ifname func(uint32) string, withExport bool, log *slog.Logger) (_ *outputs, err error) {
	o := &outputs{}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			o.Close(context.Background())
		}
	}()
	product := export.OCSFProduct{Version: Version, Sensor: sensorName(cfg)}
	if flowsOut != "" {
		w, err := export.NewFileWriter(export.FileConfig{Path: flowsOut, IfName: ifname})
		if err != nil {
			return nil, fmt.Errorf("opening flows output: %w", err)
		}
		o.primary = w
		o.files = append(o.files, fileOut{w, export.KindFlows | export.KindAlerts})
	}
	if !withExport {
		return o, nil
	}
	ex := &cfg.Export
	for i, f := range ex.Files {
		w, err := export.NewFileWriter(export.FileConfig{
			Path: f.Path, Format: f.Format, MaxBytes: int64(f.RotateMiB) << 20, Keep: f.Keep,
			IfName: ifname, Product: product,
		})
		if err != nil {
			return nil, fmt.Errorf("export.files[%d]: %w", i, err)
		}
		o.files = append(o.files, fileOut{w, kindsOf(f.Records)})
	}
	names, paths := ex.sinkNames()
	fsync, _ := spool.ParseFsyncPolicy(ex.Spool.Fsync)
	for i, name := range names {
		enc, tr, err := newSinkParts(cfg, i, ifname, product, log)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
		sp, err := spool.Open(filepath.Join(ex.Spool.Dir, name), spool.Options{MaxBytes: int64(ex.Spool.MaxMiB) << 20, Fsync: fsync})
		if err != nil {
			tr.Close()
			return nil, fmt.Errorf("%s: %w", paths[i], err)
		}
		if p := sp.Pending(); p > 0 {
			log.Info("records left in the spool from an earlier run will be sent", "sink", name, "records", p)
		}
		o.sinks = append(o.sinks, export.NewSink(name, enc, tr, sp, export.SinkOptions{Log: log}))
	}
	return o, nil
}

// newSinkParts builds the encoder and transport of the i-th network
// sink, in the order of ExportConfig.sinkNames.
func newSinkParts(cfg *Config, i int, ifname func(uint32) string, product export.OCSFProduct, log *slog.Logger) (export.Encoder, export.Transport, error) {
	ex := &cfg.Export
	if i < len(ex.IPFIX) {
		return newIPFIXSink(&ex.IPFIX[i], log)
	}
	i -= len(ex.IPFIX)
	if i < len(ex.Kafka) {
		return newKafkaSink(&ex.Kafka[i], sensorName(cfg), ifname, log)
	}
	i -= len(ex.Kafka)
	return newWebhookSink(&ex.Webhooks[i], product)
}

func newWebhookSink(s *WebhookSink, product export.OCSFProduct) (export.Encoder, export.Transport, error) {
	enc, err := export.NewWebhookEncoder(export.WebhookFormat(s.Format), product)
	if err != nil {
		return nil, nil, err
	}
	wc := export.DefaultWebhookConfig()
	wc.URL, wc.Headers, wc.Version, wc.Timeout = s.URL, s.Headers, Version, s.Timeout.D
	wc.CAFile, wc.InsecureSkipVerify = s.TLS.CAFile, s.TLS.InsecureSkipVerify
	wc.CertFile, wc.KeyFile, wc.ServerName = s.TLS.CertFile, s.TLS.KeyFile, s.TLS.ServerName
	if s.SecretFile != "" {
		if wc.Secret, err = readSecret(s.SecretFile); err != nil {
			return nil, nil, err
		}
	}
	tr, err := export.NewWebhookTransport(wc)
	if err != nil {
		return nil, nil, err
	}
	return enc, tr, nil
}

// readSecret reads a key or password file; a trailing newline is not
// part of the secret.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return []byte(s), nil
}

func sensorName(cfg *Config) string {
	if cfg.Export.SensorName != "" {
		return cfg.Export.SensorName
	}
	h, _ := os.Hostname()
	return h
}

// WriteFlows writes records to every output that carries flows. It
// returns the first error; each output counts what it dropped.
func (o *outputs) WriteFlows(recs []flow.Record) error {
	var first error
	for _, f := range o.files {
		if f.kinds&export.KindFlows != 0 {
			if err := f.w.WriteFlows(recs); err != nil && first == nil {
				first = err
			}
		}
	}
	for _, s := range o.sinks {
		if err := s.WriteFlows(recs); err != nil && first == nil {
			first = fmt.Errorf("sink %s: %w", s.Name(), err)
		}
	}
	return first
}

// WriteAlerts writes alerts to every output that carries alerts.
func (o *outputs) WriteAlerts(alerts []flow.Alert) error {
	var first error
	for _, f := range o.files {
		if f.kinds&export.KindAlerts != 0 {
			if err := f.w.WriteAlerts(alerts); err != nil && first == nil {
				first = err
			}
		}
	}
	for _, s := range o.sinks {
		if err := s.WriteAlerts(alerts); err != nil && first == nil {
			first = fmt.Errorf("sink %s: %w", s.Name(), err)
		}
	}
	return first
}

// Flush writes the files' buffered lines through.
func (o *outputs) Flush() error {
	var errs error
	for _, f := range o.files {
		errs = errors.Join(errs, f.w.Flush())
	}
	return errs
}

// Reopen reopens the files, for log rotation (SIGHUP).
func (o *outputs) Reopen() error {
	var errs error
	for _, f := range o.files {
		errs = errors.Join(errs, f.w.Reopen())
	}
	return errs
}

// Run sends from the sinks' spools until ctx is done.
func (o *outputs) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range o.sinks {
		g.Go(func() error { return s.Run(ctx) })
	}
	return g.Wait()
}

// Close closes the files, and the sinks after trying for a few seconds to
// send what they hold; the rest waits in their spools for the next start.
func (o *outputs) Close(ctx context.Context) error {
	var errs error
	for _, f := range o.files {
		errs = errors.Join(errs, f.w.Close())
	}
	g, ctx := errgroup.WithContext(ctx)
	for _, s := range o.sinks {
		g.Go(func() error { return s.Close(ctx) })
	}
	return errors.Join(errs, g.Wait())
}

// sinkList returns the sinks, for the metrics collector.
func (o *outputs) sinkList() []*export.Sink { return o.sinks }

// written and dropped count flows.output's records.
func (o *outputs) written() uint64 {
	if o.primary == nil {
		return 0
	}
	return o.primary.Written()
}

func (o *outputs) dropped() uint64 {
	if o.primary == nil {
		return 0
	}
	return o.primary.Dropped()
}

func newKafkaSink(s *KafkaSink, sensor string, ifname func(uint32) string, log *slog.Logger) (export.Encoder, export.Transport, error) {
	ko := export.DefaultKafkaOptions()
	ko.Brokers, ko.FlowsTopic, ko.AlertsTopic, ko.ClientID = s.Brokers, s.FlowsTopic, s.AlertsTopic, s.ClientID
	ko.Format, ko.Key, ko.Sensor = s.Format, s.Key, sensor
	ko.Compression, ko.SendTimeout, ko.RequestTimeout = s.Compression, s.SendTimeout.D, s.ReqTimeout.D
	ko.TLS = export.KafkaTLS{
		Enable: s.TLS.Enabled, CAFile: s.TLS.CAFile, CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile,
		ServerName: s.TLS.ServerName, InsecureSkipVerify: s.TLS.InsecureSkipVerify,
	}
	if s.SASL.Mechanism != "" {
		ko.SASL = export.KafkaSASL{Mechanism: strings.ToUpper(s.SASL.Mechanism), Username: s.SASL.Username, PasswordFile: s.SASL.PasswordFile}
	}
	enc, err := export.NewKafkaEncoder(ko, ifname)
	if err != nil {
		return nil, nil, err
	}
	tr, err := export.NewKafkaTransport(ko, log)
	if err != nil {
		return nil, nil, err
	}
	return only{enc, kindsOf(s.Records)}, tr, nil
}

// only narrows what an encoder carries (a sink's records setting).
type only struct {
	export.Encoder
	kinds export.Kinds
}

func (o only) Kinds() export.Kinds { return o.Encoder.Kinds() & o.kinds }

func newIPFIXSink(s *IPFIXSink, log *slog.Logger) (export.Encoder, export.Transport, error) {
	opts := export.IPFIXOptions{
		ObservationDomainID: s.ObservationDomain,
		MaxMessageSize:      s.MTU,
		TemplateRefresh:     s.TemplateRefresh.D,
		Log:                 log,
	}
	if s.Transport == "tcp" {
		opts.MaxMessageSize = 0 // TCP: the largest message IPFIX allows
		return export.NewIPFIXEncoder(), export.NewIPFIXTCP(s.Address, opts), nil
	}
	return export.NewIPFIXEncoder(), export.NewIPFIXUDP(s.Address, opts), nil
}
