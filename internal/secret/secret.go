// Package secret reads keys and passwords from files, the one way every
// component does: the webhook's secret_file and Kafka's
// sasl.password_file.
package secret

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxBytes bounds a secret file: a key, a password or a token, never a
// file this large.
const MaxBytes = 64 << 10

// Read returns the contents of the file at path without its trailing
// line ends ("\n", "\r\n"): an editor's last newline is not part of the
// secret. An empty secret is an error, never a valid key.
// A secret is a regular file of at most MaxBytes.
func Read(path string) ([]byte, error) {
	// Stat before opening: opening a FIFO would wait for a writer.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading secret: %w", err)
	}
	if len(b) > MaxBytes {
		return nil, fmt.Errorf("secret file %s is over %d bytes: not a key or a password", path, MaxBytes)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return nil, fmt.Errorf("secret file %s is empty", path)
	}
	return []byte(s), nil
}
