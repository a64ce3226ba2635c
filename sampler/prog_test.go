package sampler

import (
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
)

func TestLoad(t *testing.T) {
	testutil.RequirePrivileged(t)
	p, err := LoadPrograms(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	t.Log(p.objs.VigilXdp.String())
}
