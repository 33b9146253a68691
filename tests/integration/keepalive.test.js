'use strict';
// HTTP/1.x connection handling over raw sockets: keep-alive, HTTP/1.0, pipelining,
// Connection: close, and the requests that are refused and end the connection.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');

const { startServer, RawClient } = require('./harness');

const MAX_BODY = 100;
const HEALTH_BODY = '{"status":"ok"}\n';

const get = (path, extra = '', version = '1.1') =>
  `GET ${path} HTTP/${version}\r\nHost: 127.0.0.1\r\n${extra}\r\n`;

describe('HTTP connections (raw sockets)', () => {
  let srv;
  const sockets = [];
  const open = async () => {
    const c = await RawClient.connect(srv.port);
    sockets.push(c);
    return c;
  };
  before(async () => {
    srv = await startServer(['--max-body-size', String(MAX_BODY)]);
  });
  after(async () => {
    for (const c of sockets) c.destroy();
    await srv.stop();
  });

  it('keep-alive: two requests on one socket are both answered', async () => {
    const c = await open();
    c.write(get('/healthz'));
    const r1 = await c.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.body, HEALTH_BODY);
    assert.notEqual((r1.headers.connection || '').toLowerCase(), 'close');
    assert.ok(await c.stillOpenAfter(100), 'connection kept open after the first response');
    c.write(get('/nope'));
    const r2 = await c.readResponse();
    assert.equal(r2.status, 404);
    assert.equal(JSON.parse(r2.body).error.code, 'not_found');
    c.write(get('/healthz'));
    assert.equal((await c.readResponse()).status, 200);
    assert.ok(await c.stillOpenAfter(50));
  });

  it('HTTP/1.0 without keep-alive: the connection is closed after the response', async () => {
    const c = await open();
    c.write(get('/healthz', '', '1.0'));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.body, HEALTH_BODY);
    const rest = await c.waitEnd();
    assert.equal(rest.length, 0, 'nothing after the response');
  });

  it('HTTP/1.0 with Connection: keep-alive stays open', async () => {
    const c = await open();
    c.write(get('/healthz', 'Connection: keep-alive\r\n', '1.0'));
    assert.equal((await c.readResponse()).status, 200);
    assert.ok(await c.stillOpenAfter(100), 'HTTP/1.0 keep-alive connection stays open');
    c.write(get('/healthz', 'Connection: keep-alive\r\n', '1.0'));
    assert.equal((await c.readResponse()).status, 200);
  });

  it('pipelined requests sent in one write are answered in order', async () => {
    const c = await open();
    const post = `POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello`;
    c.write(get('/healthz') + get('/missing') + post + `HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n` +
      get('/'));
    const r1 = await c.readResponse();
    assert.equal(r1.status, 200);
    assert.equal(r1.body, HEALTH_BODY);
    const r2 = await c.readResponse();
    assert.equal(r2.status, 404);
    const r3 = await c.readResponse();
    assert.equal(r3.status, 405, 'POST on a GET route, its body skipped');
    const r4 = await c.readResponse({ head: true });
    assert.equal(r4.status, 200);
    const r5 = await c.readResponse();
    assert.equal(r5.status, 200);
    assert.match(r5.body, /wshub/);
    assert.ok(await c.stillOpenAfter(50));
    assert.equal(c.buf.length, 0, 'no stray bytes');
  });

  it('pipelined requests split at odd points are answered in order', async () => {
    const c = await open();
    const all = Buffer.from(get('/healthz') + get('/x') + get('/healthz'));
    for (let i = 0; i < all.length; i += 7) {
      c.write(all.subarray(i, i + 7));
      await new Promise((r) => setImmediate(r));
    }
    assert.equal((await c.readResponse()).status, 200);
    assert.equal((await c.readResponse()).status, 404);
    assert.equal((await c.readResponse()).status, 200);
  });

  it('Connection: close is honoured', async () => {
    const c = await open();
    c.write(get('/healthz', 'Connection: close\r\n') + get('/healthz'));
    const r = await c.readResponse();
    assert.equal(r.status, 200);
    assert.equal(r.headers.connection.toLowerCase(), 'close');
    const rest = await c.waitEnd();
    assert.equal(rest.length, 0, 'the request after Connection: close is not answered');
  });

  it('a malformed request line gets 400 and the connection is closed', async () => {
    for (const line of ['G@T /healthz HTTP/1.1', 'GET /healthz HTTP/1.1 extra', 'GET\t/healthz HTTP/1.1']) {
      const c = await open();
      c.write(`${line}\r\nHost: x\r\n\r\n`);
      const r = await c.readResponse();
      assert.equal(r.status, 400, `status for ${JSON.stringify(line)}`);
      assert.equal(JSON.parse(r.body).error.code, 'bad_request');
      assert.equal(r.headers.connection.toLowerCase(), 'close');
      await c.waitEnd();
    }
  });

  it('a request body over --max-body-size gets 413 and the connection is closed', async () => {
    const c = await open();
    c.write(`POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n` +
      'b'.repeat(MAX_BODY + 1));
    const r = await c.readResponse();
    assert.equal(r.status, 413);
    assert.equal(JSON.parse(r.body).error.code, 'body_too_large');
    await c.waitEnd();
  });

  it('a request body of exactly --max-body-size is accepted', async () => {
    const c = await open();
    c.write(`POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: ${MAX_BODY}\r\n\r\n` +
      'b'.repeat(MAX_BODY) + get('/healthz'));
    const r = await c.readResponse();
    assert.equal(r.status, 405, 'routed (POST on a GET route), not refused for size');
    assert.equal((await c.readResponse()).status, 200, 'the body was skipped exactly');
  });

  it('chunked Transfer-Encoding gets 411', async () => {
    const c = await open();
    c.write('POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    const r = await c.readResponse();
    assert.equal(r.status, 411);
    assert.equal(JSON.parse(r.body).error.code, 'length_required');
    await c.waitEnd();
  });

  it('HEAD /healthz: headers with Content-Length, no body', async () => {
    const c = await open();
    c.write('HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    const r = await c.readResponse({ head: true });
    assert.equal(r.status, 200);
    assert.equal(Number(r.headers['content-length']), Buffer.byteLength(HEALTH_BODY));
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.ok(await c.stillOpenAfter(100));
    assert.equal(c.buf.length, 0, `no body bytes after a HEAD response: ${JSON.stringify(c.buf.toString())}`);
    // the next response on the socket starts right where the HEAD answer ended
    c.write(get('/healthz'));
    const r2 = await c.readResponse();
    assert.equal(r2.status, 200);
    assert.equal(r2.body, HEALTH_BODY);
  });
});
