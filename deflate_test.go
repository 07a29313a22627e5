package switchboard_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboardhq/switchboard"
)

// deflateClient speaks WebSocket over a bare socket so a test sees each
// frame's RSV1 bit; compressed payloads are made and read with the
// standard library's compress/flate, independent of the server's.
type deflateClient struct {
	t    *testing.T
	nc   net.Conn
	br   *bufio.Reader
	resp *http.Response
}

func dialDeflate(t *testing.T, s *testServer, user, offer string) *deflateClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.addr, wait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET /ws?user=" + user + " HTTP/1.1\r\nHost: " + s.addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n"
	if offer != "" {
		req += "Sec-WebSocket-Extensions: " + offer + "\r\n"
	}
	if _, err := nc.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	dc := &deflateClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	_ = nc.SetReadDeadline(time.Now().Add(wait))
	dc.resp, err = http.ReadResponse(dc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if dc.resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: status %d", dc.resp.StatusCode)
	}
	if _, _, p := dc.read(); !bytes.Contains(p, []byte(`"welcome"`)) {
		t.Fatalf("first frame %q, want the welcome", p)
	}
	return dc
}

// read returns the next frame that is not an application ping, with its
// first header byte and its payload, inflated if RSV1 is set.
func (d *deflateClient) read() (b0 byte, wire int, payload []byte) {
	d.t.Helper()
	for {
		_ = d.nc.SetReadDeadline(time.Now().Add(wait))
		var hdr [2]byte
		if _, err := io.ReadFull(d.br, hdr[:]); err != nil {
			d.t.Fatalf("read: %v", err)
		}
		n := uint64(hdr[1] & 0x7f)
		switch n {
		case 126:
			var b [2]byte
			_, _ = io.ReadFull(d.br, b[:])
			n = uint64(binary.BigEndian.Uint16(b[:]))
		case 127:
			var b [8]byte
			_, _ = io.ReadFull(d.br, b[:])
			n = binary.BigEndian.Uint64(b[:])
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(d.br, p); err != nil {
			d.t.Fatalf("read payload: %v", err)
		}
		if hdr[0]&0x40 != 0 {
			r := flate.NewReader(io.MultiReader(bytes.NewReader(p), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff")))
			out, err := io.ReadAll(r)
			if err != nil {
				d.t.Fatalf("compressed frame does not inflate: %v", err)
			}
			p = out
		}
		if bytes.Equal(p, []byte(`{"type":"ping"}`)) {
			continue
		}
		return hdr[0], int(n), p
	}
}

// closeCode reads until the server's close frame and returns its code.
func (d *deflateClient) closeCode() int {
	d.t.Helper()
	for {
		b0, _, p := d.read()
		if b0&0x0f == 0x8 {
			if len(p) < 2 {
				return 1005
			}
			return int(binary.BigEndian.Uint16(p))
		}
	}
}

// write sends a masked text frame, compressed (RSV1) when deflate is set.
func (d *deflateClient) write(b0 byte, text []byte, deflate bool) {
	d.t.Helper()
	payload := text
	if deflate {
		var b bytes.Buffer
		w, _ := flate.NewWriter(&b, flate.DefaultCompression)
		_, _ = w.Write(text)
		_ = w.Flush()
		payload = bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
		b0 |= 0x40
	}
	rc := &rawClient{t: d.t, nc: d.nc}
	if err := rc.writeFrame(b0, payload); err != nil {
		d.t.Fatalf("write: %v", err)
	}
}

func (d *deflateClient) send(v map[string]any, deflate bool) {
	d.t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		d.t.Fatal(err)
	}
	d.write(0x81, b, deflate)
}

// expectType reads frames until one of type typ.
func (d *deflateClient) expectType(typ string) (b0 byte, wire int, f frame) {
	d.t.Helper()
	for {
		b0, wire, p := d.read()
		if err := json.Unmarshal(p, &f); err != nil {
			d.t.Fatalf("frame %q: %v", p, err)
		}
		if f.str("type") == typ {
			return b0, wire, f
		}
	}
}

func bigData(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "row %d: status healthy, cpu %d%%; ", i, i*7%100)
	}
	return b.String()
}

