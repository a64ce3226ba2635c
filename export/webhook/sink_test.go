package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-sensor/vigil/export"
	"github.com/vigil-sensor/vigil/export/spool"
	"github.com/vigil-sensor/vigil/flow"
)

// receiver is a real HTTP webhook receiver that can be stopped and
// started again on the same address, as a collector that restarts.
type receiver struct {
	t      *testing.T
	addr   string
	secret string
	status func(id int) int // status to answer for alert id; nil: 204

	mu   sync.Mutex
	got  []int // alert numbers in arrival order, duplicates included
	srv  *http.Server
	done chan struct{}
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret}
	r.start()
	t.Cleanup(r.stop)
	return r
}

func (r *receiver) start() {
	r.t.Helper()
	addr := r.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for range 50 { // the port may linger for a moment after a stop
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatalf("receiver listen: %v", err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: http.HandlerFunc(r.serve)}
	r.done = make(chan struct{})
	go func() { defer close(r.done); r.srv.Serve(ln) }()
}

func (r *receiver) stop() {
	if r.srv != nil {
		r.srv.Close()
		<-r.done
		r.srv = nil
	}
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := VerifySignature(r.secret, req.Header.Get("X-Vigil-Timestamp"), req.Header.Get("X-Vigil-Signature"), body, time.Now(), time.Minute); err != nil {
		r.t.Errorf("signature: %v", err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var a struct{ ID string }
	if err := json.Unmarshal(body, &a); err != nil {
		r.t.Errorf("body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id, _ := strconv.Atoi(a.ID)
	code := http.StatusNoContent
	if r.status != nil {
		code = r.status(id)
	}
	if code < 300 {
		r.mu.Lock()
		r.got = append(r.got, id)
		r.mu.Unlock()
	}
	w.WriteHeader(code)
}

func (r *receiver) received() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.got...)
}

// unique returns the first arrival of each id, in arrival order, and
// how many arrivals were duplicates.
func unique(ids []int) ([]int, int) {
	seen := map[int]bool{}
	var out []int
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out, len(ids) - len(out)
}

func alerts(from, n int) []flow.Alert {
	as := make([]flow.Alert, n)
	for i := range as {
		as[i] = flow.Alert{ID: strconv.Itoa(from + i), Rule: "test_rule", State: flow.AlertStart, Severity: flow.SeverityHigh, Time: time.Now().UnixNano()}
	}
	return as
}

func newWebhookSink(t *testing.T, dir, url, secret string) *export.Sink {
	t.Helper()
	sp, err := spool.Open(dir, spool.Options{SegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(FormatVigil, export.OCSFProduct{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.URL, cfg.Timeout.D = url, 2*time.Second
	tr, err := newTransport(cfg, options{Secret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	return export.NewSink("webhook", enc, tr, sp, export.SinkOptions{BackoffMin: 10 * time.Millisecond, BackoffMax: 200 * time.Millisecond, ShutdownWait: 200 * time.Millisecond})
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ints(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

func sameInts(t *testing.T, what string, got, want []int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: record %d is %d, want %d (order or loss)", what, i, got[i], want[i])
		}
	}
}

// The upstream goes away for a while as records keep coming; when it is
// back, every record arrives, in order.
func TestSinkUpstreamDownLosesNothing(t *testing.T) {
	const secret = "s3cret"
	rcv := newReceiver(t, secret)
	s := newWebhookSink(t, t.TempDir(), "http://"+rcv.addr+"/hook", secret)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error)
	go func() { runDone <- s.Run(ctx) }()

	const total, per = 600, 20
	next := 0
	write := func(batches int) {
		for range batches {
			if err := s.WriteAlerts(alerts(next, per)); err != nil {
				t.Fatal(err)
			}
			next += per
			time.Sleep(5 * time.Millisecond)
		}
	}
	write(10)
	waitFor(t, "the first 200 alerts", 10*time.Second, func() bool { return len(rcv.received()) >= 200 })

	rcv.stop()
	write(10)
	waitFor(t, "failed sends while the receiver is down", 10*time.Second, func() bool { return s.Stats().Failures >= 2 })
	write(10)
	if p := s.Stats().Pending; p < per {
		t.Fatalf("only %d records pending while the upstream is down", p)
	}
	if st := s.Stats(); st.Spool.Oldest.IsZero() || st.Up {
		t.Errorf("while down: oldest unsent %v, up %v", st.Spool.Oldest, st.Up)
	}

	rcv.start()
	waitFor(t, "every record after the receiver is back", 20*time.Second, func() bool {
		u, _ := unique(rcv.received())
		return len(u) >= total
	})
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	u, dups := unique(rcv.received())
	sameInts(t, "delivered", u, ints(0, total))
	st := s.Stats()
	t.Logf("sent %d, failures %d, retries %d, duplicates at the receiver %d", st.Sent, st.Failures, st.Retries, dups)
	if st.Pending != 0 || st.Retries == 0 || st.Sent < total {
		t.Errorf("stats %+v", st)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A sensor stopped while the upstream is down keeps the records in its
// spool and delivers them after the next start.
func TestSinkSpoolSurvivesRestart(t *testing.T) {
	const secret = "k"
	rcv := newReceiver(t, secret)
	addr := rcv.addr
	rcv.stop()
	dir := t.TempDir()
	s := newWebhookSink(t, dir, "http://"+addr+"/", secret)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := s.WriteAlerts(alerts(0, 250)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed send", 5*time.Second, func() bool { return s.Stats().Failures > 0 })
	cancel()
	<-done
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	rcv.start()
	s2 := newWebhookSink(t, dir, "http://"+addr+"/", secret)
	if p := s2.Stats().Pending; p != 250 {
		t.Fatalf("%d records pending after the restart, want 250", p)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { done <- s2.Run(ctx2) }()
	waitFor(t, "the spooled records", 10*time.Second, func() bool { return s2.Stats().Pending == 0 })
	cancel2()
	<-done
	s2.Close(context.Background())
	u, _ := unique(rcv.received())
	sameInts(t, "delivered after the restart", u, ints(0, 250))
}

// A record the upstream refuses for good (4xx) is dropped and counted;
// 5xx and Retry-After are retried.
func TestSinkRejectedAndRetried(t *testing.T) {
	const secret = "k"
	rcv := newReceiver(t, secret)
	var mu sync.Mutex
	fails := map[int]int{}
	rcv.status = func(id int) int {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case id == 7:
			return http.StatusUnprocessableEntity
		case id == 3 && fails[id] < 2:
			fails[id]++
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	s := newWebhookSink(t, t.TempDir(), "http://"+rcv.addr+"/", secret)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := s.WriteAlerts(alerts(0, 12)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the records", 10*time.Second, func() bool { return s.Stats().Pending == 0 })
	cancel()
	<-done
	s.Close(context.Background())
	u, _ := unique(rcv.received())
	sameInts(t, "delivered", u, []int{0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 11})
	if st := s.Stats(); st.Rejected != 1 {
		t.Errorf("rejected %d, want 1", st.Rejected)
	}

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(export.NewCollector(func() []*export.Sink { return []*export.Sink{s} }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	dropped := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "vigil_export_records_dropped_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["sink"] != "webhook" {
				t.Errorf("series with sink %q", labels["sink"])
			}
			dropped[labels["reason"]] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{"rejected": 1, "spool_full": 0, "corrupt": 0, "oversize": 0, "write_error": 0}
	if fmt.Sprint(dropped) != fmt.Sprint(want) {
		t.Errorf("vigil_export_records_dropped_total by reason %v, want %v", dropped, want)
	}
}
