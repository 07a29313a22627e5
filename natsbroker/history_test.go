package natsbroker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/history"
	"github.com/switchboardhq/switchboard/internal/testkit"
)

var (
	_ switchboard.History        = (*Broker)(nil)
	_ switchboard.HistoryBounded = (*Broker)(nil)
)

// The history tests run on every server at hand: the one natsURL names
// and, when that is not in process, an in-process one of the version in
// go.mod too, as the two may differ in what direct gets can do (batches
// came with nats-server 2.11).
var (
	jsOnce   sync.Once
	jsServer *server.Server
	jsDir    string
	jsErr    error
)

func stopJetStream() {
	if jsServer != nil {
		jsServer.Shutdown()
		jsServer.WaitForShutdown()
		_ = os.RemoveAll(jsDir)
	}
}

// historyServers names the servers to run history tests on.
func historyServers(tb testing.TB) map[string]string {
	tb.Helper()
	urls := map[string]string{"server": natsURL}
	if inProcess == nil && os.Getenv("NATS_URL") == "" {
		jsOnce.Do(func() {
			if jsDir, jsErr = os.MkdirTemp("", "natsbroker-js-"); jsErr == nil {
				jsServer, jsErr = runServer(-1, jsDir)
			}
		})
		if jsErr != nil {
			tb.Fatalf("in-process JetStream server: %v", jsErr)
		}
		urls["in-process"] = jsServer.ClientURL()
	}
	return urls
}

// forEachServer runs test once per server, in parallel subtests.
func forEachServer(t *testing.T, test func(t *testing.T, url string)) {
	t.Helper()
	for name, url := range historyServers(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			test(t, url)
		})
	}
}

// historyPrefix is a fresh prefix whose history stream is deleted when
// the test ends (after its brokers are closed).
func historyPrefix(t *testing.T, url string) string {
	t.Helper()
	prefix := uniquePrefix()
	t.Cleanup(func() { deleteHistory(t, url, prefix) })
	return prefix
}

// stored is how many messages JetStream holds for stream, seen from an
// admin connection, which neither reads nor keeps the stream alive.
func stored(t *testing.T, url string, b *Broker, stream string) uint64 {
	t.Helper()
	subj := b.historySubject(stream)
	var n uint64
	jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
		s, err := js.Stream(ctx, b.HistoryStream())
		if err != nil {
			return err
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(subj))
		if err != nil {
			return err
		}
		n = info.State.Subjects[subj]
		return nil
	})
	return n
}

// waitUntil polls cond (each call may do real work, so not too often)
// until it holds, failing the test after a deadline.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, 50*time.Millisecond, what, cond)
}

// jsAdmin runs f with a JetStream context of its own connection.
func jsAdmin(t *testing.T, url string, f func(ctx context.Context, js jetstream.JetStream) error) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f(ctx, js); err != nil {
		t.Fatal(err)
	}
}

func deleteHistory(t *testing.T, url, prefix string) {
	jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
		err := js.DeleteStream(ctx, "sb-history-"+EncodeToken(prefix))
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("delete history stream: %w", err)
		}
		return nil
	})
}

// historyBroker is a started broker of prefix keeping size messages per
// stream for ttl; deliver may be nil.
func historyBroker(t *testing.T, url, prefix string, size int, ttl time.Duration, deliver func(string, []byte)) *Broker {
	t.Helper()
	b := newBroker(t, url, prefix)
	b.BoundHistory(size, ttl)
	if deliver == nil {
		deliver = func(string, []byte) {}
	}
	if err := b.Start(context.Background(), deliver); err != nil {
		t.Fatal(err)
	}
	return b
}

// appendOne appends a message whose head names it, and returns its offset,
// epoch and the payload that must have been kept and published.
func appendOne(t testing.TB, b *Broker, stream, name string) (uint64, string, []byte) {
	t.Helper()
	off, epoch, err := b.Append(context.Background(), stream, "room:"+stream, []byte(name+"@"), []byte("!"))
	if err != nil {
		t.Error(err)
		return 0, "", nil
	}
	return off, epoch, expectedPayload(name, off, epoch)
}

