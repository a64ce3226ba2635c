package export

import (
	"testing"

	"github.com/vigil-sensor/vigil/flow"
)

// The OCSF encoders against Vigil's own JSON lines, per record. B/op and
// allocs/op must stay 0; bytes/record is the line's length.

func BenchmarkAppendFlowOCSF(b *testing.B) {
	r := flowCases()[0].r
	ifname := func(uint32) string { return "eth0" }
	b.Run("ocsf", func(b *testing.B) {
		benchAppend(b, func(dst []byte) []byte { return AppendFlowOCSF(dst, &r, ifname, testProduct) })
	})
	b.Run("vigil", func(b *testing.B) {
		benchAppend(b, func(dst []byte) []byte { return AppendFlowJSON(dst, &r, ifname) })
	})
}

func BenchmarkAppendAlertOCSF(b *testing.B) {
	a := ocsfAlert(flow.AlertUpdate, flow.SeverityHigh)
	b.Run("ocsf", func(b *testing.B) {
		benchAppend(b, func(dst []byte) []byte { return AppendAlertOCSF(dst, &a, testProduct) })
	})
	b.Run("vigil", func(b *testing.B) {
		benchAppend(b, func(dst []byte) []byte { return AppendAlertJSON(dst, &a) })
	})
}

func benchAppend(b *testing.B, appendOne func([]byte) []byte) {
	buf := appendOne(nil)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = appendOne(buf[:0])
	}
	b.ReportMetric(float64(len(buf)), "bytes/record")
}
