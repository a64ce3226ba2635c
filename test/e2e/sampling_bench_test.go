package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-sensor/vigil/internal/testutil"
	"github.com/vigil-sensor/vigil/test/netlab"
)

// BenchmarkDaemonCPURamp measures the CPU time vigil spends over the
// traffic ramp of TestAdaptiveSamplingRamp (1k to 100k packets per
// second over 7.5 s), with fixed rates and with adaptive sampling at a
// budget of 5,000 samples per second. Run it with -benchtime 1x: each
// iteration is a whole ramp. Reported: CPU milliseconds of the vigil
// process per ramp, and the samples it took.
func BenchmarkDaemonCPURamp(b *testing.B) {
	testutil.RequirePrivileged(b)
	bin := testutil.Vigil(b)
	for _, c := range []struct {
		name string
		args []string
	}{
		{"fixed=1", []string{"--sample-rate", "1"}},
		{"fixed=10", []string{"--sample-rate", "10"}},
		{"adaptive=5000", []string{"--sample-budget", "5000"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			var cpu, samples float64
			for range b.N {
				lab := labUp(b)
				const addr = "127.0.0.1:19132"
				args := append([]string{"--interface", netlab.SensorIf, "--flows-out", "", "--metrics-addr", addr}, c.args...)
				v := startVigil(b, lab, bin, addr, args...)
				before := procCPU(b, v.cmd.Process.Pid)
				runRamp(b, lab, v)
				after := procCPU(b, v.cmd.Process.Pid)
				cpu += after - before
				samples += v.metrics().counter("vigil_samples_total")
				v.stop()
			}
			b.ReportMetric(cpu/float64(b.N)*1000, "cpu-ms/ramp")
			b.ReportMetric(samples/float64(b.N), "samples/ramp")
		})
	}
}

// procCPU returns the user and system CPU seconds of a process.
func procCPU(tb testing.TB, pid int) float64 {
	tb.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which ends with the last ')'.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		tb.Fatalf("parsing /proc/%d/stat: %v %v", pid, err1, err2)
	}
	const hz = 100 // USER_HZ on Linux
	return (utime + stime) / hz
}
