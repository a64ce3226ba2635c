package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestPipelineSheddingKeepsFlows: 1,000 rules, each keeping a key per
// source, under a detection budget of 8 MiB. Detection sheds keys and
// events, counted per rule; the flow table and the flow output get
// everything: one record per flow, every packet.
func TestPipelineSheddingKeepsFlows(t *testing.T) {
	const flows, perFlow = 200, 5
	var rules strings.Builder
	rules.WriteString("rules:\n")
	for i := range 1000 {
		fmt.Fprintf(&rules, `  - name: src_%d
    filter: udp
    group_by: [src_addr]
    window: 10s
    measures:
      pps: {rate: packets}
      peers: {distinct: dst_port}
    thresholds:
      pps: 1000000
`, i)
	}
	cfg := ruleConfig(t, rules.String())
	cfg.Detect.MaxMemoryMiB = 8
	p, out := testPipeline(t, cfg, pipelineOptions{})
	latest := int64(0)
	for _, b := range captureBatches(t, writeUDPCapture(t, flows, perFlow), 1) {
		latest = feed(p, b, latest)
	}
	var shedKeys, shedEvents, keys uint64
	for _, s := range p.eng.Stats() {
		shedKeys += s.ShedKeys
		shedEvents += s.ShedEvents
		keys += uint64(s.Keys)
	}
	es := p.eng.EngineStats()
	if err := p.Close(latest); err != nil {
		t.Fatal(err)
	}
	if shedKeys+shedEvents == 0 || es.MemoryBytes > es.MemoryLimit || es.MemoryLimit != 8<<20 {
		t.Errorf("%d keys and %d events shed, %d keys held, %d of %d bytes: want shedding under the budget",
			shedKeys, shedEvents, keys, es.MemoryBytes, es.MemoryLimit)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	records := strings.Count(string(got), "\n")
	packets := strings.Count(string(got), fmt.Sprintf(`"packets":%d`, perFlow))
	if records != flows || packets != flows {
		t.Errorf("%d records, %d of %d packets each; want %d", records, packets, perFlow, flows)
	}
	t.Logf("%d keys held, %d shed, %d events shed; %d records", keys, shedKeys, shedEvents, records)
}
