package flow

import (
	"math"
	"sync"

	"gonum.org/v1/gonum/mathext"
)

// Estimate is a total estimated from samples, with what its confidence
// interval needs. A sample taken at 1-in-N that carries x (packets or
// bytes) stands for N·x; the sum of those is unbiased whatever the rates
// were, and its variance under Bernoulli sampling, N(N−1)·x² per sample,
// is estimated without bias by summing it over the samples.
//
// Estimates of disjoint sets of packets add: the estimate of a host is
// the sum of its flows' estimates, with a correct interval.
type Estimate struct {
	Value float64 // Σ N·x: the estimate
	Seen  float64 // Σ x: what the samples carried; the truth is at least this
	Var   float64 // Σ N(N−1)·x²: the estimate of the estimator's variance
	MaxW  float64 // max (N−1)·x: the most one sample adds beyond itself
}

// Observe accounts one sample taken at 1-in-rate that carries x.
func (e *Estimate) Observe(rate uint32, x float64) {
	n := float64(max(rate, 1))
	e.Value += n * x
	e.Seen += x
	e.Var += n * (n - 1) * x * x
	e.MaxW = max(e.MaxW, (n-1)*x)
}

// Unseen widens the interval for packets that no sample caught while
// the rate in force was up to rate, each carrying about x.
func (e *Estimate) Unseen(rate uint32, x float64) {
	if rate > 1 {
		e.MaxW = max(e.MaxW, float64(rate-1)*x)
	}
}

// Add accounts another estimate of disjoint packets.
func (e *Estimate) Add(o Estimate) {
	e.Value += o.Value
	e.Seen += o.Seen
	e.Var += o.Var
	e.MaxW = max(e.MaxW, o.MaxW)
}

// Minus returns the estimate of what a running estimate accounted since
// it was earlier. The largest weight cannot be taken back and stays, which
// only widens the upper end.
func (e Estimate) Minus(earlier Estimate) Estimate {
	return Estimate{
		Value: max(e.Value-earlier.Value, 0),
		Seen:  max(e.Seen-earlier.Seen, 0),
		Var:   max(e.Var-earlier.Var, 0),
		MaxW:  e.MaxW,
	}
}

// Level is the confidence of the intervals Vigil reports.
const Level = 0.95

// Interval is a two-sided confidence interval of an estimated total.
type Interval struct {
	Lo, Hi uint64
}

// RateInterval is a two-sided confidence interval of an estimated rate.
type RateInterval struct {
	Lo, Hi float64
}

// Per returns the interval of the rate of a total counted over seconds.
func (i Interval) Per(seconds float64) RateInterval {
	return RateInterval{Lo: float64(i.Lo) / seconds, Hi: float64(i.Hi) / seconds}
}

// Interval returns the Level confidence interval of the total, rounded
// outwards.
//
// It is the gamma interval of Fay and Feuer (Statistics in Medicine,
// 1997) for a weighted sum of Poisson counts: the lower end is a quantile
// of the gamma distribution with the estimate's mean and variance; the
// upper end one of the gamma with one more sample of the largest weight
// added, as Garwood's exact interval adds one to the count. With a single
// rate N and k samples of one packet each the upper end is N times
// Garwood's. The lower end is conditional on at least one sample: a total
// is only reported when something was sampled, and among the flows of
// one packet at 1-in-1000 it is the few that were sampled that report,
// each with k = 1. So the lower end inverts the zero-truncated Poisson
// (for k = 1 it is what was seen); from about 10 samples on it is
// Garwood's. Bernoulli sampling is less dispersed than Poisson, so the
// interval is conservative; it never goes below what was seen, and
// collapses to the estimate when every sample had rate 1.
func (e Estimate) Interval() Interval {
	lo, hi := e.bounds()
	return Interval{Lo: saturate(math.Floor(lo)), Hi: saturate(math.Ceil(hi))}
}

// saturate converts to uint64, the largest one for what does not fit.
func saturate(x float64) uint64 {
	if x >= 1<<64 {
		return math.MaxUint64
	}
	return uint64(x)
}

