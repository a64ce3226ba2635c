package daemon

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/vigil-sensor/vigil/internal/yamlerr"
)

// ConfigError is a problem in a configuration file, located by file,
// line and column, and by the dotted path of the field.
type ConfigError = yamlerr.Error

// LoadConfig reads a YAML configuration file over DefaultConfig. Unknown
// keys are rejected. Every error is a *ConfigError (several are joined
// with errors.Join) naming the file, line and field.
func LoadConfig(path string) (Config, error) {
	src, err := yamlerr.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading configuration: %w", err)
	}
	return ParseConfig(path, src)
}

// ParseConfig is LoadConfig on the file's contents; name is used in
// errors.
func ParseConfig(name string, src []byte) (Config, error) {
	cfg := DefaultConfig()
	file, src, err := yamlerr.Parse(name, src)
	if err != nil {
		return Config{}, err
	}
	empty := true // no document, or only comments: the defaults
	for _, doc := range file.Docs {
		if doc.Body != nil && doc.Body.Type() != ast.CommentType {
			empty = false
		}
	}
	if empty {
		return cfg, nil
	}
	if err := yamlerr.Unmarshal(name, file, src, &cfg); err != nil {
		return Config{}, err
	}
	if ps := cfg.Validate(); len(ps) > 0 {
		return Config{}, yamlerr.Locate(name, file, ps)
	}
	return cfg, nil
}
