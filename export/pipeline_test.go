package export

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/vigil-sensor/vigil/export/spool"
)

func TestNextBackoff(t *testing.T) {
	s := &Sink{opt: SinkOptions{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	d := time.Duration(0)
	for i := range 10 {
		d = s.nextBackoff(d, errors.New("down"))
		if d < 80*time.Millisecond || d > 1200*time.Millisecond {
			t.Fatalf("step %d: backoff %v outside [80ms, 1.2s]", i, d)
		}
	}
	if d < 800*time.Millisecond {
		t.Errorf("backoff did not grow to the cap: %v", d)
	}
	if d := s.nextBackoff(0, &RetryAfterError{Delay: 3 * time.Second, Err: errors.New("busy")}); d != 3*time.Second {
		t.Errorf("Retry-After 3s gave %v", d)
	}
}

func TestOnlyOversize(t *testing.T) {
	over := fmt.Errorf("%w: 9 bytes", spool.ErrOversize)
	write := errors.New("writing spool segment: no space left on device")
	for _, c := range []struct {
		err  error
		want bool
	}{
		{over, true},
		{errors.Join(over, over), true},
		{errors.Join(nil, over), true},
		{write, false},
		{errors.Join(over, write), false},
		{errors.Join(errors.Join(over), write), false},
	} {
		if got := onlyOversize(c.err); got != c.want {
			t.Errorf("onlyOversize(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
