// Command gencap writes a large synthetic capture for benchmarks (see
// captures.Large) and prints what it wrote as JSON, or with -case one
// capture of the detection, benign or evaluation corpus by name (-list
// lists them).
//
//	gencap -o /tmp/large.pcap -packets 1000000 -flows 100000 -seed 1
//	gencap -o /tmp/nat.pcap -case nat_gateway
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/vigil-sensor/vigil/test/captures"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gencap:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("o", "", "output pcap file (required)")
	packets := flag.Int("packets", 1_000_000, "packets to write")
	flows := flag.Int("flows", 100_000, "conversations (5-tuples, both directions)")
	seed := flag.Int64("seed", 1, "random seed: same seed, same file")
	dur := flag.Duration("duration", 300*time.Second, "capture time span")
	v6 := flag.Float64("ipv6", 0.1, "share of IPv6 conversations")
	udp := flag.Float64("udp", 0.3, "share of UDP conversations")
	name := flag.String("case", "", "write the detection, benign or corpus capture of this name instead")
	list := flag.Bool("list", false, "list the names -case takes")
	flag.Parse()
	if *list {
		for _, c := range namedCases() {
			fmt.Println(c.Name)
		}
		return nil
	}
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		return fmt.Errorf("-o is required and no arguments are taken")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var stats any
	if *name != "" {
		i := slices.IndexFunc(namedCases(), func(c captures.DetectionCase) bool { return c.Name == *name })
		if i < 0 {
			f.Close()
			return fmt.Errorf("no case %q (-list lists them)", *name)
		}
		stats, err = namedCases()[i].Generate(w)
	} else {
		stats, err = captures.Large(w, captures.LargeConfig{
			Packets: *packets, Flows: *flows, Seed: *seed, Duration: *dur, IPv6: *v6, UDP: *udp,
		})
	}
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(stats)
}

// namedCases are the captures -case writes.
func namedCases() []captures.DetectionCase {
	out := append(captures.DetectionCases(), captures.BenignCases()...)
	out = append(out, captures.CorpusBenign()...)
	for _, c := range captures.CorpusCases() {
		out = append(out, c.DetectionCase)
	}
	return out
}
