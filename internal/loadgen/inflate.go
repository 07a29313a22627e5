package loadgen

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/klauspost/compress/flate"
)

// deflateTail ends a permessage-deflate message for the decompressor: the
// sync flush marker the sender removed (RFC 7692 7.2.2) and an empty final
// block, so the stream ends cleanly.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// inflater is pooled: a decompressor holds a 32 KiB window, too much to
// keep per load-client connection.
type inflater struct {
	fr  io.ReadCloser
	src bytes.Reader
}

var inflaters sync.Pool

// inflate appends the decompressed message p to dst.
func inflate(dst, p []byte) ([]byte, error) {
	inf, _ := inflaters.Get().(*inflater)
	if inf == nil {
		inf = &inflater{}
	}
	defer inflaters.Put(inf)
	inf.src.Reset(p)
	all := io.MultiReader(&inf.src, bytes.NewReader([]byte(deflateTail)))
	if inf.fr == nil {
		inf.fr = flate.NewReader(all)
	} else if err := inf.fr.(flate.Resetter).Reset(all, nil); err != nil {
		return nil, err
	}
	w := bytes.NewBuffer(dst)
	if _, err := io.Copy(w, io.LimitReader(inf.fr, maxFrame+1)); err != nil {
		return nil, err
	}
	if w.Len() > maxFrame {
		return nil, errors.New("inflated message over the limit")
	}
	return w.Bytes(), nil
}
