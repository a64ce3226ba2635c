package daemon

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestGoodConfigsOpenEverySink builds, through newPipeline (what run and
// replay call), every file and network sink of every configuration that
// the check-config golden cases say is ok: "ok" must mean the sensor
// starts. Only where state is written moves to a temporary directory
// (the spool, the files); every other setting, TLS, SASL and secret
// files included, is the case's own.
func TestGoodConfigsOpenEverySink(t *testing.T) {
	cases, err := filepath.Glob("../cmd/vigil/testdata/check-config/good-*/in.yaml")
	if err != nil || len(cases) == 0 {
		t.Fatalf("no good cases: %v", err)
	}
	t.Chdir("../cmd/vigil") // the cases' relative paths are relative to it
	kinds := map[string]int{}
	for _, path := range cases {
		path = strings.TrimPrefix(path, "../cmd/vigil/")
		t.Run(filepath.Base(filepath.Dir(path)), func(t *testing.T) {
			cfg, err := LoadConfig(path)
			if err != nil {
				t.Fatalf("a good case does not load: %v", err)
			}
			tmp := t.TempDir()
			cfg.Export.Spool.Dir = filepath.Join(tmp, "spool")
			for i := range cfg.Export.Files {
				cfg.Export.Files[i].Path = filepath.Join(tmp, filepath.Base(cfg.Export.Files[i].Path))
			}
			if cfg.Capture.SamplesOut != "" {
				cfg.Capture.SamplesOut = filepath.Join(tmp, "samples.jsonl")
			}
			p, err := newPipeline(&cfg, path, "", func(uint32) string { return "" }, pipelineOptions{})
			if err != nil {
				t.Fatalf("check-config says ok, but the pipeline does not start: %v", err)
			}
			sinks := cfg.Export.Sinks()
			if got, want := len(p.out.all), len(cfg.Export.Files)+len(sinks); got != want {
				t.Errorf("%d outputs opened, the section has %d files and %d sinks", got, len(cfg.Export.Files), len(sinks))
			}
			if got := len(p.out.sinkList()); got != len(sinks) {
				t.Errorf("%d network sinks opened, the section has %d", got, len(sinks))
			}
			for _, s := range sinks {
				kinds[s.Path[:strings.IndexByte(s.Path, '[')]]++
			}
			if err := p.Close(0); err != nil {
				t.Errorf("closing: %v", err)
			}
		})
	}
	for _, k := range []string{"ipfix", "kafka", "webhooks"} {
		if kinds[k] == 0 {
			t.Errorf("no good case has an export.%s sink: the test proves nothing for that kind", k)
		}
	}
}
