package switchboard_test

import (
	"testing"

	"github.com/lesismal/nbio/logging"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	logging.SetLevel(logging.LevelNone)
	goleak.VerifyTestMain(m,
		// nbio's engine keeps package-level task pools and timers alive for
		// the life of the process.
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/timer.(*Timer).loop"),
		goleak.IgnoreTopFunction("github.com/lesismal/nbio/taskpool.(*TaskPool).run"),
	)
}