const pmdOffer = "permessage-deflate; client_max_window_bits"

func TestCompressionNegotiatedAndUsed(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{Compression: switchboard.CompressionOptions{Enabled: true}})
		comp := dialDeflate(t, s, "alice", pmdOffer)
		if got := comp.resp.Header.Get("Sec-WebSocket-Extensions"); got != "permessage-deflate; server_no_context_takeover; client_no_context_takeover" {
			t.Fatalf("Sec-WebSocket-Extensions %q", got)
		}
		plain := dialDeflate(t, s, "bob", "")
		if got := plain.resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
			t.Fatalf("answered %q to a client that offered nothing", got)
		}
		small := dialDeflate(t, s, "carol", "permessage-deflate; server_max_window_bits=9")
		if got := small.resp.Header.Get("Sec-WebSocket-Extensions"); !strings.HasSuffix(got, "; server_max_window_bits=9") {
			t.Fatalf("Sec-WebSocket-Extensions %q, want the window echoed", got)
		}
		for _, c := range []*deflateClient{comp, plain, small} {
			c.send(map[string]any{"type": "join", "room": "r", "id": "j"}, false)
			if b0, _, _ := c.expectType("ack"); b0&0x40 != 0 {
				t.Fatal("a small ack was compressed")
			}
		}

		// A large message is compressed for those that negotiated it, in
		// either direction, and arrives intact everywhere.
		long := bigData(4000)
		comp.send(map[string]any{"type": "publish", "room": "r", "data": long}, true)
		for _, c := range []*deflateClient{comp, plain, small} {
			b0, wire, f := c.expectType("message")
			if f["data"] != long {
				t.Fatalf("data arrived as %.60q...", f["data"])
			}
			if want := c != plain; (b0&0x40 != 0) != want || (want && wire > len(long)/2) {
				t.Fatalf("RSV1 %v with %d bytes on the wire for %d bytes of data (compressed expected: %v)", b0&0x40 != 0, wire, len(long), want)
			}
		}
		// A small one goes as it is, even to those that could inflate it.
		comp.send(map[string]any{"type": "publish", "room": "r", "data": "hi"}, true)
		if b0, _, f := small.expectType("message"); b0&0x40 != 0 || f["data"] != "hi" {
			t.Fatalf("small message: RSV1 %v, data %v", b0&0x40 != 0, f["data"])
		}
		if _, _, f := comp.expectType("message"); f["data"] != "hi" {
			t.Fatalf("own small message: %v", f)
		}
		plain.send(map[string]any{"type": "publish", "room": "r", "data": long}, false)
		if _, _, f := comp.expectType("message"); f["data"] != long {
			t.Fatal("an uncompressed publish did not reach a compressing client intact")
		}
		// Two publishes of the long text, each compressed once per window
		// size in use (15 and 9).
		k := s.hub.Counters()
		if k.ConnectionsCompressed != 2 || k.MessagesCompressed != 4 {
			t.Fatalf("ConnectionsCompressed %d, MessagesCompressed %d; want 2 and 4", k.ConnectionsCompressed, k.MessagesCompressed)
		}
	})
}

func TestCompressionViolationsClose(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{
			Compression: switchboard.CompressionOptions{Enabled: true},
			Limits:      switchboard.Limits{MaxMessageBytes: 2000},
		})
		cases := []struct {
			name  string
			offer string
			send  func(c *deflateClient)
			code  int
		}{
			{"compressed without negotiation", "", func(c *deflateClient) {
				c.send(map[string]any{"type": "ping"}, true)
			}, 1002},
			{"compressed control frame", pmdOffer, func(c *deflateClient) { c.write(0x89, []byte("x"), true) }, 1002},
			// 200 KB of spaces inflate from a few hundred bytes: the limit
			// applies to the inflated message.
			{"inflates past the limit", pmdOffer, func(c *deflateClient) {
				c.write(0x81, []byte(`{"type":"ping","id":"`+strings.Repeat(" ", 200000)+`"}`), true)
			}, 1009},
			{"corrupt data", pmdOffer, func(c *deflateClient) {
				rc := &rawClient{t: c.t, nc: c.nc}
				_ = rc.writeFrame(0xC1, []byte{0xff, 0xff, 0xff})
			}, 1007},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				c := dialDeflate(t, s, fmt.Sprintf("u%d", i), tc.offer)
				tc.send(c)
				if code := c.closeCode(); code != tc.code {
					t.Fatalf("closed %d, want %d", code, tc.code)
				}
			})
		}
	})
}

