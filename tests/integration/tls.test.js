'use strict';
// wss:// with Node's ws over real TLS: a throwaway CA and a server certificate for
// 127.0.0.1/localhost made with the openssl CLI, the echo and hub flows, a 1 MiB
// message, TLS 1.2 and 1.3, ALPN, session resumption, the Origin check by scheme,
// and what a client that does not trust the CA sees.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const tls = require('node:tls');
const https = require('node:https');

const { HOST, startServer, connect, nextMessage, withTimeout, HubClient } =
  require('./hub_helpers');

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

// A CA and a leaf signed by it, in dir: ca.pem, server.pem (leaf then CA: a full
// chain), server.key.
function makeCerts(dir, { cn = 'wshub-test-server', serial = '1001' } = {}) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=wshub test CA'], dir);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', 'server.key', '-out', 'server.csr', '-subj', `/CN=${cn}`], dir);
  fs.writeFileSync(path.join(dir, 'ext.cnf'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' +
    'extendedKeyUsage=serverAuth\n');
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-set_serial', serial, '-days', '2', '-extfile', 'ext.cnf', '-out', 'leaf.pem'], dir);
  fs.writeFileSync(path.join(dir, 'server.pem'), Buffer.concat([
    fs.readFileSync(path.join(dir, 'leaf.pem')), fs.readFileSync(path.join(dir, 'ca.pem'))]));
  return {
    ca: fs.readFileSync(path.join(dir, 'ca.pem')),
    cert: path.join(dir, 'server.pem'),
    key: path.join(dir, 'server.key'),
  };
}

// The server object the hub helpers expect, with wss:// and https:// URLs.
function tlsView(srv, ca) {
  return {
    ...srv,
    wsUrl: (p = '/echo') => `wss://${HOST}:${srv.port}${p}`,
    httpUrl: `https://${HOST}:${srv.port}`,
    ca,
  };
}

