package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboardhq/switchboard"
	"github.com/switchboardhq/switchboard/history"
)

// History on JetStream.
//
// One JetStream stream per Prefix keeps every history stream of the
// cluster, one subject each: Prefix + "history." + EncodeToken(stream).
// A kept message is stored exactly as it is published live, so its offset
// and epoch are read back from its trailer. The stream bounds each subject
// with MaxMsgsPerSubject and every message with MaxAge (the TTL); both drop
// the oldest first, so what a subject keeps is always a run of consecutive
// offsets.
//
// Offsets: Append reads the subject's last message (offset N, epoch E) and
// stores N+1 with Nats-Expected-Last-Subject-Sequence set to the last
// message's stream sequence. The server refuses the store if anything was
// stored on the subject since, whichever node did it; the loser reads the
// last message again and retries. So offsets never repeat or skip however
// many nodes append. Each node remembers the last message it stored per
// stream (a small striped cache, trusted for one TTL), which saves the read
// on the common path: one round trip per message. The stripe's lock is
// held across the store and the live publish, so that one node's messages
// of a stream go out in offset order. Live publishing is the core publish
// of Publish, after the store is acknowledged: no node sees a message live
// that history does not have. Messages of one stream from different nodes
// may arrive out of order; the hub puts them back in order from Read.
//
// Epochs: a subject with no message starts a fresh epoch. A Read of an
// empty subject stores a marker (a bare trailer: an offset and the epoch,
// no message) so that the epoch it reports is the one the first message
// continues. A Read that finds the newest message half way to expiring
// stores a marker repeating its offset and epoch, so that a quiet stream
// its followers keep reading keeps its epoch and offsets while its
// messages expire. Markers are never returned; MaxMsgsPerSubject leaves
// room for two, and Read shows at most the newest Size messages. A subject
// that lost everything (expired unread, purged, stream deleted) is found
// empty and starts a new epoch at offset 1.
//
// Reading: each message carries the stream sequence of the subject's
// previous message (header Sb-Prev), so a short tail is read backwards by
// sequence from the last message; a long one is read forwards from the
// oldest with one batched direct get (nats-server 2.11+), or one direct
// get per message on older servers.
//
// Limit: a node's cached last message survives the stream being deleted
// and made again by another node for up to one TTL; were the new stream's
// last sequence on that subject to equal the cached one exactly, the
// node's next message would continue the old epoch. Deleting the stream
// while nodes run is an operator's act; the cache of the node that makes
// it again is dropped.

const (
	historyToken  = "history."
	historyStripe = 256 // striped per-stream cache and locks of Append
	// maxAppendAttempts bounds Append's retries when other nodes keep
	// winning the race for the next offset.
	maxAppendAttempts = 100
	// DefaultHistoryTimeout bounds one Append or Read when its context
	// has no earlier deadline.
	DefaultHistoryTimeout = 5 * time.Second

	hdrPrev         = "Sb-Prev"
	hdrExpectLast   = "Nats-Expected-Last-Subject-Sequence"
	hdrSequence     = "Nats-Sequence"
	hdrSubject      = "Nats-Subject"
	hdrNumPending   = "Nats-Num-Pending"
	hdrTimeStamp    = "Nats-Time-Stamp"
	hdrLastSequence = "Nats-Last-Sequence"
	offsetDigits    = 20 // trailer: offset in 20 digits, then the epoch
	epochLen        = 16
	trailerLen      = offsetDigits + epochLen

	// JetStream error codes.
	errCodeWrongLast         = 10071
	errCodeWrongLastConstant = 10164 // the same, on replicated streams
	// Asking for more replicas than can be placed.
	errCodeReplicasNotClustered  = 10074
	errCodeNoPeers               = 10005
	errCodeInsufficientResources = 10023
)

var (
	errNoMessage = errors.New("no message")
	// errMoved means the subject changed under a Read (trimmed, restarted
	// or raced by a marker): the Read starts over.
	errMoved     = errors.New("history changed while read")
	errWrongLast = errors.New("wrong last sequence")
)

// histState is the broker's history configuration and JetStream state.
type histState struct {
	size int
	ttl  time.Duration

	mu    sync.Mutex // guards ready and gen while the stream is ensured
	ready bool       // the stream was created or updated since the last loss
	gen   uint64     // bumped whenever the stream is (re)created: caches go stale
	// noBatch is set once a server answered a batched direct get with a
	// single message (before 2.11): long reads then walk backwards.
	noBatch bool

	seed   maphash.Seed
	stripe [historyStripe]histStripe
}