func expectedPayload(name string, off uint64, epoch string) []byte {
	p := strconv.AppendUint([]byte(name+"@"), off, 10)
	return append(append(p, '!'), history.Trailer(off, epoch)...)
}

func read(t *testing.T, b *Broker, stream string, since uint64, limit int) history.Page {
	t.Helper()
	page, err := b.Read(context.Background(), stream, since, limit)
	if err != nil {
		t.Fatal(err)
	}
	return page
}

// offsetsOf reads the offsets of a page's payloads off their trailers.
func offsetsOf(t *testing.T, page history.Page) []uint64 {
	t.Helper()
	var out []uint64
	for _, p := range page.Payloads {
		m, err := parseKept(&nats.Msg{Data: p, Header: nats.Header{hdrSequence: {"1"}}})
		if err != nil || m.epoch != page.Epoch {
			t.Fatalf("payload %q: %v (epoch %q, page %q)", p, err, m.epoch, page.Epoch)
		}
		out = append(out, m.offset)
	}
	return out
}

func expectOffsets(t *testing.T, what string, page history.Page, from, to uint64) {
	t.Helper()
	got := offsetsOf(t, page)
	if uint64(len(got)) != to+1-from {
		t.Fatalf("%s: offsets %v, want %d..%d", what, got, from, to)
	}
	for i, o := range got {
		if o != from+uint64(i) {
			t.Fatalf("%s: offsets %v, want %d..%d", what, got, from, to)
		}
	}
}

// TestHistoryConcurrentAppend: two nodes appending 500 messages each to
// one stream at once (four publishers each) get offsets 1..1000, each
// once, all in one epoch, and reading back gives every payload intact.
func TestHistoryConcurrentAppend(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		prefix := historyPrefix(t, url)
		nodes := []*Broker{historyBroker(t, url, prefix, 2000, time.Minute, nil), historyBroker(t, url, prefix, 2000, time.Minute, nil)}
		const each, publishers = 500, 4
		var mu sync.Mutex
		payloads := map[uint64][]byte{}
		epochs := map[string]int{}
		var wg sync.WaitGroup
		for n, b := range nodes {
			for p := range publishers {
				wg.Go(func() {
					for i := range each / publishers {
						off, epoch, payload := appendOne(t, b, "r:race", fmt.Sprintf("n%d-p%d-%d", n, p, i))
						mu.Lock()
						if payloads[off] != nil {
							t.Errorf("offset %d given twice", off)
						}
						payloads[off] = payload
						epochs[epoch]++
						mu.Unlock()
					}
				})
			}
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if len(epochs) != 1 {
			t.Fatalf("epochs %v, want one", epochs)
		}
		for off := uint64(1); off <= 2*each; off++ {
			if payloads[off] == nil {
				t.Fatalf("offset %d never given", off)
			}
		}
		page := read(t, nodes[1], "r:race", 0, 5000)
		if page.Offset != 2*each || page.First != 1 || epochs[page.Epoch] == 0 {
			t.Fatalf("page offset %d first %d epoch %q", page.Offset, page.First, page.Epoch)
		}
		expectOffsets(t, "read all", page, 1, 2*each)
		for i, p := range page.Payloads {
			if !bytes.Equal(p, payloads[uint64(i+1)]) {
				t.Fatalf("payload %d is %q, appended %q", i+1, p, payloads[uint64(i+1)])
			}
		}
	})
}