function httpsGet(port, p, ca, headers = {}) {
  return withTimeout(new Promise((resolve, reject) => {
    const req = https.request({ host: HOST, port, path: p, ca, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.end();
  }), 5000, `GET https ${p}`);
}

async function tlsMetrics(port, ca) {
  const r = await httpsGet(port, '/metrics', ca);
  assert.equal(r.status, 200);
  const map = new Map();
  for (const line of r.body.split('\n')) {
    const m = /^([a-z_]+(?:\{[^}]*\})?) (\d+)$/.exec(line);
    if (m) map.set(m[1], Number(m[2]));
  }
  return map;
}

// Resolves with the error a TLS client gets (or rejects if it connects).
function tlsFailure(port, opts) {
  return withTimeout(new Promise((resolve, reject) => {
    const s = tls.connect({ host: HOST, port, ...opts }, () => {
      s.destroy();
      reject(new Error(`connected (${s.getProtocol()}) where a failure was expected`));
    });
    s.on('error', resolve);
  }), 5000, 'TLS failure');
}

describe('TLS with Node ws', () => {
  let dir;
  let certs;
  let srv;
  let view;

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-tls-js-'));
    certs = makeCerts(dir);
    srv = await startServer(['--tls-cert', certs.cert, '--tls-key', certs.key, '--stream', '',
      '--max-message-size', '2MiB']);
    view = tlsView(srv, certs.ca);
  });

  after(async () => {
    if (srv) await srv.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('logs that its listener serves TLS', () => {
    assert.match(srv.stderr(), /msg=listening\b.*\btls=on/);
    assert.match(srv.stderr(), /tls enabled on every listener.*CN ?= ?wshub-test-server/);
  });

  it('wss:// echo of text and binary', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca });
    ws.send('hello over tls');
    const m = await nextMessage(ws);
    assert.equal(m.data.toString(), 'hello over tls');
    assert.equal(m.isBinary, false);
    const bin = crypto.randomBytes(3000);
    ws.send(bin);
    assert.deepEqual((await nextMessage(ws)).data, bin);
    ws.close();
  });

  it('a 1 MiB message goes through intact both ways', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca, maxPayload: 4 << 20 });
    const big = crypto.randomBytes(1 << 20);
    ws.send(big);
    const m = await nextMessage(ws, 15000);
    assert.equal(m.data.length, big.length);
    assert.ok(m.data.equals(big), '1 MiB echo differs');
    ws.close();
  });

  it('2000 small frames sent at once come back whole and in order', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca });
    const n = 2000;
    const got = [];
    const done = new Promise((resolve) => {
      ws.on('message', (d) => {
        got.push(d.toString());
        if (got.length === n) resolve();
      });
    });
    for (let i = 0; i < n; i++) ws.send(`m${i}`);
    await withTimeout(done, 15000, `${n} echoes`);
    // harness's own queue also holds them: check the listener's copy
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => `m${i}`));
    ws.close();
  });

  it('the hub flow over wss://: join a room, send, the other member receives it', async () => {
    const a = await HubClient.open(view, 'tls-alice', { ca: certs.ca });
    const b = await HubClient.open(view, 'tls-bob', { ca: certs.ca });
    await a.join('tls-room');
    await b.join('tls-room');
    a.send('send_to_room', { room_id: 'tls-room', text: 'secret hello' });
    const m = await b.take((x) => x.type === 'send_to_room' && x.room_id === 'tls-room');
    assert.equal(m.payload.text, 'secret hello');
    a.ws.close();
    b.ws.close();
  });

  it('negotiates TLS 1.2 with a 1.2-only client, on a forward-secret AEAD suite', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca, maxVersion: 'TLSv1.2' });
    assert.equal(ws._socket.getProtocol(), 'TLSv1.2');
    const c = ws._socket.getCipher();
    assert.match(c.standardName, /^TLS_ECDHE_(ECDSA|RSA)_WITH_(AES_\d+_GCM|CHACHA20_POLY1305)/);
    ws.send('v12');
    assert.equal((await nextMessage(ws)).data.toString(), 'v12');
    ws.close();
  });

  it('negotiates TLS 1.3 with a 1.3-only client', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca, minVersion: 'TLSv1.3' });
    assert.equal(ws._socket.getProtocol(), 'TLSv1.3');
    ws.send('v13');
    assert.equal((await nextMessage(ws)).data.toString(), 'v13');
    ws.close();
  });

  it('refuses a TLS 1.2 client that only offers CBC suites', async () => {
    const e = await tlsFailure(srv.port, { ca: certs.ca, maxVersion: 'TLSv1.2',
      ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA' });
    assert.match(`${e.code} ${e.message}`, /HANDSHAKE_FAILURE|handshake failure/i);
  });

  it('ALPN: selects http/1.1 when offered (also next to h2); none offered is fine', async () => {
    const ws = await connect(view.wsUrl('/echo'), { ca: certs.ca, ALPNProtocols: ['h2', 'http/1.1'] });
    assert.equal(ws._socket.alpnProtocol, 'http/1.1');
    ws.close();
    const plain = await connect(view.wsUrl('/echo'), { ca: certs.ca });
    assert.equal(plain._socket.alpnProtocol, false, 'no ALPN offered, none selected');
    plain.close();
  });

  it('ALPN: a client offering only other protocols gets no_application_protocol (RFC 7301 3.2)', async () => {
    const e = await tlsFailure(srv.port, { ca: certs.ca, ALPNProtocols: ['h2'] });
    assert.match(`${e.code} ${e.message}`, /NO_APPLICATION_PROTOCOL|no application protocol/i);
  });

  it('resumes a TLS session (session tickets)', async () => {
    const first = await withTimeout(new Promise((resolve, reject) => {
      const s = tls.connect({ host: HOST, port: srv.port, ca: certs.ca, maxVersion: 'TLSv1.2' });
      s.once('session', (sess) => {
        s.end();
        resolve(sess);
      });
      s.on('error', reject);
    }), 5000, 'first session');
    const reused = await withTimeout(new Promise((resolve, reject) => {
      const s = tls.connect({ host: HOST, port: srv.port, ca: certs.ca, maxVersion: 'TLSv1.2',
        session: first }, () => {
        const r = s.isSessionReused();
        s.end();
        resolve(r);
      });
      s.on('error', reject);
    }), 5000, 'resumed session');
    assert.equal(reused, true);
  });

  it('same-origin is https:// on a TLS server; http:// with the same host is another origin', async () => {
    const ok = await connect(view.wsUrl('/echo'), { ca: certs.ca, origin: `https://${HOST}:${srv.port}` });
    ok.close();
    await assert.rejects(connect(view.wsUrl('/echo'), { ca: certs.ca, origin: `http://${HOST}:${srv.port}` }),
      (e) => e.statusCode === 403);
  });

  it('a client that does not trust the CA fails verification on its side', async () => {
    await assert.rejects(connect(view.wsUrl('/echo')), (e) =>
      /SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT/.test(e.code));
    // ... and a client that trusts the CA but wants another name fails too
    await assert.rejects(connect(`wss://${HOST}:${srv.port}/echo`, { ca: certs.ca, servername: 'example.com' }),
      (e) => e.code === 'ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('counts handshakes in /metrics', async () => {
    const m = await tlsMetrics(srv.port, certs.ca);
    assert.ok(m.get('wshub_tls_handshakes_total') >= 8, `handshakes ${m.get('wshub_tls_handshakes_total')}`);
    assert.ok(m.get('wshub_tls_handshake_failures_total') >= 2, 'the refused CBC and ALPN clients count as failures');
    assert.equal(m.get('wshub_tls_reloads_total'), 0);
  });
});

describe('Origin on a plaintext server (TLS terminated by a proxy in front)', () => {
  it('takes only http:// as same-origin: an https:// page needs --allowed-origins (issue 14)', async () => {
    const srv = await startServer(['--stream', '']);
    try {
      const ws = await connect(srv.wsUrl('/echo'), { origin: `http://${HOST}:${srv.port}` });
      ws.close();
      await assert.rejects(connect(srv.wsUrl('/echo'), { origin: `https://${HOST}:${srv.port}` }),
        (e) => e.statusCode === 403);
    } finally {
      await srv.stop();
    }
    const listed = await startServer(['--stream', '', '--allowed-origins', `https://${HOST}:4443`]);
    try {
      const ws = await connect(listed.wsUrl('/echo'), { origin: `https://${HOST}:4443` });
      ws.close();
      await assert.rejects(connect(listed.wsUrl('/echo'), { origin: `https://${HOST}:${listed.port}` }),
        (e) => e.statusCode === 403);
    } finally {
      await listed.stop();
    }
  });
});
