// Package loadgen is a deliberately small WebSocket load client for the
// switchboard bench: raw TCP, the RFC 6455 opening handshake, and frame
// reads and (masked) writes, with no per-connection buffers beyond what a
// frame needs. It exists so that thousands of connections cost the load
// generator little, leaving the measured CPU and memory to the server.
//
// It is a client, not a part of the server: it must not import any other
// package of the project (internal/layers checks).
package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// WebSocket opcodes (RFC 6455 5.2).
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

var noDeadline time.Time

const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxFrame bounds one inbound message so that a misbehaving server cannot
// make the load client allocate without limit.
const maxFrame = 16 << 20

// keepBuf is the largest read buffer a connection keeps between frames;
// larger ones (a presence snapshot of a big room) are dropped after use.
const keepBuf = 8 << 10

// Conn is a client WebSocket connection. Reads must come from one goroutine;
// writes may come from any (they are serialized).
type Conn struct {
	nc   net.Conn
	br   *bufio.Reader
	rbuf []byte
	// ctl holds the payload of the last control frame, in ctlBuf.
	ctl    []byte
	ctlBuf [125]byte

	wmu  sync.Mutex
	wbuf []byte

	// deflate says permessage-deflate was negotiated: messages with RSV1
	// are inflated (the server compresses each on its own).
	deflate  bool
	inflated []byte
}

// CloseError is returned by ReadMessage when the server sent a close frame.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string { return fmt.Sprintf("closed by server: %d %s", e.Code, e.Reason) }

// Dial opens a TCP connection to addr (host:port) with d and performs the
// WebSocket handshake for target (path and query, e.g. "/ws?user=u").
func Dial(ctx context.Context, d *net.Dialer, addr, target string) (*Conn, error) {
	return DialDeflate(ctx, d, addr, target, false)
}

// DialDeflate is Dial that offers permessage-deflate when deflate is set,
// as browsers do. The client itself never compresses what it sends.
func DialDeflate(ctx context.Context, d *net.Dialer, addr, target string, deflate bool) (*Conn, error) {
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 2048)}
	if err := c.handshake(addr, target, deflate); err != nil {
		_ = nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(noDeadline)
	return c, nil
}

func (c *Conn) handshake(host, target string, deflate bool) error {
	var raw [16]byte
	binary.LittleEndian.PutUint64(raw[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(raw[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(raw[:])
	req := "GET " + target + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n"
	if deflate {
		req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	}
	req += "\r\n"
	if _, err := io.WriteString(c.nc, req); err != nil {
		return err
	}
	status, err := c.br.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 101")) {
		return fmt.Errorf("handshake: %s", bytes.TrimSpace(status))
	}
	sum := sha1.Sum([]byte(key + wsGUID))
	want := base64.StdEncoding.EncodeToString(sum[:])
	accepted := false
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("handshake headers: %w", err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Accept")) {
			accepted = string(bytes.TrimSpace(value)) == want
		}
		if ok && deflate && bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Extensions")) {
			c.deflate = bytes.HasPrefix(bytes.TrimSpace(value), []byte("permessage-deflate"))
		}
	}
	if !accepted {
		return errors.New("handshake: missing or wrong Sec-WebSocket-Accept")
	}
	return nil
}

// ReadMessage returns the next data message. It answers WebSocket pings
// itself and returns a *CloseError when the server closes. The returned
// slice is valid until the next call.
func (c *Conn) ReadMessage() (op byte, payload []byte, err error) {
	if cap(c.rbuf) > keepBuf {
		c.rbuf = nil
	}
	msg := c.rbuf[:0]
	var msgOp byte
	inMsg, compressed := false, false
	for {
		fin, fop, rsv1, err := c.readFrameInto(&msg, inMsg)
		if err != nil {
			return 0, nil, err
		}
		switch fop {
		case OpPing:
			if err := c.WriteFrame(OpPong, c.ctl); err != nil {
				return 0, nil, err
			}
			continue
		case OpPong:
			continue
		case OpClose:
			ce := &CloseError{Code: 1005}
			if len(c.ctl) >= 2 {
				ce.Code = int(binary.BigEndian.Uint16(c.ctl))
				ce.Reason = string(c.ctl[2:])
			}
			_ = c.WriteFrame(OpClose, c.ctl[:min(2, len(c.ctl))])
			return 0, nil, ce
		case OpContinuation:
			if !inMsg {
				return 0, nil, errors.New("unexpected continuation frame")
			}
		default:
			if inMsg {
				return 0, nil, errors.New("new message inside a fragmented one")
			}
			msgOp, inMsg, compressed = fop, true, rsv1
		}
		if rsv1 && (!c.deflate || fop == OpContinuation) {
			return 0, nil, errors.New("RSV1 without permessage-deflate, or on a continuation frame")
		}
		if fin {
			c.rbuf = msg
			if compressed {
				out, err := inflate(c.inflated[:0], msg)
				if err != nil {
					return 0, nil, err
				}
				c.inflated = out
				if cap(c.inflated) > keepBuf {
					c.inflated = nil
				}
				return msgOp, out, nil
			}
			return msgOp, msg, nil
		}
	}
}

// readFrameInto reads one frame. Data payloads are appended to *msg;
// control payloads go to c.ctl.
func (c *Conn) readFrameInto(msg *[]byte, inMsg bool) (fin bool, op byte, rsv1 bool, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
		return false, 0, false, err
	}
	fin, op, rsv1 = hdr[0]&0x80 != 0, hdr[0]&0x0F, hdr[0]&0x40 != 0
	if hdr[1]&0x80 != 0 {
		return false, 0, false, errors.New("masked frame from server")
	}
	n := uint64(hdr[1] & 0x7F)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, false, err
		}
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(c.br, b[:]); err != nil {
			return false, 0, false, err
		}
		n = binary.BigEndian.Uint64(b[:])
	}
	if op >= OpClose {
		if n > 125 || !fin {
			return false, 0, false, errors.New("bad control frame")
		}
		c.ctl = c.ctlBuf[:n]
		_, err := io.ReadFull(c.br, c.ctl)
		return fin, op, rsv1, err
	}
	if n+uint64(len(*msg)) > maxFrame {
		return false, 0, false, fmt.Errorf("message over %d bytes", maxFrame)
	}
	start := len(*msg)
	*msg = append(*msg, make([]byte, n)...)
	_, err = io.ReadFull(c.br, (*msg)[start:])
	return fin, op, rsv1, err
}

// WriteText sends one text message.
func (c *Conn) WriteText(p []byte) error { return c.WriteFrame(OpText, p) }

// WriteFrame sends one masked, final frame.
func (c *Conn) WriteFrame(op byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	b := c.wbuf[:0]
	b = append(b, 0x80|op)
	switch n := len(p); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	mask := rand.Uint32()
	var key [4]byte
	binary.LittleEndian.PutUint32(key[:], mask)
	b = append(b, key[:]...)
	start := len(b)
	b = append(b, p...)
	maskBytes(b[start:], key)
	_, err := c.nc.Write(b)
	if cap(b) <= keepBuf {
		c.wbuf = b
	} else {
		c.wbuf = nil
	}
	return err
}

func maskBytes(b []byte, key [4]byte) {
	k8 := uint64(binary.LittleEndian.Uint32(key[:]))
	k8 |= k8 << 32
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k8)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[i&3]
	}
}

// Close closes the TCP connection without a closing handshake.
func (c *Conn) Close() error { return c.nc.Close() }
