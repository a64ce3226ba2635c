package yamlerr

import (
	"fmt"
	"io"
	"os"
)

// ReadFile reads a configuration or rule file: a regular file (checked
// before it is opened, as opening a FIFO would wait for a writer) of at
// most MaxFileBytes, read no further than that.
func ReadFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if st.Size() > MaxFileBytes {
		return nil, fmt.Errorf("%s is %d bytes, past the limit of %d MiB", path, st.Size(), MaxFileBytes>>20)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxFileBytes {
		return nil, fmt.Errorf("%s grew past the limit of %d MiB while read", path, MaxFileBytes>>20)
	}
	return src, nil
}
