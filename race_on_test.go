//go:build race

package switchboard_test

// raceEnabled skips the nbio transport under the race detector: nbio marks
// its own code go:norace and synchronises through the poller, which the
// detector cannot see, so it reports races inside nbio (and at the
// documented hand-over of an upgraded socket). The nbio subtests run in
// the suite's second pass, without -race.
const raceEnabled = true
