// Package metric holds what every collector's metric names share: the
// namespace. Each metric is declared beside what it measures (flow,
// sampler, detect, export, daemon); docs/METRICS.md lists them all and
// test/e2e's golden test keeps the list true.
package metric

import "github.com/prometheus/client_golang/prometheus"

// Namespace prefixes every metric Vigil exports.
const Namespace = "vigil"

// Name returns the metric's full name, Namespace_name.
func Name(name string) string { return prometheus.BuildFQName(Namespace, "", name) }
