package switchboard

import (
	"context"
	"strings"
	"testing"
	"time"
)

// The in-memory store drops messages older than the TTL, frees a stream
// silent for the TTL, and a freed stream starts again at offset 1 with a
// new epoch.
func TestMemoryHistoryExpiry(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var published [][]byte
	m := newMemoryHistory(HistoryOptions{Size: 10, TTL: time.Minute, MaxBytes: 1 << 20}.withDefaults(),
		func(_ context.Context, _ string, p []byte) error { published = append(published, p); return nil })
	m.now = func() time.Time { return now }
	ctx := context.Background()
	off, epoch, _ := m.Append(ctx, "r:x", "room:x", []byte("a"), []byte("b"))
	if off != 1 || len(epoch) != historyEpochLen || !strings.HasPrefix(string(published[0]), "a1b") {
		t.Fatalf("first append: %d %q %q", off, epoch, published[0])
	}
	now = now.Add(40 * time.Second)
	m.Append(ctx, "r:x", "room:x", nil, nil)
	now = now.Add(30 * time.Second) // the first message is 70 s old
	page, _ := m.Read(ctx, "r:x", 0, 10)
	if page.First != 2 || page.Offset != 2 || len(page.Payloads) != 1 || page.Epoch != epoch {
		t.Fatalf("after the first expired: %+v", page)
	}
	now = now.Add(2 * time.Minute)
	m.sweep(now)
	page, _ = m.Read(ctx, "r:x", 0, 10)
	if page.Offset != 0 || page.First != 0 || page.Epoch == epoch {
		t.Fatalf("a stream silent for the TTL was not started again: %+v", page)
	}
	off, epoch2, _ := m.Append(ctx, "r:x", "room:x", nil, nil)
	if off != 1 || epoch2 != page.Epoch {
		t.Fatalf("first message after the restart: offset %d epoch %q, the read gave %q", off, epoch2, page.Epoch)
	}
}

// FuzzKeptBody: whatever a broker delivers as a kept message, opening it
// never panics, and what opens is consistent with its trailer.
func FuzzKeptBody(f *testing.F) {
	env := envelope{kind: kindKept, origin: "c1", target: "r:room", frame: []byte(`{"type":"message","offset":`)}
	good := append(env.marshal(), append([]byte(`7,"ts":1}`), HistoryTrailer(7, "0123456789abcdef")...)...)
	f.Add(good)
	f.Add([]byte{1, 'h', 0, 0})
	f.Add(HistoryTrailer(1, "x"))
	f.Fuzz(func(t *testing.T, p []byte) {
		body, offset, epoch, err := keptBody(p)
		if err != nil {
			return
		}
		if len(epoch) != historyEpochLen || len(body) > len(p) {
			t.Fatalf("opened %q: body %q offset %d epoch %q", p, body, offset, epoch)
		}
	})
}

// A client that joined an empty room (offset 0, epoch E) and comes back
// after the stream started again must not be told it recovered: since 0
// skips the epoch check only for a client that never had an epoch.
func TestRecoverableSinceZeroNeedsTheEpoch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := newMemoryHistory(HistoryOptions{}.withDefaults(), func(context.Context, string, []byte) error { return nil })
	m.now = func() time.Time { return now }
	ctx := context.Background()
	joined, _ := m.Read(ctx, "r:kept", 0, 0)
	for range 3 {
		m.Append(ctx, "r:kept", "room:kept", []byte(`x`), []byte(`y`))
	}
	now = now.Add(time.Hour)
	m.sweep(now)
	m.Append(ctx, "r:kept", "room:kept", []byte(`x`), []byte(`y`))
	page, _ := m.Read(ctx, "r:kept", 0, 100)
	if recoverable(page, 0, joined.Epoch) {
		t.Fatalf("since 0 of epoch %s judged recoverable in epoch %s", joined.Epoch, page.Epoch)
	}
	if recoverable(HistoryPage{Epoch: "fresh"}, 0, joined.Epoch) {
		t.Fatal("since 0 of an old epoch judged recoverable against a fresh empty stream")
	}
	if !recoverable(HistoryPage{Epoch: "fresh"}, 0, "") || !recoverable(HistoryPage{Epoch: joined.Epoch}, 0, joined.Epoch) {
		t.Fatal("nothing missed was judged unrecoverable")
	}
}
