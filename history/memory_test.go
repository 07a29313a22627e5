package history

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
	m := NewMemory(10, 1<<20, time.Minute,
		func(_ context.Context, _ string, p []byte) error { published = append(published, p); return nil })
	m.now = func() time.Time { return now }
	ctx := context.Background()
	off, epoch, _ := m.Append(ctx, "r:x", "room:x", []byte("a"), []byte("b"))
	if off != 1 || len(epoch) != EpochLen || !strings.HasPrefix(string(published[0]), "a1b") {
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
	m.Sweep(now)
	page, _ = m.Read(ctx, "r:x", 0, 10)
	if page.Offset != 0 || page.First != 0 || page.Epoch == epoch {
		t.Fatalf("a stream silent for the TTL was not started again: %+v", page)
	}
	off, epoch2, _ := m.Append(ctx, "r:x", "room:x", nil, nil)
	if off != 1 || epoch2 != page.Epoch {
		t.Fatalf("first message after the restart: offset %d epoch %q, the read gave %q", off, epoch2, page.Epoch)
	}
}

// Each stream keeps at most Size messages and MaxBytes of payload (but
// always its newest message), and a payload ends with its trailer.
func TestMemoryHistoryBounds(t *testing.T) {
	m := NewMemory(3, 130, time.Hour, func(context.Context, string, []byte) error { return nil })
	ctx := context.Background()
	for range 5 {
		m.Append(ctx, "s", "c", []byte("x"), nil)
	}
	page, _ := m.Read(ctx, "s", 0, 10)
	if page.Offset != 5 || page.First != 3 || len(page.Payloads) != 3 {
		t.Fatalf("count bound: %+v", page)
	}
	body, offset, epoch, err := Split(page.Payloads[2])
	if err != nil || offset != 5 || epoch != page.Epoch || string(body) != "x5" {
		t.Fatalf("newest payload opens as %q %d %q %v", body, offset, epoch, err)
	}
	m.Append(ctx, "s", "c", []byte(strings.Repeat("y", 100)), nil)
	page, _ = m.Read(ctx, "s", 0, 10)
	if len(page.Payloads) != 1 || page.First != 6 {
		t.Fatalf("byte bound keeps only the newest, oversized message: %+v", page)
	}
	if page, _ := m.Read(ctx, "s", 0, 0); page.Payloads != nil || page.Offset != 6 {
		t.Fatalf("limit 0 reads the state only: %+v", page)
	}
}

// A client that joined an empty room (offset 0, epoch E) and comes back
// after the stream started again must not be told it recovered: since 0
// skips the epoch check only for a client that never had an epoch.
func TestRecoverableSinceZeroNeedsTheEpoch(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	m := NewMemory(100, 1<<20, 5*time.Minute, func(context.Context, string, []byte) error { return nil })
	m.now = func() time.Time { return now }
	ctx := context.Background()
	joined, _ := m.Read(ctx, "r:kept", 0, 0)
	for range 3 {
		m.Append(ctx, "r:kept", "room:kept", []byte(`x`), []byte(`y`))
	}
	now = now.Add(time.Hour)
	m.Sweep(now)
	m.Append(ctx, "r:kept", "room:kept", []byte(`x`), []byte(`y`))
	page, _ := m.Read(ctx, "r:kept", 0, 100)
	if Recoverable(page, 0, joined.Epoch) {
		t.Fatalf("since 0 of epoch %s judged recoverable in epoch %s", joined.Epoch, page.Epoch)
	}
	if Recoverable(Page{Epoch: "fresh"}, 0, joined.Epoch) {
		t.Fatal("since 0 of an old epoch judged recoverable against a fresh empty stream")
	}
	if !Recoverable(Page{Epoch: "fresh"}, 0, "") || !Recoverable(Page{Epoch: joined.Epoch}, 0, joined.Epoch) {
		t.Fatal("nothing missed was judged unrecoverable")
	}
}

func TestTrailerRoundTrip(t *testing.T) {
	p := append([]byte(`{"a":1}`), Trailer(42, "0123456789abcdef")...)
	body, offset, epoch, err := Split(p)
	if err != nil || string(body) != `{"a":1}` || offset != 42 || epoch != "0123456789abcdef" {
		t.Fatalf("split: %q %d %q %v", body, offset, epoch, err)
	}
	if _, _, _, err := Split([]byte("short")); err == nil {
		t.Fatal("a payload shorter than a trailer opened")
	}
	if _, _, _, err := Split(append([]byte("x"), "0000000000000000000x0123456789abcdef"...)); err == nil {
		t.Fatal("a trailer with a non-digit offset opened")
	}
	if e := NewEpoch(); len(e) != EpochLen || e == NewEpoch() {
		t.Fatalf("epoch %q", e)
	}
}

// FuzzSplit: whatever a broker delivers as a kept payload, cutting the
// trailer off never panics and keeps within the payload.
func FuzzSplit(f *testing.F) {
	f.Add(append([]byte(`{"type":"message","offset":7}`), Trailer(7, "0123456789abcdef")...))
	f.Add(Trailer(1, "x"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		body, offset, epoch, err := Split(p)
		if err != nil {
			return
		}
		if len(epoch) != EpochLen || len(body)+TrailerLen != len(p) {
			t.Fatalf("opened %q: body %q offset %d epoch %q", p, body, offset, epoch)
		}
	})
}