// TestHistoryRead: an empty stream gets its epoch at the first Read and
// keeps it; since, limit, First and Offset select what is returned, on
// every path (the last alone, a short tail, a long one).
func TestHistoryRead(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		prefix := historyPrefix(t, url)
		b := historyBroker(t, url, prefix, 100, time.Minute, nil)
		other := historyBroker(t, url, prefix, 100, time.Minute, nil)
		empty := read(t, b, "r:read", 0, 10)
		if len(empty.Epoch) != 16 || empty.Offset != 0 || empty.First != 0 || len(empty.Payloads) != 0 {
			t.Fatalf("empty stream: %+v", empty)
		}
		if again := read(t, other, "r:read", 0, 0); again.Epoch != empty.Epoch || again.Offset != 0 {
			t.Fatalf("second read of the empty stream: %+v, first gave epoch %q", again, empty.Epoch)
		}
		var sent [][]byte
		for i := range 10 {
			off, epoch, p := appendOne(t, b, "r:read", fmt.Sprint("m", i))
			if off != uint64(i+1) || epoch != empty.Epoch {
				t.Fatalf("append %d: offset %d epoch %q, want %d %q", i, off, epoch, i+1, empty.Epoch)
			}
			sent = append(sent, p)
		}
		state := read(t, other, "r:read", 0, 0)
		if state.Offset != 10 || state.First != 1 || state.Epoch != empty.Epoch || state.Payloads != nil {
			t.Fatalf("state: %+v", state)
		}
		for _, c := range []struct {
			since    uint64
			limit    int
			from, to uint64
		}{
			{0, 100, 1, 10}, {4, 3, 5, 7}, {9, 5, 10, 10}, {8, 5, 9, 10}, {3, 100, 4, 10},
			{0, 1, 1, 1}, {10, 5, 1, 0}, {25, 5, 1, 0}, {6, 4, 7, 10}, {2, 2, 3, 4},
		} {
			page := read(t, other, "r:read", c.since, c.limit)
			what := fmt.Sprintf("since %d limit %d", c.since, c.limit)
			if page.Offset != 10 || page.First != 1 || page.Epoch != empty.Epoch {
				t.Fatalf("%s: %+v", what, page)
			}
			expectOffsets(t, what, page, c.from, c.to)
			for i, p := range page.Payloads {
				if !bytes.Equal(p, sent[c.from-1+uint64(i)]) {
					t.Fatalf("%s: payload %q, appended %q", what, p, sent[c.from-1+uint64(i)])
				}
			}
		}
		if one := read(t, b, "r:one", 0, 0); one.Offset != 0 {
			t.Fatalf("another stream: %+v", one)
		}
		off, _, _ := appendOne(t, b, "r:one", "x")
		if page := read(t, b, "r:one", 0, 5); off != 1 || page.First != 1 || page.Offset != 1 || len(page.Payloads) != 1 {
			t.Fatalf("stream of one message: offset %d, %+v", off, page)
		}
	})
}

// TestHistorySizeBound: a stream keeps its newest size messages, the
// epoch marker going first; trimming keeps continuity.
func TestHistorySizeBound(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		const size = 5
		b := historyBroker(t, url, historyPrefix(t, url), size, time.Minute, nil)
		epoch := read(t, b, "r:size", 0, 0).Epoch
		for i := 1; i <= 12; i++ {
			appendOne(t, b, "r:size", fmt.Sprint(i))
			page := read(t, b, "r:size", 0, 100)
			first := uint64(max(1, i-size+1))
			if page.Epoch != epoch || page.Offset != uint64(i) || page.First != first {
				t.Fatalf("after %d appends: offset %d first %d epoch %q, want %d %d %q", i, page.Offset, page.First, page.Epoch, i, first, epoch)
			}
			expectOffsets(t, fmt.Sprint("after ", i), page, first, uint64(i))
		}
		expectOffsets(t, "since before first", read(t, b, "r:size", 2, 100), 8, 12)
		expectOffsets(t, "since 9", read(t, b, "r:size", 9, 100), 10, 12)
	})
}

