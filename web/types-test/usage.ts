// Every public method, option and event of switchboard.js, used the way an
// application would, against switchboard.d.ts. Never run: `tsc --noEmit`
// checks it (e2e/types_test.go). Each `@ts-expect-error` line is wrong usage
// that must stay rejected; tsc fails when one of them type-checks.

import Default, {
  Switchboard,
  SwitchboardError,
  type AckFrame,
  type BroadcastMessageFrame,
  type CloseDetail,
  type DirectMessageFrame,
  type ErrorDetail,
  type ErrorFrame,
  type JoinAckFrame,
  type JoinOptions,
  type MessageFrame,
  type Position,
  type PresenceChangeDetail,
  type PresenceDetail,
  type PresenceDiffFrame,
  type ResetDetail,
  type RoomMessageFrame,
  type ServerFrame,
  type StateDetail,
  type Transport,
  type TransportDetail,
  type SwitchboardErrorCode,
  type SwitchboardEvent,
  type SwitchboardEventMap,
  type SwitchboardOptions,
  type SwitchboardState,
  type WebSocketLike,
  type WelcomeFrame,
} from '../static/switchboard.js';

// ---- type-level helpers ----

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
/** Compiles only when A and B are the same type. */
function same<A, B>(ok: Equal<A, B>): void {
  void ok;
}
function use(...values: unknown[]): void {
  void values;
}

// ---- WebSocket implementations ----

// What a hand-written implementation needs (Node without a global WebSocket).
class MinimalSocket implements WebSocketLike {
  readyState = 0;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: (() => void) | null = null;
  constructor(
    readonly url: string,
    readonly protocols?: string | string[],
  ) {}
  send(data: string): void {
    use(data);
  }
  close(code?: number, reason?: string): void {
    use(code, reason);
  }
}

// The shape of the npm package ws: a wider constructor and send.
class WsLike {
  static readonly OPEN = 1;
  readonly readyState: 0 | 1 | 2 | 3 = 0;
  constructor(address: string | { href: string }, protocols?: string | string[], options?: { handshakeTimeout?: number }) {
    use(address, protocols, options);
  }
  send(data: string | Uint8Array, cb?: (err?: Error) => void): void {
    use(data, cb);
  }
  close(code?: number, data?: string | Uint8Array): void {
    use(code, data);
  }
  terminate(): void {}
}

// What the client needs of an EventSource.
class MinimalEventSource {
  constructor(url: string) {
    use(url);
  }
  close(): void {}
  addEventListener(type: string, listener: (ev: { data: string }) => void): void {
    use(type, listener);
  }
}

// ---- construction ----

const options: SwitchboardOptions = {
  token: 'eyJhbGciOi…',
  user: 'alice',
  WebSocket: MinimalSocket,
  autoConnect: false,
  requestTimeout: 5000,
  connectTimeout: 5000,
  backoffBase: 250,
  backoffCap: 10000,
  stableAfter: 5000,
  noReconnectCodes: [4002, 4003],
  protocols: ['switchboard.v1'],
  transport: 'auto',
  sseURL: 'http://127.0.0.1:8080/sse',
  EventSource: MinimalEventSource,
  fetch: async (url, init) => {
    use(url, init.method, init.body, init.headers['Switchboard-Session']);
    return { status: 204 };
  },
};
const sb = new Switchboard('ws://127.0.0.1:8080/ws', options);
const sb2 = new Switchboard('ws://127.0.0.1:8080/ws', { WebSocket: WsLike, user: 'bob' });
const sb3 = new Default({ WebSocket: MinimalSocket, token: undefined, user: 'carol' }); // options only: the page's host
const sb4 = new Switchboard(); // in a browser page
same<typeof Default, typeof Switchboard>(true);
use(sb2, sb3, sb4);

