package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/flow"
)

// BenchmarkAlertAccount is the path of a flood's samples once its alert
// runs: every event lands in the window and in the alert's totals and
// their intervals. Batches of 1024 SYN samples at 1-in-100 to one
// address, 10ms of event time each (10M packets a second); an update is
// reported every second of event time.
func BenchmarkAlertAccount(b *testing.B) {
	set := engLoad(b, fmt.Sprintf(ivRule, 5000), Options{})
	evs := make([]Event, 1024)
	for i := range evs {
		evs[i] = engSyn(0, "198.51.100.1", "203.0.113.9", 100)
		evs[i].Bytes = uint64(60+i%1455) * 100
	}
	alerts := 0
	e := NewEngine(set, EngineConfig{}, func(as []flow.Alert) { alerts += len(as) })
	b.ReportAllocs()
	n := int64(0)
	for b.Loop() {
		base := engT0 + n*int64(10*time.Millisecond)
		for j := range evs {
			evs[j].Time = base + int64(j)*int64(10*time.Millisecond)/int64(len(evs))
		}
		e.Events(SourceSamples, evs)
		n++
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(alerts)/float64(b.N), "alerts/op")
}
