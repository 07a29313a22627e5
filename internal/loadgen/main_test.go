package loadgen

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The hub's nbio engine keeps package-level pools and timers alive
		// for the life of the process.
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
	)
}
