// A browser page: the DOM's WebSocket fits the WebSocket option, and the
// URL may be left out (the page's own host).

import { Switchboard } from '../static/switchboard.js';

const onPage = new Switchboard({ user: 'alice' });
const explicit = new Switchboard(`wss://${location.host}/ws`, { WebSocket, token: 'eyJhbGciOi…' });
const passed = new Switchboard('wss://rt.example.com/ws', { WebSocket: globalThis.WebSocket });

onPage.on('message', (m) => {
  const li = document.createElement('li');
  li.textContent = `${m.from}: ${JSON.stringify(m.data)}`;
  document.body.append(li);
});

// @ts-expect-error the URL is a string, not a URL object
new Switchboard(new URL('wss://rt.example.com/ws'));

export { explicit, passed };
