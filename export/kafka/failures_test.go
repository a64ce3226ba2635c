package kafka

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/flow"
)

func TestKafkaBrokerDownAndBack(t *testing.T) {
	c := newKafkaCluster(t)
	addrs := c.ListenAddrs()
	var ports []int
	for _, a := range addrs {
		_, p, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(p)
		ports = append(ports, n)
	}
	o := kafkaTestOptions(addrs)
	o.SendTimeout.D = 3 * time.Second
	o.RequestTimeout.D = time.Second
	tr := newTestKafkaTransport(t, o)
	e := newTestKafkaEncoder(t, o)
	var before, after [][]byte
	for seq := range 200 {
		r := kafkaTestFlow(2, seq)
		if seq < 100 {
			before = append(before, e.AppendFlow(nil, &r))
		} else {
			after = append(after, e.AppendFlow(nil, &r))
		}
	}
	kafkaSendAll(t, tr, before, 100)
	c.Close()

	// The send timeout bounds a Send to a cluster that is gone.
	start := time.Now()
	n, err := tr.Send(context.Background(), after)
	if err == nil || n != 0 {
		t.Fatalf("Send to a closed cluster = %d, %v; want 0 and an error", n, err)
	}
	if d := time.Since(start); d > o.SendTimeout.D+kafkaCloseGrace {
		t.Errorf("Send to a closed cluster took %v, send_timeout is %v", d, o.SendTimeout.D)
	}
	t.Logf("cluster down after %v: %v", time.Since(start), err)

	// So does the caller's context, when it ends first.
	long := o
	long.SendTimeout.D = time.Minute
	tr2 := newTestKafkaTransport(t, long)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	start = time.Now()
	n, err = tr2.Send(ctx, after)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) || n != 0 {
		t.Fatalf("Send with an expiring context = %d, %v; want 0 and context.DeadlineExceeded", n, err)
	}
	if d := time.Since(start); d > 500*time.Millisecond+kafkaCloseGrace {
		t.Errorf("Send with a 500ms context took %v", d)
	}

	// A new cluster on the same ports: the same transport delivers the
	// items again (at least once).
	c2 := newKafkaCluster(t, kfake.Ports(ports...))
	var sentOK bool
	for try := 0; try < 3 && !sentOK; try++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		n, err = tr.Send(ctx, after)
		cancel()
		sentOK = err == nil && n == len(after)
		if !sentOK {
			t.Logf("send %d after restart: %d, %v", try, n, err)
		}
	}
	if !sentOK {
		t.Fatalf("Send after the cluster came back = %d, %v", n, err)
	}
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	for i, item := range after {
		x.add(t, item, kafkaTestFlowsTopic, i)
	}
	x.check(t, kafkaConsume(t, c2.ListenAddrs(), len(after), []string{kafkaTestFlowsTopic}))
}

// A broker that accepts connections and never answers must not hang Send.
func TestKafkaSilentBroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // read and discard until the client gives up
				defer conn.Close()
				buf := make([]byte, 4096)
				_ = conn.SetDeadline(time.Now().Add(time.Minute))
				for {
					if _, err := conn.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	o := kafkaTestOptions([]string{ln.Addr().String()})
	o.SendTimeout.D = 2 * time.Second
	o.RequestTimeout.D = time.Second
	e := newTestKafkaEncoder(t, o)
	r := kafkaTestFlow(1, 1)
	start := time.Now()
	n, err := newTestKafkaTransport(t, o).Send(context.Background(), [][]byte{e.AppendFlow(nil, &r)})
	if err == nil || n != 0 {
		t.Fatalf("Send to a silent broker = %d, %v", n, err)
	}
	if d := time.Since(start); d > o.SendTimeout.D+kafkaCloseGrace {
		t.Errorf("Send to a silent broker took %v", d)
	}
}

// When item i fails, Send returns i even though later items were
// acknowledged: they will be sent again.
func TestKafkaLeadingPrefix(t *testing.T) {
	c := newKafkaCluster(t)
	o := kafkaTestOptions(c.ListenAddrs())
	o.AlertsTopic = "no-such-topic" // kfake does not create topics here
	o.SendTimeout.D = 3 * time.Second
	e := newTestKafkaEncoder(t, o)
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	var items [][]byte
	for seq := range 20 {
		if seq == 10 {
			a := kafkaTestAlert(1, 0)
			items = append(items, e.AppendAlert(nil, &a))
			continue
		}
		r := kafkaTestFlow(1, seq)
		item := e.AppendFlow(nil, &r)
		x.add(t, item, kafkaTestFlowsTopic, len(x.items))
		items = append(items, item)
	}
	n, err := newTestKafkaTransport(t, o).Send(context.Background(), items)
	if n != 10 || err == nil {
		t.Fatalf("Send = %d, %v; want 10 and an error", n, err)
	}
	t.Logf("item 11 failed: %v", err)
	x.check(t, kafkaConsume(t, o.Brokers, len(x.byValue), []string{kafkaTestFlowsTopic}))
}

// An item that can never be sent ends the send with a *export.RejectedError at
// its index, after the items before it were acknowledged.
func TestKafkaRejectedItems(t *testing.T) {
	c := newKafkaCluster(t)
	o := kafkaTestOptions(c.ListenAddrs())
	tr := newTestKafkaTransport(t, o)
	e := newTestKafkaEncoder(t, o)
	x := &kafkaExpect{byValue: make(map[string]kafkaSent)}
	var good [][]byte
	for seq := range 6 {
		r := kafkaTestFlow(1, seq)
		item := e.AppendFlow(nil, &r)
		x.add(t, item, kafkaTestFlowsTopic, seq)
		good = append(good, item)
	}
	huge := e.AppendFlow(nil, &flow.Record{})
	huge = append(huge, make([]byte, 2<<20)...) // over the 1 MB batch limit
	for _, tc := range []struct {
		name  string
		items [][]byte
		want  int
	}{
		{"truncated", [][]byte{good[0], {kafkaItemV1, kafkaKindFlow, kafkaFmtJSON, 200}, good[5]}, 1},
		{"empty", [][]byte{{}, good[5]}, 0},
		{"unknown kind", [][]byte{good[1], {kafkaItemV1, 9, kafkaFmtJSON, 0, 0}}, 1},
		{"too large", [][]byte{good[2], good[3], huge, good[5]}, 2},
	} {
		n, err := tr.Send(context.Background(), tc.items)
		var rej *export.RejectedError
		if n != tc.want || !errors.As(err, &rej) {
			t.Errorf("%s: Send = %d, %v; want %d and a *export.RejectedError", tc.name, n, err, tc.want)
		}
		t.Logf("%s: %v", tc.name, err)
	}
	// The caller drops the rejected item and sends the rest.
	kafkaSendAll(t, tr, good[4:], 10)
	got := kafkaConsume(t, o.Brokers, len(good), []string{kafkaTestFlowsTopic})
	// good[5] followed the huge item in the same Send and was produced:
	// it arrives twice, as at-least-once allows. The resent copy is the
	// one in order.
	var dedup []*kgo.Record
	var fives int
	for _, r := range got {
		if _, v, _ := kafkaItemParts(good[5]); string(r.Value) == v {
			if fives++; fives == 1 {
				continue
			}
		}
		dedup = append(dedup, r)
	}
	if fives != 2 {
		t.Errorf("the item after the too large one arrived %d times, want 2", fives)
	}
	x.check(t, dedup)
}

func kafkaItemParts(item []byte) (string, string, error) {
	it, err := parseKafkaItem(item)
	return string(it.key), string(it.value), err
}
