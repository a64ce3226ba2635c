package flow

import (
	"math"

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

// Level is the confidence of the intervals Vigil reports.
const Level = 0.95

// Interval is a two-sided confidence interval of an estimated total.
type Interval struct {
	Lo, Hi uint64
}

// Interval returns the Level confidence interval of the total, rounded
// outwards.
//
// It is the gamma interval of Fay and Feuer (Statistics in Medicine,
// 1997) for a weighted sum of Poisson counts: the lower end is a quantile
// of the gamma distribution with the estimate's mean and variance; the
// upper end one of the gamma with one more sample of the largest weight
// added, as Garwood's exact interval adds one to the count. With a single
// rate N and k samples of one packet each it is N times Garwood's exact
// Poisson interval for k. Bernoulli sampling is less dispersed than
// Poisson, so the interval is conservative; it never goes below what was
// seen, and collapses to the estimate when every sample had rate 1.
func (e Estimate) Interval() Interval {
	lo, hi := e.bounds(1 - Level)
	return Interval{Lo: uint64(math.Floor(lo)), Hi: uint64(math.Ceil(hi))}
}

// bounds returns the two-sided 1−alpha interval, unrounded.
func (e Estimate) bounds(alpha float64) (lo, hi float64) {
	if e.Value <= 0 {
		return 0, 0
	}
	if e.Var <= 0 && e.MaxW <= 0 {
		return e.Value, e.Value // every packet was taken at rate 1: exact
	}
	lo = e.Value
	if e.Var > 0 {
		shape, scale := e.Value*e.Value/e.Var, e.Var/e.Value
		lo = scale * mathext.GammaIncRegInv(shape, alpha/2)
	}
	x, v := e.Value+e.MaxW, e.Var+e.MaxW*e.MaxW
	shape, scale := x*x/v, v/x
	hi = scale * mathext.GammaIncRegCompInv(shape, alpha/2)
	return max(lo, e.Seen), max(hi, e.Value)
}

// RelativeError is the larger distance from the estimate to either end
// of its interval, as a fraction of the estimate: 0.05 means the total is
// within ±5% with Level confidence.
func (e Estimate) RelativeError() float64 {
	if e.Value <= 0 {
		return 0
	}
	lo, hi := e.bounds(1 - Level)
	return max(e.Value-lo, hi-e.Value) / e.Value
}