// @ts-expect-error a URL object would be taken for the options
new Switchboard({ href: 'ws://127.0.0.1:8080/ws' } as unknown as URLLike, options);
type URLLike = { href: string; toString(): string };
// @ts-expect-error unknown option (a misspelt user)
new Switchboard('ws://h/ws', { usr: 'alice' });
// @ts-expect-error timeouts are milliseconds as numbers
new Switchboard('ws://h/ws', { requestTimeout: '10s' });
// @ts-expect-error an explicit undefined would replace the default (NaN backoff)
new Switchboard('ws://h/ws', { backoffCap: undefined });
// @ts-expect-error close codes are numbers
new Switchboard('ws://h/ws', { noReconnectCodes: ['4002'] });
// @ts-expect-error not a WebSocket implementation
new Switchboard('ws://h/ws', { WebSocket: class {} });
// @ts-expect-error no such transport
new Switchboard('ws://h/ws', { transport: 'long-polling' });
new Switchboard('ws://h/ws', { transport: 'sse', EventSource: MinimalEventSource });
// @ts-expect-error the URL comes first
new Switchboard(options, 'ws://h/ws');

// ---- properties ----

const state: SwitchboardState = sb.state;
same<SwitchboardState, 'connecting' | 'open' | 'reconnecting' | 'closed'>(true);
// @ts-expect-error no such state
if (sb.state === 'opened') use(state);
// @ts-expect-error read-only
sb.state = 'open';
const url: string = sb.url;
const transport: Transport = sb.transport;
same<Transport, 'websocket' | 'sse'>(true);
// @ts-expect-error read-only
sb.transport = 'sse';
use(transport);
const welcome: WelcomeFrame | null = sb.welcome;
if (welcome) {
  const { conn, user, ping_interval, pong_timeout, max_message_bytes } = welcome;
  same<typeof ping_interval, number>(true);
  use(url, conn, user, pong_timeout, max_message_bytes);
}
// @ts-expect-error null while not open
use(sb.welcome.user);

// ---- events ----

const offMessage: () => void = sb.on('message', (m) => {
  same<typeof m, MessageFrame>(true);
  use(m.from, m.id, m.ts, m.offset);
  // @ts-expect-error data is whatever JSON the sender wrote: narrow it first
  use(m.data.text);
  const data = m.data;
  if (data && typeof data === 'object' && 'text' in data && typeof data.text === 'string') use(data.text);
  if (typeof m.room === 'string') {
    same<typeof m, RoomMessageFrame>(true);
  } else if (typeof m.to === 'string') {
    same<typeof m, DirectMessageFrame>(true);
  } else {
    same<typeof m, BroadcastMessageFrame>(true);
    const yes: true = m.broadcast;
    use(yes);
  }
});
offMessage();

sb.on('open', (w) => same<typeof w, WelcomeFrame>(true));
sb.on('reset', (r) => {
  same<typeof r, ResetDetail>(true);
  const offset: number | undefined = r.offset;
  const epoch: string | undefined = r.epoch;
  use(r.room, offset, epoch);
});
sb.on('join', ({ room, user }) => use(room, user));
sb.on('leave', (d) => same<typeof d, PresenceChangeDetail>(true));
sb.on('presence', ({ room, users }) => {
  same<typeof users, string[]>(true);
  use(room);
});
sb.on('error', (e) => {
  same<typeof e, ErrorDetail>(true);
  same<typeof e.code, SwitchboardErrorCode>(true);
  use(e.ref, e.message, e.room);
});
sb.on('close', ({ code, reason, transport }: CloseDetail) => use(code, reason, transport));
sb.on('transport', (d) => {
  same<typeof d, TransportDetail>(true);
  same<typeof d.transport, Transport>(true);
});
sb.on('state', (s) => {
  same<typeof s, StateDetail>(true);
  same<typeof s.transport, Transport>(true);
  same<typeof s.state, SwitchboardState>(true);
  // @ts-expect-error only some states carry a delay
  use(s.delay);
  switch (s.state) {
    case 'reconnecting': {
      const delay: number = s.delay;
      use(delay, s.code, s.reason);
      break;
    }
    case 'closed':
      use(s.code, s.reason);
      break;
    case 'connecting':
    case 'open':
      // @ts-expect-error no close code while connecting or open
      use(s.code);
      break;
  }
});

function onPresence(d: PresenceDetail): void {
  use(d.users.length);
}
sb.on('presence', onPresence);
sb.off('presence', onPresence);
const cancel: () => void = sb.once('open', (w) => use(w.conn));
cancel();
sb.once('state', ({ state }) => use(state));

same<SwitchboardEvent, 'open' | 'message' | 'reset' | 'join' | 'leave' | 'presence' | 'error' | 'close' | 'state' | 'transport'>(true);
same<SwitchboardEventMap['join'], SwitchboardEventMap['leave']>(true);