// TestHistoryRestart: when a stream's messages are purged, or the whole
// JetStream stream is deleted, or they expire, the stream starts again at
// offset 1 with a new epoch, seen by the node that cached the old state.
func TestHistoryRestart(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		prefix := historyPrefix(t, url)
		ttl := 1500 * time.Millisecond
		a := historyBroker(t, url, prefix, 100, ttl, nil)
		b := historyBroker(t, url, prefix, 100, ttl, nil)
		seen := map[string]bool{}
		check := func(what string, off uint64, epoch string) {
			t.Helper()
			if off != 1 || seen[epoch] {
				t.Fatalf("%s: offset %d epoch %q, want 1 and a new epoch (had %v)", what, off, epoch, seen)
			}
			seen[epoch] = true
			for range 2 {
				appendOne(t, a, "r:restart", "more")
			}
			if page := read(t, b, "r:restart", 0, 10); page.Epoch != epoch || page.Offset != 3 || page.First != 1 {
				t.Fatalf("%s, then 2 more: %+v", what, page)
			}
		}
		off, epoch, _ := appendOne(t, a, "r:restart", "first")
		check("first", off, epoch)

		jsAdmin(t, url, func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, a.HistoryStream())
			if err != nil {
				return err
			}
			return s.Purge(ctx, jetstream.WithPurgeSubject(a.historySubject("r:restart")))
		})
		off, epoch, _ = appendOne(t, a, "r:restart", "after purge") // a's cache is stale
		check("after purge", off, epoch)

		deleteHistory(t, url, prefix)
		page := read(t, b, "r:restart", 0, 10)
		if page.Offset != 0 || seen[page.Epoch] {
			t.Fatalf("read after the stream was deleted: %+v", page)
		}
		off, epoch, _ = appendOne(t, a, "r:restart", "after delete")
		if epoch != page.Epoch {
			t.Fatalf("append after the read of the empty stream: epoch %q, read gave %q", epoch, page.Epoch)
		}
		check("after delete", off, epoch)

		waitUntil(t, "the messages expired", func() bool { return stored(t, url, a, "r:restart") == 0 })
		if page := read(t, b, "r:restart", 0, 10); page.Offset != 0 || page.First != 0 || seen[page.Epoch] {
			t.Fatalf("read after expiry: %+v", page)
		}
		// The read left a marker holding its epoch; it expires too.
		waitUntil(t, "the marker expired", func() bool { return stored(t, url, a, "r:restart") == 0 })
		off, epoch, _ = appendOne(t, a, "r:restart", "after expiry")
		check("after expiry", off, epoch)
	})
}

// TestHistoryKeepAlive: a quiet stream that is read keeps its epoch and
// offsets while its messages expire, and the markers that keep it alive
// are never returned as messages.
func TestHistoryKeepAlive(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		ttl := time.Second
		b := historyBroker(t, url, historyPrefix(t, url), 100, ttl, nil)
		var sent [][]byte
		for i := range 2 {
			_, _, p := appendOne(t, b, "r:alive", fmt.Sprint(i))
			sent = append(sent, p)
		}
		epoch := read(t, b, "r:alive", 0, 0).Epoch
		// Once the newest message is older than ttl/2, a read stores a
		// marker: 2 messages and a marker.
		waitUntil(t, "a read stored a marker", func() bool {
			read(t, b, "r:alive", 0, 0)
			return stored(t, url, b, "r:alive") == 3
		})
		for i := 2; i < 4; i++ {
			off, ep, p := appendOne(t, b, "r:alive", fmt.Sprint(i))
			if off != uint64(i+1) || ep != epoch {
				t.Fatalf("append after a marker: offset %d epoch %q", off, ep)
			}
			sent = append(sent, p)
		}
		for since := range uint64(4) {
			page := read(t, b, "r:alive", since, 10)
			expectOffsets(t, fmt.Sprint("across a marker, since ", since), page, since+1, 4)
			for i, p := range page.Payloads {
				if !bytes.Equal(p, sent[since+uint64(i)]) {
					t.Fatalf("since %d: payload %q, appended %q", since, p, sent[since+uint64(i)])
				}
			}
		}
		// Quiet for two TTLs, read every 200ms as a hub following it does
		// (the time passing is the scenario).
		follow := time.NewTicker(200 * time.Millisecond)
		for end := time.Now().Add(2 * ttl); time.Now().Before(end); <-follow.C {
			read(t, b, "r:alive", 0, 0)
		}
		follow.Stop()
		page := read(t, b, "r:alive", 0, 10)
		if page.Offset != 4 || page.Epoch != epoch || page.First != 0 || len(page.Payloads) != 0 {
			t.Fatalf("quiet stream read all along: %+v, want offset 4, epoch %q, nothing kept", page, epoch)
		}
		if off, ep, _ := appendOne(t, b, "r:alive", "back"); off != 5 || ep != epoch {
			t.Fatalf("append to the quiet stream: offset %d epoch %q", off, ep)
		}
		page = read(t, b, "r:alive", 0, 10)
		if page.First != 5 || page.Offset != 5 {
			t.Fatalf("after one more: %+v", page)
		}
		expectOffsets(t, "after one more", page, 5, 5)
	})
}

