package history

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Reader reads a stream's kept payloads. Every store implements it.
type Reader interface {
	// Read returns up to limit kept payloads of stream with an offset above
	// since, oldest first. limit 0 asks for the stream's state only. A
	// stream read before its first message gets its epoch then, so that
	// the messages that follow continue it.
	Read(ctx context.Context, stream string, since uint64, limit int) (Page, error)
}

// Page is what a Read found.
type Page struct {
	Payloads [][]byte // as published, oldest first
	// Offset is the newest offset of the stream (0 when it is empty) and
	// Epoch names the stream's current continuity.
	Offset uint64
	Epoch  string
	// First is the oldest offset still kept (0 when nothing is kept).
	First uint64
}

// The trailer closes every kept payload: the offset in 20 digits and the
// epoch in 16 characters, so that a broker script can build it without
// knowing what precedes it and a receiver can cut it off the end.
const (
	OffsetLen  = 20
	EpochLen   = 16
	TrailerLen = OffsetLen + EpochLen
)

// Trailer is what ends a kept payload: offset as 20 decimal digits,
// zero-padded, then the 16-character epoch.
func Trailer(offset uint64, epoch string) []byte {
	return appendTrailer(make([]byte, 0, TrailerLen), offset, epoch)
}

// appendTrailer appends the trailer of offset and epoch to dst.
func appendTrailer(dst []byte, offset uint64, epoch string) []byte {
	var digits [OffsetLen]byte
	d := strconv.AppendUint(digits[:0], offset, 10)
	for range OffsetLen - len(d) {
		dst = append(dst, '0')
	}
	return append(append(dst, d...), epoch...)
}

// NewEpoch returns a fresh random epoch of the length trailers carry.
func NewEpoch() string {
	b := make([]byte, EpochLen/2)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return hex.EncodeToString(b)
}

// ErrBadTrailer is returned by Split for a payload that does not end with
// a valid trailer.
var ErrBadTrailer = errors.New("history payload without a valid trailer")

// Split cuts the trailer off a kept payload: what precedes it, the offset
// and the epoch.
func Split(p []byte) (body []byte, offset uint64, epoch string, err error) {
	if len(p) < TrailerLen {
		return nil, 0, "", ErrBadTrailer
	}
	t := p[len(p)-TrailerLen:]
	offset, perr := strconv.ParseUint(string(t[:OffsetLen]), 10, 64)
	if perr != nil {
		return nil, 0, "", fmt.Errorf("%w: %v", ErrBadTrailer, perr)
	}
	return p[:len(p)-TrailerLen], offset, string(t[OffsetLen:]), nil
}

// Recoverable says whether a client that has everything up to since in
// epoch can be brought up to date from page.
func Recoverable(page Page, since uint64, epoch string) bool {
	switch {
	case since > page.Offset:
		return false // ahead of the stream: not this stream's history
	case since == page.Offset:
		// Nothing missed, in this epoch; a client with no epoch yet that
		// has nothing (0) has nothing to miss either.
		return epoch == page.Epoch || (since == 0 && epoch == "")
	case epoch != page.Epoch && (since != 0 || epoch != ""):
		return false // the stream started again since
	}
	return page.First != 0 && page.First <= since+1
}
