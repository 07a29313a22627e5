// A TCP tap for the end-to-end tests: see Tap.

import assert from 'node:assert/strict';
import net from 'node:net';

// Tap: a TCP proxy to target (a URL) that parses the WebSocket frames
// going each way, so a test sees what is on the wire: RSV1 (compressed),
// masking, lengths.
export class Tap {
  constructor(target) {
    this.target = target;
    this.server = net.createServer((c) => this.link(c));
    this.clientFrames = [];      // first frames of client data messages: {rsv1}
    this.lastServerData = null;  // the last server data frame: {rsv1, len}
    this.serverRSV1 = 0;
    this.sockets = new Set();
  }
  listen() { return new Promise((res) => this.server.listen(0, '127.0.0.1', () => res(this.server.address().port))); }
  close() {
    for (const s of this.sockets) s.destroy();
    return new Promise((res) => this.server.close(res));
  }
  link(c) {
    const s = net.connect(Number(this.target.port), this.target.hostname);
    this.sockets.add(c).add(s);
    const link = { plain: false };
    const up = parser(true, link, (f) => { if (f.op === 1 || f.op === 2) this.clientFrames.push(f); });
    const down = parser(false, link, (f) => {
      if (f.op === 1 || f.op === 2) { this.lastServerData = f; if (f.rsv1) this.serverRSV1++; }
    });
    c.on('data', (d) => { up(d); s.write(d); });
    s.on('data', (d) => { down(d); c.write(d); });
    c.on('close', () => { s.destroy(); this.sockets.delete(c); });
    s.on('close', () => { c.destroy(); this.sockets.delete(s); });
    c.on('error', () => s.destroy());
    s.on('error', () => c.destroy());
  }
}

// parser returns a function fed with the bytes of one direction; it skips
// the HTTP handshake and calls onFrame with each frame's header fields.
// A connection that is not upgraded (a page load) is forwarded unparsed.
function parser(fromClient, link, onFrame) {
  let buf = Buffer.alloc(0);
  let inHTTP = true;
  return (chunk) => {
    if (link.plain) return;
    buf = Buffer.concat([buf, chunk]);
    if (inHTTP) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      if (!fromClient && !/^HTTP\/1\.1 101/.test(buf.subarray(0, 12).toString())) { link.plain = true; return; }
      buf = buf.subarray(end + 4);
      inHTTP = false;
    }
    for (;;) {
      if (buf.length < 2) return;
      let len = buf[1] & 0x7f, off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      if (buf[1] & 0x80) off += 4;
      if (buf.length < off + len) return;
      assert.equal(Boolean(buf[1] & 0x80), fromClient, 'masking');
      onFrame({ fin: Boolean(buf[0] & 0x80), rsv1: Boolean(buf[0] & 0x40), rsv23: buf[0] & 0x30, op: buf[0] & 0x0f, len });
      buf = buf.subarray(off + len);
    }
  };
}

