//go:build !race

package captures

// raceSlowdown scales time budgets under the race detector.
const raceSlowdown = 1
