package export

import (
	"context"
	"testing"

	"github.com/vigil-sensor/vigil/export/spool"
)

// BenchmarkSpoolAppendRead is the spool alone: append 1024 records of
// 100 bytes, read and acknowledge them.
func BenchmarkSpoolAppendRead(b *testing.B) {
	sp, err := spool.Open(b.TempDir(), spool.Options{MaxBytes: 1 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	items := make([][]byte, 1024)
	for i := range items {
		items[i] = make([]byte, 100)
	}
	var batch spool.Batch
	ctx := context.Background()
	b.ReportAllocs()
	b.SetBytes(100 * 1024)
	for b.Loop() {
		if err := sp.Append(items); err != nil {
			b.Fatal(err)
		}
		for sp.Pending() > 0 {
			if err := sp.Next(ctx, &batch, 512, 1<<20); err != nil {
				b.Fatal(err)
			}
			sp.Ack(&batch, len(batch.Items))
		}
	}
	b.ReportMetric(float64(b.N*len(items))/b.Elapsed().Seconds(), "records/s")
}
