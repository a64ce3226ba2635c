package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

// spoolFrame is one valid frame of a spool segment file.
type spoolFrame struct {
	seg        string // file name
	start, end int64  // byte range in the file, header included
	value      string // the Kafka record value the item carries
}

// readSpool reads the segment files of a sink's spool directory the way
// export/spool lays them out (8-byte magic "VIGILSP1", then frames of
// u32 length, u32 CRC-32C of time and payload, i64 time, payload; all
// little endian), stopping in each file at the first bad frame. Each
// payload is a Kafka spool item (export/kafka_encoder.go): version 1, kind,
// format, uvarint-prefixed sensor and key, then the value.
func readSpool(t *testing.T, dir string) (segs []string, frames []spoolFrame) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names) // zero-padded numbers: name order is segment order
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(name)
		segs = append(segs, base)
		if !bytes.HasPrefix(data, []byte("VIGILSP1")) {
			t.Fatalf("%s: no segment header", base)
		}
		off := 8
		for off+16 <= len(data) {
			size := int(binary.LittleEndian.Uint32(data[off:]))
			if off+16+size > len(data) || crc32.Checksum(data[off+8:off+16+size], castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
				break
			}
			item := data[off+16 : off+16+size]
			value, err := kafkaItemValue(item)
			if err != nil {
				t.Fatalf("%s@%d: %v", base, off, err)
			}
			frames = append(frames, spoolFrame{seg: base, start: int64(off), end: int64(off + 16 + size), value: string(value)})
			off += 16 + size
		}
	}
	return segs, frames
}

func kafkaItemValue(item []byte) ([]byte, error) {
	if len(item) < 3 || item[0] != 1 || item[1] != 1 || item[2] != 1 {
		return nil, fmt.Errorf("not a version 1 JSON flow item: % x", item[:min(len(item), 3)])
	}
	rest := item[3:]
	for range 2 { // sensor, key
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return nil, errors.New("truncated item")
		}
		rest = rest[w+int(n):]
	}
	return rest, nil
}

// TestExportCorruptSpoolSegment spools flows across several segments
// with Kafka down, kills vigil, flips bytes in the middle of the oldest
// segment, then starts Kafka and vigil again: vigil does not stop, counts
// the corrupt segment, and delivers exactly the valid frames: every
// record of the intact segments and of the damaged one before the damage
// arrives, and none of the records after the damage.
func TestExportCorruptSpoolSegment(t *testing.T) {
	testutil.RequirePrivileged(t)
	bin := testutil.Vigil(t)
	lab := labUp(t)
	dir := t.TempDir()
	flowsPath := filepath.Join(dir, "flows.jsonl")
	spoolDir := filepath.Join(dir, "spool")
	const metricsAddr, kafkaPort = "127.0.0.1:19121", 19093
	broker := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	// max_mib 1: 64 KiB segments (a sixteenth of the budget), about 130
	// flow records each.
	cfg := exportConfig(t, metricsAddr, flowsPath, spoolDir, 1,
		fmt.Sprintf("  kafka:\n    - {brokers: [%q], format: json}", broker))
	const n = 320
	flows := newUDPFlows(t, lab)

	// No broker: every record stays in the spool.
	v := startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	want := flows.send(n)
	waitFlowsFile(t, flowsPath, want)
	m := v.waitMetric("all flows spooled", exportTimeout, func(m promText) bool {
		return m.counter("vigil_export_records_spooled_total", exportSink) >= n
	})
	checkNoDrops(t, m)
	if sent := m.counter("vigil_export_records_sent_total", exportSink); sent != 0 {
		t.Fatalf("%v records sent with no broker", sent)
	}
	v.kill()

	sinkDir := filepath.Join(spoolDir, "kafka-0")
	segs, frames := readSpool(t, sinkDir)
	if len(segs) < 2 {
		t.Fatalf("spool has %d segment(s) %v, the test needs at least 2", len(segs), segs)
	}
	spooled := map[flowKey]bool{}
	for _, f := range frames {
		r := parseFlows(t, "spool", []byte(f.value))[0]
		if want[r.key()] != nil {
			spooled[r.key()] = true
		}
	}
	if len(spooled) != len(want) {
		t.Fatalf("the spool holds %d of the %d test flows", len(spooled), len(want))
	}
	// Flip 8 bytes in the middle of the oldest segment: the frame there
	// and every later frame of that segment are lost, the rest is valid.
	oldest := filepath.Join(sinkDir, segs[0])
	data, err := os.ReadFile(oldest)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(len(data) / 2)
	for i := range 8 {
		data[at+int64(i)] ^= 0xff
	}
	if err := os.WriteFile(oldest, data, 0o640); err != nil {
		t.Fatal(err)
	}
	expect, lost := map[string]bool{}, map[string]bool{}
	for _, f := range frames {
		if f.seg == segs[0] && f.end > at {
			lost[f.value] = true
		} else {
			expect[f.value] = true
		}
	}
	t.Logf("%d segments, %d frames; flipped bytes at %d of %s (%d bytes): %d frames expected, %d lost",
		len(segs), len(frames), at, segs[0], len(data), len(expect), len(lost))
	if len(lost) == 0 || len(expect) == 0 {
		t.Fatalf("flip at %d leaves %d frames valid and %d lost", at, len(expect), len(lost))
	}

	startKafka(t, lab, kafkaPort)
	v = startVigil(t, lab, bin, metricsAddr, "--config", cfg)
	// Every valid frame is pending: nothing was acknowledged before.
	if left := spoolLeft(v); left != len(expect) {
		t.Errorf("vigil logged %d records left in the spool, %d frames are valid:\n%s", left, len(expect), v.stderr.String())
	}
	m = v.waitMetric("kafka-0 drained", exportTimeout, func(m promText) bool {
		return m.counter("vigil_export_records_sent_total", exportSink) >= float64(len(expect)) &&
			m.counter("vigil_export_spool_records", exportSink) == 0
	})
	if c := m.get(t, "vigil_export_spool_corrupt_segments_total", exportSink); c != 1 {
		t.Errorf("vigil_export_spool_corrupt_segments_total %v, want 1", c)
	}
	checkNoDrops(t, m, `reason="spool_full"`)
	checkNoDrops(t, m, `reason="oversize"`)
	checkNoDrops(t, m, `reason="rejected"`)
	got := consumeFlows(t, lab, broker, int(m.get(t, "vigil_export_records_sent_total", exportSink)))
	arrived := map[string]int{}
	for _, f := range got {
		arrived[f.value]++
	}
	missing := 0
	for val := range expect {
		if arrived[val] == 0 {
			missing++
			if missing <= 5 {
				t.Errorf("a valid spooled record never arrived: %s", val)
			}
		}
	}
	for val := range lost {
		if arrived[val] != 0 {
			t.Errorf("a record after the damage arrived: %s", val)
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d valid spooled records never arrived", missing, len(expect))
	}
	if !v.running() {
		t.Fatalf("vigil exited: %v", v.err)
	}
	v.stop()
}
