package daemon

// FuzzParseConfig: a configuration file of any bytes is an error or a
// configuration, never a panic, and a configuration ParseConfig accepts
// validates.

import (
	"errors"
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// configSeeds are the repository's configuration files: the packaged
// default and the `vigil check-config` cases, good and bad.
func configSeeds(f *testing.F) {
	for _, src := range testutil.FileSeeds(f, 2, "../cmd/vigil/testdata/check-config/*/in.yaml", "../packaging/vigil.yaml") {
		f.Add(src)
	}
}

func FuzzParseConfig(f *testing.F) {
	configSeeds(f)
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<20 {
			return // the size limit is tested on its own; keep the fuzzer fast
		}
		cfg, err := ParseConfig("fuzz.yaml", src)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("an error with no message")
			}
			// Every error names the file: a *ConfigError, or several joined.
			var ce *yamlerr.Error
			if !errors.As(err, &ce) || ce.File != "fuzz.yaml" {
				t.Fatalf("error %v (%T) is not a *ConfigError naming the file", err, err)
			}
			return
		}
		if ps := cfg.Validate(); len(ps) > 0 {
			t.Fatalf("ParseConfig accepted a configuration that does not validate: %v", ps.Err())
		}
		if err := cfg.check(); err != nil {
			t.Fatalf("check after ParseConfig: %v", err)
		}
		_ = cfg.logLevel()
	})
}