// TestHistoryLive: a subscribed node receives exactly the payloads kept,
// in offset order, and each of them is readable from history by the time
// it arrives.
func TestHistoryLive(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		prefix := historyPrefix(t, url)
		const n = 200
		got := make(chan []byte, n)
		var recv *Broker
		var unstored atomic.Int64
		recv = historyBroker(t, url, prefix, 1000, time.Minute, func(ch string, p []byte) {
			m, err := parseKept(&nats.Msg{Data: p, Header: nats.Header{hdrSequence: {"1"}}})
			if err == nil && ch == "room:r:live" {
				if page, err := recv.Read(context.Background(), "r:live", m.offset-1, 1); err != nil || len(page.Payloads) != 1 || !bytes.Equal(page.Payloads[0], p) {
					unstored.Add(1)
				}
			}
			got <- p
		})
		if err := recv.Subscribe(context.Background(), "room:r:live"); err != nil {
			t.Fatal(err)
		}
		pub := historyBroker(t, url, prefix, 1000, time.Minute, nil)
		var sent [][]byte
		for i := range n {
			_, _, p := appendOne(t, pub, "r:live", fmt.Sprint("live-", i))
			sent = append(sent, p)
		}
		for i := range n {
			select {
			case p := <-got:
				if !bytes.Equal(p, sent[i]) {
					t.Fatalf("live payload %d is %q, appended %q", i, p, sent[i])
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("received %d of %d", i, n)
			}
		}
		if u := unstored.Load(); u != 0 {
			t.Fatalf("%d payloads arrived before history had them", u)
		}
	})
}

// TestHistoryHub: three hubs on one prefix recover a client across nodes
// and give a new epoch once the history stream is deleted.
func TestHistoryHub(t *testing.T) {
	forEachServer(t, func(t *testing.T, url string) {
		prefix := historyPrefix(t, url)
		suite(url).History(t, prefix, func(t *testing.T) { deleteHistory(t, url, prefix) })
	})
}

// BenchmarkHistoryRead measures reads of a 100-message history (150
// appended, interleaved with another stream's): a join recovering all of
// it, gap fills of the last 2 and 10, and the state only (the hub's
// periodic check of the streams it follows).
func BenchmarkHistoryRead(b *testing.B) {
	for server, url := range historyServers(b) {
		b.Run(server, func(b *testing.B) { benchmarkRead(b, url) })
	}
}

func benchmarkRead(b *testing.B, natsURL string) {
	prefix := uniquePrefix()
	pub := benchHistoryBroker(b, natsURL, prefix, 100, false)
	ctx := context.Background()
	for i := range 150 {
		appendOne(b, pub, "r:read", fmt.Sprint(i))
		appendOne(b, pub, "r:other", fmt.Sprint(i)) // interleaved
	}
	for _, c := range []struct {
		name  string
		since uint64
	}{{"all", 0}, {"last-2", 148}, {"last-10", 140}, {"state", 150}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := pub.Read(ctx, "r:read", c.since, 216); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