// histStripe caches the last message of one stream (the most recent that
// hashed here) and serialises this node's appends to it.
type histStripe struct {
	mu sync.Mutex
	c  cachedLast
}

type cachedLast struct {
	stream string
	gen    uint64    // histState.gen when learned
	at     time.Time // when learned
	last   kept      // without data
}

// kept is one stored history message, or a marker.
type kept struct {
	seq, prev, offset uint64
	subject, epoch    string
	data              []byte
	// marker: no message, only the offset before it and the epoch (a bare
	// trailer), which a Read stores to persist an epoch (see above).
	marker bool
	at     time.Time // when stored, by the server's clock
}

// BoundHistory implements switchboard.HistoryBounded: every subject keeps
// at most size messages, each for ttl. Nodes sharing a prefix share the
// stream, so they should share the bounds too (the last node to start
// sets them).
func (b *Broker) BoundHistory(size int, ttl time.Duration) {
	b.hist.mu.Lock()
	defer b.hist.mu.Unlock()
	b.hist.size, b.hist.ttl, b.hist.ready = size, ttl, false
}

// HistoryStream is the name of the JetStream stream that keeps history.
func (b *Broker) HistoryStream() string { return b.opts.HistoryStream }

func (b *Broker) historySubject(stream string) string {
	return b.opts.Prefix + historyToken + EncodeToken(stream)
}

// historyBounds returns the bounds BoundHistory set, or the hub's
// defaults. Called with hist.mu held.
func (b *Broker) historyBounds() (size int, ttl time.Duration) {
	size, ttl = b.hist.size, b.hist.ttl
	if size <= 0 {
		size = switchboard.DefaultHistorySize
	}
	if ttl <= 0 {
		ttl = switchboard.DefaultHistoryTTL
	}
	return size, ttl
}

// historyCall prepares one Append or Read: the connection, a deadline and
// the stream. run is called again once if the stream turned out missing.
func (b *Broker) historyCall(ctx context.Context, run func(context.Context, *nats.Conn) error) error {
	nc, err := b.conn()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, DefaultHistoryTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if err := b.ensureHistory(ctx, nc); err != nil {
			return err
		}
		err := run(ctx, nc)
		if attempt == 0 && errors.Is(err, nats.ErrNoResponders) {
			b.lostHistory()
			continue
		}
		return err
	}
}

// Append implements switchboard.History. The message is stored in the
// JetStream stream HistoryStream, on the stream's own subject, only if no
// other message was stored there since the one it follows (nodes that lose
// that race retry with the next offset), then published on channel as
// Publish does. It costs one JetStream round trip when this node stored
// the stream's previous message, two otherwise.
func (b *Broker) Append(ctx context.Context, stream, channel string, head, tail []byte) (offset uint64, epoch string, err error) {
	subj := b.historySubject(stream)
	s := &b.hist.stripe[maphash.String(b.hist.seed, stream)%historyStripe]
	s.mu.Lock()
	defer s.mu.Unlock()
	err = b.historyCall(ctx, func(ctx context.Context, nc *nats.Conn) error {
		var err error
		offset, epoch, err = b.appendLocked(ctx, nc, s, stream, subj, channel, head, tail)
		return err
	})
	if err != nil {
		return 0, "", fmt.Errorf("natsbroker: append to history %q: %w", stream, err)
	}
	return offset, epoch, nil
}

func (b *Broker) appendLocked(ctx context.Context, nc *nats.Conn, s *histStripe, stream, subj, channel string, head, tail []byte) (uint64, string, error) {
	b.hist.mu.Lock()
	gen := b.hist.gen
	_, ttl := b.historyBounds()
	b.hist.mu.Unlock()
	// A cached last message older than the TTL has expired: it says
	// nothing of the subject now.
	c := s.c
	last, known := c.last, c.stream == stream && c.gen == gen && time.Since(c.at) < ttl
	s.c = cachedLast{} // until stored: a failure leaves the subject unknown
	payload := make([]byte, 0, len(head)+offsetDigits+len(tail)+trailerLen)
	for range maxAppendAttempts {
		if !known {
			m, err := b.get(ctx, nc, getRequest{LastFor: subj})
			switch {
			case errors.Is(err, errNoMessage):
				last = kept{epoch: history.NewEpoch()} // empty: a new epoch
			case err != nil:
				return 0, "", err
			default:
				last = m
			}
		}
		offset := last.offset + 1
		payload = append(payload[:0], head...)
		payload = strconv.AppendUint(payload, offset, 10)
		payload = append(payload, tail...)
		payload = append(payload, history.Trailer(offset, last.epoch)...)
		seq, err := b.store(ctx, nc, subj, payload, last.seq)
		if errors.Is(err, errWrongLast) {
			known = false // another node stored first, or the subject was emptied
			continue
		}
		if err != nil {
			return 0, "", err
		}
		s.c = cachedLast{stream: stream, gen: gen, at: time.Now(),
			last: kept{seq: seq, prev: last.seq, offset: offset, epoch: last.epoch}}
		// Stored, so it may go live; under the stripe lock, so in order.
		if err := b.Publish(ctx, channel, payload); err != nil {
			return 0, "", fmt.Errorf("stored as offset %d but not published: %w", offset, err)
		}
		return offset, last.epoch, nil
	}
	return 0, "", fmt.Errorf("gave up after %d attempts lost to other nodes", maxAppendAttempts)
}