// @ts-expect-error no such event
sb.on('mesage', () => {});
// @ts-expect-error presence details have users, not user
sb.on('presence', ({ user }) => use(user));
// @ts-expect-error a listener for another event's detail
sb.on('message', onPresence);
// @ts-expect-error off needs the event's listener type too
sb.off('join', onPresence);
// @ts-expect-error the event type is required
sb.once((w: WelcomeFrame) => use(w));

// ---- requests ----

async function requests(): Promise<void> {
  sb.connect();

  const users = await sb.join('lobby');
  same<typeof users, string[]>(true);
  await sb.join('chat:42', { echo: false });
  const saved: Position | null = sb.position('h:room');
  if (saved) {
    const opts: JoinOptions = { since: saved.offset, epoch: saved.epoch };
    await sb.join('h:room', opts);
    const epoch: string | null = saved.epoch;
    use(epoch);
  }
  await sb.join('h:room', { since: null, epoch: null, echo: true });

  const published: AckFrame = await sb.publish('lobby', { text: 'hi' });
  const sent = await sb.send('bob', ['any', 'json', 1, true, null]);
  same<typeof sent, AckFrame>(true);
  await sb.publish('lobby', 'text');
  await sb.publish('lobby', 42);
  await sb.publish('lobby', null);
  const left = await sb.leave('lobby');
  same<typeof left, AckFrame>(true);
  use(published.ref, left.type);

  const who = await sb.presence('lobby');
  same<typeof who, string[]>(true);
  const known: string[] = sb.usersIn('lobby');
  const rooms: string[] = sb.joinedRooms();
  use(known, rooms);

  try {
    await sb.publish('lobby', { text: 'again' });
  } catch (err) {
    if (err instanceof SwitchboardError) {
      same<typeof err.code, SwitchboardErrorCode>(true);
      if (err.code === 'not_joined' || err.code === 'timeout' || err.code === 'disconnected' || err.code === 'closed') use(err.message);
      const name: 'SwitchboardError' = err.name;
      use(name);
      // @ts-expect-error no such code
      if (err.code === 'forbiden') use(err);
    }
  }
  sb.close();

  // @ts-expect-error room names are strings
  await sb.join(42);
  // @ts-expect-error since is an offset number
  await sb.join('h:room', { since: '118' });
  // @ts-expect-error join resolves with user ids
  const wrong: number[] = await sb.join('lobby');
  use(wrong);
  // @ts-expect-error data is required
  await sb.publish('lobby');
  // @ts-expect-error undefined is no JSON value (the frame would lack data)
  await sb.send('bob', undefined);
  // @ts-expect-error presence resolves with user ids, not a frame
  const frame: PresenceFrameLike = await sb.presence('lobby');
  use(frame);
  // @ts-expect-error position may be null
  use(sb.position('h:room').offset);
  // @ts-expect-error usersIn is synchronous
  await sb.usersIn('lobby').then(use);
}
type PresenceFrameLike = { type: 'presence'; users: string[] };
use(requests);

// ---- errors ----

const e = new SwitchboardError('timeout', 'join timed out after 10000 ms');
const plain: Error = e;
const e2 = new SwitchboardError('forbidden');
use(plain, e2.code);
// @ts-expect-error not an error code
new SwitchboardError('nope');

// ---- frames ----

function handle(f: ServerFrame): void {
  switch (f.type) {
    case 'welcome':
      use(f.conn, f.max_message_bytes);
      break;
    case 'message':
      use(f.data, f.offset);
      break;
    case 'join':
    case 'leave':
      use(f.room, f.user);
      break;
    case 'presence_diff': {
      const d: PresenceDiffFrame = f;
      use(d.joins, d.leaves);
      break;
    }
    case 'presence':
      use(f.users);
      break;
    case 'ack':
      if ('users' in f) {
        const ack: JoinAckFrame = f;
        use(ack.users, ack.offset, ack.epoch, ack.recovered);
        for (const m of ack.messages ?? []) use(m.id);
      }
      break;
    case 'error': {
      const err: ErrorFrame = f;
      use(err.ref, err.code, err.message);
      // @ts-expect-error servers send only their own codes
      if (err.code === 'timeout') use(err);
      break;
    }
    case 'ping':
    case 'pong':
      break;
    default: {
      const none: never = f;
      use(none);
    }
  }
}
use(handle);
