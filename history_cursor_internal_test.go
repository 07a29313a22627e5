package switchboard

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/transport"
	"github.com/switchboardhq/switchboard/internal/wsframe"
)

// recordingTransport keeps the frames written, in order.
type recordingTransport struct {
	discardTransport
	mu     sync.Mutex
	frames []string
}

func (t *recordingTransport) Write(c transport.Conn, frames [][]byte) error {
	t.mu.Lock()
	for _, f := range frames {
		// Unmasked server frames: a 2, 4 or 10-byte header.
		switch n := f[1] & 0x7f; {
		case n < 126:
			f = f[2:]
		case n == 126:
			f = f[4:]
		default:
			f = f[10:]
		}
		t.frames = append(t.frames, string(f))
	}
	t.mu.Unlock()
	return t.discardTransport.Write(c, frames)
}

// A live message past a gap waits while the gap is filled from history;
// duplicates are dropped; the connection sees offsets 1..5 once, in order.
func TestCursorFillsAGapFromHistory(t *testing.T) {
	h, err := New(Options{History: HistoryOptions{Rooms: []string{"kept"}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tr := &recordingTransport{}
	addFakeConns(t, h, "other", 1, tr)
	c := h.reg.userConns("u0")[0]
	ctx := context.Background()
	var frames [][]byte
	var epoch string
	for range 5 {
		p, err := h.Publish(ctx, "kept", json.RawMessage(`1`))
		if err != nil {
			t.Fatal(err)
		}
		epoch = p.Epoch
	}
	page, _ := h.history.Read(ctx, "r:kept", 0, 10)
	for _, p := range page.Payloads {
		body, _, _, _ := keptBody(p)
		frames = append(frames, wsframe.AppendFrame(nil, wsframe.OpText, body))
	}
	c.mu.Lock()
	c.cursors.Hold("r:kept").Joined(c.sink(), &history.Page{Epoch: epoch}, false, "") // next: offset 1
	c.mu.Unlock()
	for _, i := range []int{0, 1, 1, 3, 4, 0} { // offsets 1, 2, 2, 4, 5, 1
		c.deliverKept("r:kept", epoch, uint64(i+1), frames[i])
	}
	var got []string
	eventually(t, "five frames written", func() bool {
		tr.drain() // the writer pool's job, done here
		tr.mu.Lock()
		got = append(got[:0], tr.frames...)
		tr.mu.Unlock()
		return len(got) >= 5
	})
	for i, f := range got {
		if want := `"offset":` + string(rune('1'+i)) + `,`; !strings.Contains(f, want) || len(got) != 5 {
			t.Fatalf("frames %v: want offsets 1..5 once each", got)
		}
	}
}
