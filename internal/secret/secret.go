// Package secret reads keys and passwords from files, the one way every
// component does: the webhook's secret_file and Kafka's
// sasl.password_file.
package secret

import (
	"fmt"
	"os"
	"strings"
)

// Read returns the contents of the file at path without its trailing
// line ends ("\n", "\r\n"): an editor's last newline is not part of the
// secret. An empty secret is an error, never a valid key.
func Read(path string) ([]byte, error) {
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