func TestCompressionOffByDefault(t *testing.T) {
	s := startStd(t, switchboard.Options{})
	c := dialDeflate(t, s, "alice", pmdOffer)
	if got := c.resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Fatalf("answered %q with compression off", got)
	}
}

// TestCompressionWithCoderWebsocket has an independent client library,
// with compression on, exchange large messages with the server.
func TestCompressionWithCoderWebsocket(t *testing.T) {
	s := startStd(t, switchboard.Options{Compression: switchboard.CompressionOptions{Enabled: true}})
	for _, mode := range []websocket.CompressionMode{websocket.CompressionContextTakeover, websocket.CompressionNoContextTakeover} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		c, resp, err := websocket.Dial(ctx, s.wsURL("user=w"), &websocket.DialOptions{CompressionMode: mode, HTTPClient: noKeepAlive})
		cancel()
		if err != nil {
			t.Fatalf("dial with compression mode %v: %v", mode, err)
		}
		if !strings.HasPrefix(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate") {
			t.Fatalf("mode %v: extensions %q", mode, resp.Header.Get("Sec-WebSocket-Extensions"))
		}
		cl := newClient(t, c)
		cl.expect("welcome")
		cl.join("r")
		for i := 0; i < 3; i++ {
			long := bigData(3000 + i)
			cl.send(map[string]any{"type": "publish", "room": "r", "data": long})
			if f := cl.expect("message"); f["data"] != long {
				t.Fatalf("mode %v: message %d came back changed", mode, i)
			}
		}
		cl.close()
	}
}

// TestCompressedJoinAckInBigRoom joins a room past PresenceBatchSize,
// where the ack carries the room's shared presence snapshot: compressed,
// it must still list every member.
func TestCompressedJoinAckInBigRoom(t *testing.T) {
	transports(t, func(t *testing.T, start starter) {
		s := start(t, switchboard.Options{
			Compression:           switchboard.CompressionOptions{Enabled: true},
			PresenceBatchSize:     2,
			PresenceBatchInterval: 20 * time.Millisecond,
		})
		var names []string
		var first *client
		for i := 0; i < 30; i++ {
			name := fmt.Sprintf("member-with-a-longish-name-%02d", i)
			names = append(names, name)
			c := dial(t, s, name)
			c.join("big")
			if first == nil {
				first = c
			}
		}
		// The snapshot is the room as of the last presence flush: wait for
		// the flush that announces the last member.
		for seen := false; !seen; {
			f := first.next()
			if f.str("type") == "presence_diff" {
				joins, _ := f["joins"].([]any)
				for _, j := range joins {
					seen = seen || j == names[len(names)-1]
				}
			}
		}
		for _, user := range []string{"late-1", "late-2"} {
			d := dialDeflate(t, s, user, pmdOffer)
			d.send(map[string]any{"type": "join", "room": "big", "id": "j"}, false)
			b0, wire, ack := d.expectType("ack")
			if b0&0x40 == 0 {
				t.Fatalf("%s: the ack with %d members went uncompressed (%d bytes): %v", user, len(names), wire, ack)
			}
			got := map[string]bool{}
			users, _ := ack["users"].([]any)
			for _, u := range users {
				got[u.(string)] = true
			}
			for _, n := range names {
				if !got[n] {
					t.Fatalf("%s: ack (%d bytes on the wire) lacks %s: %v", user, wire, n, ack["users"])
				}
			}
		}
	})
}
