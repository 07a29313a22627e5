package natsbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// getRequest is a JetStream direct get. Direct gets are answered by the
// stream itself (any replica), not queued behind the JetStream API.
type getRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	// Batch and UpToSeq need nats-server 2.11; older ones ignore them and
	// answer with one message.
	Batch     int    `json:"batch,omitempty"`
	UpToSeq   uint64 `json:"up_to_seq,omitempty"`
	NoHeaders bool   `json:"no_hdr,omitempty"`
}

func (b *Broker) directGetSubject() string {
	return "$JS.API.DIRECT.GET." + b.opts.HistoryStream
}

// get returns the one message req names, or errNoMessage.
func (b *Broker) get(ctx context.Context, nc *nats.Conn, req getRequest) (kept, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return kept{}, fmt.Errorf("direct get: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, directGetWait)
	defer cancel()
	resp, err := nc.RequestWithContext(rctx, b.directGetSubject(), body)
	if err != nil {
		return kept{}, b.directGetFailed(ctx, nc, err)
	}
	if err := getStatus(resp); err != nil {
		return kept{}, err
	}
	return parseKept(resp)
}

// getBatch returns up to req.Batch messages and the sequence of the last
// one, or fewer if the server does not batch (it then answers with the
// first one only, which is remembered). A batch is asked for without
// headers: the server rebuilds every stored message's headers to add its
// own, which costs more than all the rest, and nothing in them is needed
// (the end of the batch says where it stopped).
func (b *Broker) getBatch(ctx context.Context, nc *nats.Conn, req getRequest) ([]kept, uint64, error) {
	req.NoHeaders = true
	body, err := json.Marshal(req)
	if err != nil {
		return nil, 0, fmt.Errorf("direct get: %w", err)
	}
	// The answer is several messages: a request of its own, on an inbox
	// subscribed before asking (one connection keeps SUB before PUB).
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, fmt.Errorf("direct get: %w", err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := nc.PublishRequest(b.directGetSubject(), inbox, body); err != nil {
		return nil, 0, fmt.Errorf("direct get: %w", err)
	}
	rctx, cancel := context.WithTimeout(ctx, directGetWait)
	defer cancel()
	var out []kept
	for {
		resp, err := sub.NextMsgWithContext(rctx)
		if err != nil {
			return nil, 0, b.directGetFailed(ctx, nc, err)
		}
		switch err := getStatus(resp); {
		case errors.Is(err, errEndOfBatch):
			last, perr := strconv.ParseUint(resp.Header.Get(hdrLastSequence), 10, 64)
			if perr != nil {
				return nil, 0, fmt.Errorf("direct get: end of batch: %w", perr)
			}
			return out, last, nil
		case errors.Is(err, errNoMessage):
			return out, 0, nil
		case err != nil:
			return nil, 0, err
		}
		if resp.Header.Get(hdrSequence) != "" {
			// Headers despite no_hdr: a server before 2.11, which
			// answers one message at a time.
			m, err := parseKept(resp)
			if err != nil {
				return nil, 0, err
			}
			b.hist.mu.Lock()
			b.hist.noBatch = true
			b.hist.mu.Unlock()
			return append(out, m), m.seq, nil
		}
		m, err := parseTrailer(kept{data: resp.Data})
		if err != nil {
			return nil, 0, err
		}
		out = append(out, m)
	}
}

var errEndOfBatch = errors.New("end of batch")

// directGetWait bounds one direct get: servers before 2.10 do not answer
// a direct get of a stream that no longer exists (nor say no responders),
// so a silent one is checked against the stream's existence.
const directGetWait = 2 * time.Second

// directGetFailed wraps a failed direct get; a timeout on a stream that is
// gone becomes nats.ErrNoResponders, which makes the stream again.
func (b *Broker) directGetFailed(ctx context.Context, nc *nats.Conn, err error) error {
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		if js, jerr := jetstream.New(nc); jerr == nil {
			if _, serr := js.Stream(ctx, b.opts.HistoryStream); errors.Is(serr, jetstream.ErrStreamNotFound) {
				return fmt.Errorf("direct get: stream gone: %w", nats.ErrNoResponders)
			}
		}
	}
	return fmt.Errorf("direct get: %w", err)
}

// getStatus maps a direct get's status header to an error.
func getStatus(m *nats.Msg) error {
	if len(m.Data) > 0 || m.Header == nil {
		return nil
	}
	switch st := m.Header.Get("Status"); st {
	case "":
		return nil
	case "404":
		return errNoMessage
	case "204":
		return errEndOfBatch
	case "503":
		return nats.ErrNoResponders
	default:
		return fmt.Errorf("direct get: status %s %s", st, m.Header.Get("Description"))
	}
}

// parseKept reads a stored message: sequence and subject from the direct
// get's headers, previous sequence from ours, offset and epoch from the
// trailer.
func parseKept(m *nats.Msg) (kept, error) {
	k := kept{subject: m.Header.Get(hdrSubject), data: m.Data}
	var err error
	if k.seq, err = strconv.ParseUint(m.Header.Get(hdrSequence), 10, 64); err != nil {
		return kept{}, fmt.Errorf("direct get: sequence: %w", err)
	}
	if p := m.Header.Get(hdrPrev); p != "" {
		if k.prev, err = strconv.ParseUint(p, 10, 64); err != nil {
			return kept{}, fmt.Errorf("message %d: previous sequence: %w", k.seq, err)
		}
	}
	if ts := m.Header.Get(hdrTimeStamp); ts != "" {
		k.at, _ = time.Parse(time.RFC3339Nano, ts)
	}
	return parseTrailer(k)
}

// parseTrailer fills in k's offset and epoch from its data's trailer.
func parseTrailer(k kept) (kept, error) {
	if len(k.data) < trailerLen {
		return kept{}, fmt.Errorf("message %d has no history trailer", k.seq)
	}
	t := k.data[len(k.data)-trailerLen:]
	var err error
	if k.offset, err = strconv.ParseUint(string(t[:offsetDigits]), 10, 64); err != nil {
		return kept{}, fmt.Errorf("message %d: offset: %w", k.seq, err)
	}
	k.epoch = string(t[offsetDigits:])
	k.marker = len(k.data) == trailerLen // a message has its offset before the trailer too
	return k, nil
}
