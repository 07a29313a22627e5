// Switchboard browser client: one WebSocket, automatic pong, requests with ids
// answered by promises, and reconnection with backoff.
export class Switchboard {
  constructor(url, { onMessage, onEvent, onState } = {}) {
    this.url = url;
    this.onMessage = onMessage || (() => {});
    this.onEvent = onEvent || (() => {});
    this.onState = onState || (() => {});
    this.nextId = 1;
    this.waiting = new Map();
    this.rooms = new Set();
    this.closedByUser = false;
    this.backoff = 500;
    this.connect();
  }

  connect() {
    this.onState('connecting');
    const ws = new WebSocket(this.url, ['switchboard.v1']);
    this.ws = ws;
    ws.onmessage = (ev) => this.receive(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      for (const [, w] of this.waiting) w.reject(new Error('connection closed'));
      this.waiting.clear();
      this.onState('closed', ev.code, ev.reason);
      if (!this.closedByUser && ev.code !== 4002 && ev.code !== 4003) {
        setTimeout(() => this.connect(), this.backoff);
        this.backoff = Math.min(this.backoff * 2, 10000);
      }
    };
  }

  receive(frame) {
    switch (frame.type) {
      case 'welcome':
        this.backoff = 500;
        this.welcome = frame;
        this.onState('open', frame);
        for (const room of this.rooms) this.request({ type: 'join', room }).catch(() => {});
        return;
      case 'ping':
        this.ws.send('{"type":"pong"}');
        return;
      case 'ack':
      case 'error': {
        const w = frame.ref && this.waiting.get(frame.ref);
        if (w) {
          this.waiting.delete(frame.ref);
          frame.type === 'ack' ? w.resolve(frame) : w.reject(Object.assign(new Error(frame.message), { code: frame.code }));
          return;
        }
        this.onEvent(frame);
        return;
      }
      case 'message':
        this.onMessage(frame);
        return;
      default:
        this.onEvent(frame);
    }
  }

  request(frame) {
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  join(room) { this.rooms.add(room); return this.request({ type: 'join', room }); }
  leave(room) { this.rooms.delete(room); return this.request({ type: 'leave', room }); }
  publish(room, data) { return this.request({ type: 'publish', room, data }); }
  send(to, data) { return this.request({ type: 'send', to, data }); }
  presence(room) { return this.request({ type: 'presence', room }); }
  close() { this.closedByUser = true; this.ws.close(1000, 'bye'); }
}
