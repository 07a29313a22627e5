package switchboard

import (
	"testing"

	"github.com/switchboardhq/switchboard/history"
)

// FuzzKeptBody: whatever a broker delivers as a kept message, opening it
// never panics, and what opens is consistent with its trailer.
func FuzzKeptBody(f *testing.F) {
	env := envelope{kind: kindKept, origin: "c1", target: "r:room", frame: []byte(`{"type":"message","offset":`)}
	good := append(env.marshal(), append([]byte(`7,"ts":1}`), history.Trailer(7, "0123456789abcdef")...)...)
	f.Add(good)
	f.Add([]byte{1, 'h', 0, 0})
	f.Add(history.Trailer(1, "x"))
	f.Fuzz(func(t *testing.T, p []byte) {
		body, offset, epoch, err := keptBody(p)
		if err != nil {
			return
		}
		if len(epoch) != history.EpochLen || len(body) > len(p) {
			t.Fatalf("opened %q: body %q offset %d epoch %q", p, body, offset, epoch)
		}
	})
}