// bounds returns the Level interval, unrounded.
func (e Estimate) bounds() (lo, hi float64) {
	if e.Value <= 0 {
		return 0, 0
	}
	if e.Var <= 0 && e.MaxW <= 0 {
		return e.Value, e.Value // every packet was taken at rate 1: exact
	}
	lo = e.Value
	if e.Var > 0 {
		shape, scale := e.Value*e.Value/e.Var, e.Var/e.Value
		lo = scale * gammaQuantile(shape, false)
	}
	x, v := e.Value+e.MaxW, e.Var+e.MaxW*e.MaxW
	shape, scale := x*x/v, v/x
	hi = scale * gammaQuantile(shape, true)
	return max(lo, e.Seen), max(hi, e.Value)
}

// wilsonHilfertyShape is the shape from which gammaQuantile uses the
// Wilson–Hilferty approximation: there it is within 0.05% of the exact
// quantile (TestGammaQuantile).
const wilsonHilfertyShape = 50

// z975 is the 97.5% quantile of the standard normal distribution.
const z975 = 1.959963984540054

// Below wilsonHilfertyShape the quantiles are interpolated from a table
// over log-spaced shapes: an exact quantile costs 2–4 µs, too much for
// every record of a flood. Both gamma shapes of an interval are at least
// 1 (the variance of a sum of positive weights is at most its square).
const quantileGrid = 2048

var (
	quantileOnce  sync.Once
	quantileTable [2][quantileGrid]float64 // log quantiles: lower, upper
	quantileStep  = math.Log(wilsonHilfertyShape) / (quantileGrid - 1)
)

// gammaQuantile returns the quantile of the unit-scale gamma distribution
// of the shape with (1−Level)/2 below it (upper: above it).
func gammaQuantile(shape float64, upper bool) float64 {
	if shape >= wilsonHilfertyShape {
		z := -z975
		if upper {
			z = z975
		}
		c := 1 / (9 * shape)
		t := 1 - c + z*math.Sqrt(c)
		return shape * t * t * t
	}
	if shape < 1 {
		return exactGammaQuantile(shape, upper)
	}
	quantileOnce.Do(func() {
		for i := range quantileGrid {
			a := math.Exp(float64(i) * quantileStep)
			quantileTable[0][i] = exactGammaQuantile(a, false)
			quantileTable[1][i] = math.Log(exactGammaQuantile(a, true))
		}
	})
	x := math.Log(shape) / quantileStep
	i := min(int(x), quantileGrid-2)
	f := x - float64(i)
	if upper {
		tab := &quantileTable[1]
		return math.Exp(tab[i] + f*(tab[i+1]-tab[i]))
	}
	// The lower quantiles start at 0 (shape 1): interpolated linearly.
	tab := &quantileTable[0]
	return tab[i] + f*(tab[i+1]-tab[i])
}

// exactGammaQuantile computes the quantiles gammaQuantile tabulates. The
// lower one is conditional on a count of at least one: the λ with
// P(K ≥ k | K ≥ 1) = (1−Level)/2 for K Poisson(λ), where P(K ≥ k) is the
// regularized incomplete gamma function P(k, λ), for real k = shape.
func exactGammaQuantile(shape float64, upper bool) float64 {
	p := (1 - Level) / 2
	if upper {
		return mathext.GammaIncRegCompInv(shape, p)
	}
	if shape <= 1 {
		return 0 // P(K ≥ 1 | K ≥ 1) = 1 whatever λ
	}
	// The untruncated quantile bounds the truncated one from above;
	// the ratio rises with λ.
	lo, hi := 0.0, mathext.GammaIncRegInv(shape, p)
	for range 60 {
		mid := (lo + hi) / 2
		if mathext.GammaIncReg(shape, mid)/-math.Expm1(-mid) < p {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

// RelativeError is the larger distance from the estimate to either end
// of its interval, as a fraction of the estimate: 0.05 means the total is
// within ±5% with Level confidence.
func (e Estimate) RelativeError() float64 {
	if e.Value <= 0 {
		return 0
	}
	lo, hi := e.bounds()
	return max(e.Value-lo, hi-e.Value) / e.Value
}
