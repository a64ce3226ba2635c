package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

// A Kafka spool item is self-contained, so that it can be sent after a
// restart with other options:
//
//	byte 0     item version, 1
//	byte 1     kind: 1 flow, 2 alert (picks the topic)
//	byte 2     format: 1 JSON, 2 protobuf (picks the content-type header)
//	uvarint    length of the sensor name, then the name
//	uvarint    length of the record key, then the key
//	rest       the record value
const (
	kafkaItemV1 = 1

	kafkaKindFlow  = 1
	kafkaKindAlert = 2

	kafkaFmtJSON     = 1
	kafkaFmtProtobuf = 2

	kafkaKeySensor = 1
	kafkaKeySrc    = 2
	kafkaKeyDst    = 3
)

// Encoder makes Kafka spool items of flows and alerts. It is not
// safe for concurrent use.
type Encoder struct {
	kinds  export.Kinds
	format byte
	key    byte
	sensor string
	ifname func(uint32) string
}

// NewEncoder returns an encoder for c.Records, c.Format and c.Key, of
// items from sensor (the "sensor" header, and the key when c.Key is
// "sensor"). ifname names interfaces by index for the "interface"
// field; it may be nil.
func NewEncoder(c Config, sensor string, ifname func(uint32) string) (*Encoder, error) {
	format, err := kafkaFormat(c.Format)
	if err != nil {
		return nil, err
	}
	key, err := kafkaKey(c.Key)
	if err != nil {
		return nil, err
	}
	if sensor == "" {
		return nil, errors.New("no sensor name")
	}
	return &Encoder{kinds: export.KindsOf(c.Records), format: format, key: key, sensor: sensor, ifname: ifname}, nil
}

// Kinds returns what c.Records selects.
func (e *Encoder) Kinds() export.Kinds { return e.kinds }

// AppendFlow appends one item for r to dst.
func (e *Encoder) AppendFlow(dst []byte, r *flow.Record) []byte {
	dst = append(dst, kafkaItemV1, kafkaKindFlow, e.format)
	dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
	dst = append(dst, e.sensor...)
	switch e.key {
	case kafkaKeySensor:
		dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
		dst = append(dst, e.sensor...)
	default:
		addr := r.Key.Src()
		if e.key == kafkaKeyDst {
			addr = r.Key.Dst()
		}
		// An address as text is at most 45 bytes: its length is one byte.
		at := len(dst)
		dst = addr.AppendTo(append(dst, 0))
		dst[at] = byte(len(dst) - at - 1)
	}
	if e.format == kafkaFmtProtobuf {
		return export.AppendFlowProto(dst, r, e.ifname)
	}
	return export.AppendFlowJSON(dst, r, e.ifname)
}

// AppendAlert appends one item for a to dst. Its key is the rule and the
// alert's key values, "rule/name=value/name=value".
func (e *Encoder) AppendAlert(dst []byte, a *flow.Alert) []byte {
	dst = append(dst, kafkaItemV1, kafkaKindAlert, e.format)
	dst = binary.AppendUvarint(dst, uint64(len(e.sensor)))
	dst = append(dst, e.sensor...)
	n := len(a.Rule)
	for _, kv := range a.Key {
		n += 2 + len(kv.Name) + len(kv.Value)
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	dst = append(dst, a.Rule...)
	for _, kv := range a.Key {
		dst = append(dst, '/')
		dst = append(dst, kv.Name...)
		dst = append(dst, '=')
		dst = append(dst, kv.Value...)
	}
	if e.format == kafkaFmtProtobuf {
		return export.AppendAlertProto(dst, a)
	}
	return export.AppendAlertJSON(dst, a)
}

// kafkaItem is a parsed spool item; its slices point into the item.
type kafkaItem struct {
	kind, format byte
	sensor, key  []byte
	value        []byte
}

func parseKafkaItem(b []byte) (kafkaItem, error) {
	var it kafkaItem
	if len(b) < 3 || b[0] != kafkaItemV1 {
		return it, errors.New("not a version 1 kafka item")
	}
	it.kind, it.format = b[1], b[2]
	if it.kind != kafkaKindFlow && it.kind != kafkaKindAlert {
		return it, fmt.Errorf("unknown kind %d", it.kind)
	}
	if it.format != kafkaFmtJSON && it.format != kafkaFmtProtobuf {
		return it, fmt.Errorf("unknown format %d", it.format)
	}
	rest := b[3:]
	for _, f := range []*[]byte{&it.sensor, &it.key} {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) {
			return it, errors.New("truncated kafka item")
		}
		*f, rest = rest[w:w+int(n)], rest[w+int(n):]
	}
	it.value = rest
	return it, nil
}

// content-type header values, by kind and format.
var kafkaContentTypes = [3][3][]byte{
	kafkaKindFlow: {
		kafkaFmtJSON:     []byte("application/json"),
		kafkaFmtProtobuf: []byte("application/x-protobuf; messageType=vigil.v1.Flow"),
	},
	kafkaKindAlert: {
		kafkaFmtJSON:     []byte("application/json"),
		kafkaFmtProtobuf: []byte("application/x-protobuf; messageType=vigil.v1.Alert"),
	},
}
