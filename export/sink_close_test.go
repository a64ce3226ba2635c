package export

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/flow"
)

// deadTransport is an upstream that is down: every send fails.
type deadTransport struct{ sends int }

func (d *deadTransport) Send(context.Context, [][]byte) (int, error) {
	d.sends++
	return 0, errors.New("connect: connection refused")
}
func (d *deadTransport) Close() error { return nil }

// fixedEncoder makes a 64-byte item of every flow.
type fixedEncoder struct{}

func (fixedEncoder) Kinds() Kinds { return KindFlows }
func (fixedEncoder) AppendFlow(dst []byte, _ *flow.Record) []byte {
	return append(dst, strings.Repeat("f", 64)...)
}
func (fixedEncoder) AppendAlert(dst []byte, _ *flow.Alert) []byte { return dst }

// Closing a sink whose upstream is down (the end of a replay, a
// shutdown) leaves every unsent record in the spool, across sealed
// segments, for the next start, and says how many with a warning.
func TestCloseIntoDeadUpstreamKeepsAndReportsRecords(t *testing.T) {
	dir := t.TempDir()
	opt := spool.Options{SegmentBytes: 2048}
	sp, err := spool.Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	tr := &deadTransport{}
	s := NewSink("dead", fixedEncoder{}, tr, sp, SinkOptions{
		ShutdownWait: 100 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	for range 10 {
		if err := s.WriteFlows(make([]flow.Record, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatalf("close: %v", err)
	}
	if tr.sends == 0 {
		t.Fatal("Close did not try to send")
	}
	if !strings.Contains(logs.String(), "records left in the spool") || !strings.Contains(logs.String(), "records=500") {
		t.Errorf("no warning with the 500 records left unsent:\n%s", logs.String())
	}
	sp2, err := spool.Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer sp2.Close()
	if n := sp2.Pending(); n != 500 {
		t.Errorf("%d records in the spool after Close, want all 500", n)
	}
}
