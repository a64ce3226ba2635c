package secret

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{
		"s3cret":         "s3cret",
		"s3cret\n":       "s3cret",
		"s3cret\r\n":     "s3cret",
		"s3cret\n\n":     "s3cret",
		"two words \t\n": "two words \t",
		"a\nb\n":         "a\nb",
	} {
		p := filepath.Join(dir, "f")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := Read(p)
		if err != nil || string(got) != want {
			t.Errorf("Read(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
	for _, content := range []string{"", "\n", "\r\n\r\n"} {
		p := filepath.Join(dir, "empty")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Read(p); err == nil || !strings.Contains(err.Error(), "empty") {
			t.Errorf("Read(%q): %v, want an error that says empty", content, err)
		}
	}
	if _, err := Read(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was read")
	}
}

// TestReadRefusesWhatIsNoSecret: a directory, a FIFO or a huge file is
// not a key, and reading it must not block or take the memory.
func TestReadRefusesWhatIsNoSecret(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{dir: "not a regular file", big: "over 65536 bytes", fifo: "not a regular file"} {
		if _, err := Read(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Read(%s): %v, want an error that says %q", path, err, want)
		}
	}
}
