package export

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/vigil-sensor/vigil/flow"
)

// SampleWriter writes samples as JSON lines, for debugging the capture
// path (capture.samples_out). Flows, not samples, are Vigil's product;
// this is off by default.
type SampleWriter struct {
	w   *bufio.Writer
	c   io.Closer
	enc *json.Encoder
}

// OpenSampleWriter opens path ("-": stdout, "": a writer that writes
// nothing).
func OpenSampleWriter(path string) (*SampleWriter, error) {
	var w io.Writer
	var c io.Closer
	switch path {
	case "":
		return &SampleWriter{}, nil
	case "-":
		w = os.Stdout
	default:
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("opening samples output: %w", err)
		}
		w, c = f, f
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	return &SampleWriter{w: bw, c: c, enc: json.NewEncoder(bw)}, nil
}

type sampleJSON struct {
	Kind      string `json:"kind"`
	Time      string `json:"time"`
	Ifindex   uint32 `json:"ifindex"`
	Direction string `json:"direction"`
	Outcome   string `json:"outcome"`
	WireLen   uint32 `json:"wire_len"`
	Rate      uint32 `json:"sampling_rate"`
	Src       string `json:"src_addr,omitempty"`
	Dst       string `json:"dst_addr,omitempty"`
	SrcPort   uint16 `json:"src_port"`
	DstPort   uint16 `json:"dst_port"`
	Proto     uint8  `json:"proto"`
	TCPFlags  uint8  `json:"tcp_flags"`
	TOS       uint8  `json:"tos"`
	TTL       uint8  `json:"ttl"`
	VLAN      uint16 `json:"vlan,omitempty"`
	VNI       uint32 `json:"vni,omitempty"`
	OuterSrc  string `json:"outer_src_addr,omitempty"`
	OuterDst  string `json:"outer_dst_addr,omitempty"`
	Flags     uint8  `json:"flags,omitempty"`
}

func addrString(a interface {
	IsValid() bool
	String() string
}) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Write writes a batch.
func (o *SampleWriter) Write(batch []flow.Sample) error {
	if o.enc == nil {
		return nil
	}
	for i := range batch {
		s := &batch[i]
		v := sampleJSON{
			Kind: "sample", Time: s.Time().UTC().Format("2006-01-02T15:04:05.000000000Z07:00"),
			Ifindex: s.Ifindex, Direction: s.Direction.String(), Outcome: s.Outcome.String(),
			WireLen: s.WireLen, Rate: s.SamplingRate,
			Src: addrString(s.SrcAddr), Dst: addrString(s.DstAddr),
			SrcPort: s.SrcPort, DstPort: s.DstPort, Proto: s.Proto, TCPFlags: s.TCPFlags,
			TOS: s.TOS, TTL: s.TTL, VLAN: s.VLAN, VNI: s.VNI,
			OuterSrc: addrString(s.OuterSrc), OuterDst: addrString(s.OuterDst), Flags: uint8(s.Flags),
		}
		if err := o.enc.Encode(&v); err != nil {
			return fmt.Errorf("writing sample: %w", err)
		}
	}
	return nil
}

func (o *SampleWriter) flush() error {
	if o.w == nil {
		return nil
	}
	return o.w.Flush()
}

// Close flushes and closes the file.
func (o *SampleWriter) Close() error {
	err := o.flush()
	if o.c != nil {
		if cerr := o.c.Close(); err == nil {
			err = cerr
		}
	}
	return err
}