// store adds data to subj if the subject's last message is still expect
// (0: the subject is empty), and returns its stream sequence.
func (b *Broker) store(ctx context.Context, nc *nats.Conn, subj string, data []byte, expect uint64) (uint64, error) {
	exp := strconv.FormatUint(expect, 10)
	msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{hdrExpectLast: {exp}, hdrPrev: {exp}}}
	resp, err := nc.RequestMsgWithContext(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("store: %w", err)
	}
	var ack struct {
		Seq   uint64              `json:"seq"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return 0, fmt.Errorf("store: bad acknowledgement %q: %w", resp.Data, err)
	}
	switch {
	case ack.Error == nil && ack.Seq > 0:
		return ack.Seq, nil
	case ack.Error == nil:
		return 0, fmt.Errorf("store: bad acknowledgement %q", resp.Data)
	case ack.Error.ErrorCode == errCodeWrongLast || ack.Error.ErrorCode == errCodeWrongLastConstant:
		return 0, errWrongLast
	}
	return 0, fmt.Errorf("store: %w", ack.Error)
}

// Read implements switchboard.History, with JetStream direct gets: the
// newest and the oldest message of the stream, then what is asked for.
// Reading an empty stream stores its epoch; reading a quiet one keeps its
// epoch alive (see the top of this file).
func (b *Broker) Read(ctx context.Context, stream string, since uint64, limit int) (history.Page, error) {
	subj := b.historySubject(stream)
	var page history.Page
	err := b.historyCall(ctx, func(ctx context.Context, nc *nats.Conn) error {
		for range 5 {
			var err error
			if page, err = b.read(ctx, nc, subj, since, limit); !errors.Is(err, errMoved) {
				return err
			}
		}
		return errMoved
	})
	if err != nil {
		return history.Page{}, fmt.Errorf("natsbroker: read history %q: %w", stream, err)
	}
	return page, nil
}

func (b *Broker) read(ctx context.Context, nc *nats.Conn, subj string, since uint64, limit int) (history.Page, error) {
	last, err := b.get(ctx, nc, getRequest{LastFor: subj})
	if errors.Is(err, errNoMessage) {
		// Persist the epoch the first message will continue.
		epoch := history.NewEpoch()
		if _, err := b.store(ctx, nc, subj, history.Trailer(0, epoch), 0); err != nil {
			if errors.Is(err, errWrongLast) {
				return history.Page{}, errMoved
			}
			return history.Page{}, err
		}
		return history.Page{Epoch: epoch}, nil
	}
	if err != nil {
		return history.Page{}, err
	}
	if err := b.keepAlive(ctx, nc, subj, last); err != nil {
		return history.Page{}, err
	}
	page := history.Page{Offset: last.offset, Epoch: last.epoch}
	if last.offset == 0 {
		return page, nil // only the marker of a stream never written
	}
	// The oldest kept message; with no previous one, the last is it.
	first := last
	if last.prev != 0 {
		first, err = b.get(ctx, nc, getRequest{Seq: 1, NextFor: subj})
		if err != nil {
			return page, movedIfGone(err)
		}
		if first.epoch != last.epoch || first.seq > last.seq {
			return page, errMoved
		}
	}
	// A marker says which offset came before it: the messages after it
	// are all kept, as everything goes oldest first. The stream keeps a
	// little more than size (room for markers); size is what is shown.
	switch {
	case !first.marker:
		page.First = first.offset
	case first.offset < last.offset:
		page.First = first.offset + 1
	}
	if size := uint64(b.historySize()); page.First != 0 && last.offset >= size {
		page.First = max(page.First, last.offset-size+1)
	}
	if limit <= 0 || since >= last.offset || page.First == 0 {
		return page, nil
	}
	lo := max(since+1, page.First)
	hi := min(last.offset, lo+uint64(limit)-1)
	b.hist.mu.Lock()
	noBatch := b.hist.noBatch
	b.hist.mu.Unlock()
	var msgs []kept
	if back := last.offset - lo; back <= 1 || noBatch && back <= hi-page.First {
		msgs, err = b.readBack(ctx, nc, subj, last, lo, hi)
	} else {
		msgs, err = b.readForward(ctx, nc, subj, first, last, lo, hi)
	}
	if err != nil {
		return page, err
	}
	for i, m := range msgs {
		if m.epoch != last.epoch || i > 0 && m.offset != msgs[i-1].offset+1 {
			return page, errMoved
		}
		page.Payloads = append(page.Payloads, m.data)
	}
	if len(msgs) > 0 && msgs[0].offset > lo {
		page.First = msgs[0].offset // trimmed while read
	}
	return page, nil
}

func (b *Broker) historySize() int {
	b.hist.mu.Lock()
	defer b.hist.mu.Unlock()
	size, _ := b.historyBounds()
	return size
}

// keepAlive stores a marker repeating the newest offset and the epoch when
// the stream's last message is half way to expiring: a quiet stream that
// is still read (the hub reads the streams its connections follow every
// few seconds) keeps its epoch and offsets, though its messages expire.
// Another node storing first is as good.
func (b *Broker) keepAlive(ctx context.Context, nc *nats.Conn, subj string, last kept) error {
	b.hist.mu.Lock()
	_, ttl := b.historyBounds()
	b.hist.mu.Unlock()
	if last.at.IsZero() || time.Since(last.at) < ttl/2 {
		return nil
	}
	_, err := b.store(ctx, nc, subj, history.Trailer(last.offset, last.epoch), last.seq)
	if errors.Is(err, errWrongLast) {
		return nil
	}
	return err
}

func movedIfGone(err error) error {
	if errors.Is(err, errNoMessage) {
		return errMoved
	}
	return err
}

// readBack walks from last down to offset lo by the previous-message
// sequences, one get each, and returns the messages lo..hi oldest first.
// A marker repeats the offset of the message before it.
func (b *Broker) readBack(ctx context.Context, nc *nats.Conn, subj string, last kept, lo, hi uint64) ([]kept, error) {
	var msgs []kept
	want := last.offset // the next message's offset, walking down
	for m := last; ; {
		if m.offset != want {
			return nil, errMoved
		}
		if !m.marker {
			if m.offset <= hi {
				msgs = append(msgs, m)
			}
			want--
		}
		if want < lo || m.prev == 0 {
			break
		}
		prev, err := b.get(ctx, nc, getRequest{Seq: m.prev})
		if errors.Is(err, errNoMessage) {
			break // trimmed meanwhile: the run starts later
		}
		if err != nil {
			return nil, err
		}
		if prev.subject != subj {
			return nil, errMoved
		}
		m = prev
	}
	slices.Reverse(msgs)
	return msgs, nil
}

// readForward reads offsets lo..hi forwards by subject, batched where the
// server can. Offset o is at a sequence of at least first.seq+o-first.offset
// (one message at least per offset since first, markers aside).
func (b *Broker) readForward(ctx context.Context, nc *nats.Conn, subj string, first, last kept, lo, hi uint64) ([]kept, error) {
	var msgs []kept
	from := first.seq + (lo - first.offset)
	skip := lo - first.offset // at most this many below lo may follow from
	if first.offset == lo && !first.marker {
		msgs, from, skip = append(msgs, first), first.seq+1, 0
	}
	for from <= last.seq && uint64(len(msgs)) < hi-lo+1 {
		want := hi - lo + 1 - uint64(len(msgs)) + skip
		batch, upTo, err := b.getBatch(ctx, nc, getRequest{Seq: from, NextFor: subj, Batch: int(min(want, 10000)), UpToSeq: last.seq})
		if err != nil {
			return nil, err
		}
		if len(batch) == 0 {
			break
		}
		for _, m := range batch {
			if !m.marker && m.offset >= lo && m.offset <= hi {
				msgs = append(msgs, m)
			}
		}
		from, skip = upTo+1, 0
	}
	return msgs, nil
}
