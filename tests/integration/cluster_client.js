'use strict';
// The JavaScript client (clients/js/wshub.js) as a subscriber driven by a Python
// test (test_cluster_failover.py): it connects to URL as USER, joins ROOMS, and
// reconnects and recovers on its own when its node dies. It prints one JSON line per
// event on stdout:
//   {"ev":"raw","m":{...}}      every frame the server sent, before the library's own
//                               duplicate filter (so the test sees duplicates if any)
//   {"ev":"message","m":{...}}  what the library hands to the application
//   {"ev":"connect"|"disconnect"|"joined"|"session"|"recovery_failed"|"state", ...}
//   {"ev":"ready"}              every room joined once
// and reads commands from stdin, one JSON line each: {"cmd":"close"} closes the client
// and exits 0. Not a test file itself (no .test.js): ctest does not run it alone.
//
// Usage: node cluster_client.js URL USER ROOM[,ROOM...]

const path = require('node:path');
const readline = require('node:readline');
const WebSocket = require('ws');

const [url, user, roomsArg] = process.argv.slice(2);
if (!url || !user || !roomsArg) {
  process.stderr.write('usage: node cluster_client.js URL USER ROOM[,ROOM...]\n');
  process.exit(2);
}
const rooms = roomsArg.split(',');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

// ws with a recorder: the library sets onmessage; this listener sees the same frames.
class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.on('message', (data) => {
      try {
        out({ ev: 'raw', m: JSON.parse(String(data)) });
      } catch {
        out({ ev: 'raw_unparsed', data: String(data) });
      }
    });
  }
}

(async () => {
  const lib = await import(path.join(__dirname, '..', '..', 'clients', 'js', 'wshub.js'));
  const c = new lib.WshubClient(url, {
    WebSocket: RecordingWebSocket,
    token: user,
    backoff: { initial: 100, max: 1000 },
    heartbeat: { interval: 2000, timeout: 3000 },
    requestTimeout: 15000,
  });
  for (const ev of ['connect', 'disconnect', 'joined', 'session', 'recovery_failed', 'state', 'close']) {
    c.on(ev, (...a) => out({ ev, a }));
  }
  c.on('message', (m) => out({ ev: 'message', m }));
  c.on('error', (e) => out({ ev: 'error', message: String(e && e.message) }));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch {
      return;
    }
    if (cmd.cmd === 'close') {
      c.close();
      out({ ev: 'closed' });
      process.exit(0);
    }
  });
  process.stdin.on('end', () => process.exit(0)); // the test went away
  c.open();
  await Promise.all(rooms.map((r) => c.join(r)));
  out({ ev: 'ready' });
})().catch((e) => {
  out({ ev: 'fatal', message: String(e && e.stack) });
  process.exit(1);
});
