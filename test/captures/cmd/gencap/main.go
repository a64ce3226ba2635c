// Command gencap writes a large synthetic capture for benchmarks (see
// captures.Large) and prints what it wrote as JSON.
//
//	gencap -o /tmp/large.pcap -packets 1000000 -flows 100000 -seed 1
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
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
	flag.Parse()
	if *out == "" || flag.NArg() != 0 {
		flag.Usage()
		return fmt.Errorf("-o is required and no arguments are taken")
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	stats, err := captures.Large(w, captures.LargeConfig{
		Packets: *packets, Flows: *flows, Seed: *seed, Duration: *dur, IPv6: *v6, UDP: *udp,
	})
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
