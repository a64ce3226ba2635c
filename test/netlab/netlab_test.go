package netlab

import (
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// TestLab checks the lab itself: datagrams sent from the peer arrive on
// the sensor end, counted by the kernel, in both address families.
func TestLab(t *testing.T) {
	testutil.RequirePrivileged(t)
	l := New(t)
	for _, family := range []int{4, 6} {
		const n = 5000
		sink := l.NewSink(t, family, 7000)
		s := l.NewSender(t, family, 7000, 100)
		before, err := l.Sensor.Stats(SensorIf)
		if err != nil {
			t.Fatal(err)
		}
		if sent, err := s.Send(n); err != nil || sent != n {
			t.Fatalf("IPv%d: sent %d of %d: %v", family, sent, n, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for sink.Received() < n && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		after, err := l.Sensor.Stats(SensorIf)
		if err != nil {
			t.Fatal(err)
		}
		rx := after.RxPackets - before.RxPackets
		t.Logf("IPv%d: sent %d, rx_packets +%d, rx_bytes +%d, sink %d, ENOBUFS retries %d",
			family, n, rx, after.RxBytes-before.RxBytes, sink.Received(), s.NoBufs())
		if rx < n {
			t.Errorf("IPv%d: rx_packets grew by %d, want >= %d", family, rx, n)
		}
		if got := sink.Received(); got != n {
			t.Errorf("IPv%d: sink received %d, want %d", family, got, n)
		}
	}
}
