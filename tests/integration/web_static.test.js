'use strict';
// The web page's files over HTTP: embedded copies identical to the sources, content
// types, ETag revalidation (304), Cache-Control, methods, --web-root (and that no
// request path leaves that folder), --no-web, and a bad --web-root refused at start.

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./hub_helpers');

const ROOT = path.join(__dirname, '..', '..');
const servers = [];
after(async () => {
  for (const s of servers.splice(0)) await s.stop();
});
async function server(args = []) {
  const s = await h.startServer(args);
  servers.push(s);
  return s;
}

// One raw request (the path exactly as written, no client-side normalisation).
// bodyless: the answer has no body whatever its Content-Length says (HEAD, 304).
async function raw(port, reqPath, { method = 'GET', headers = {}, bodyless = method === 'HEAD' } = {}) {
  const c = await h.RawClient.connect(port);
  const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
  c.write(`${method} ${reqPath} HTTP/1.1\r\nHost: 127.0.0.1\r\n${extra}\r\n`);
  const r = await c.readResponse({ head: bodyless });
  c.destroy();
  return r;
}

test('the embedded page: every file, byte for byte, with its type, ETag and Cache-Control', async () => {
  const srv = await server();
  const files = [
    ['/', 'web/index.html', 'text/html; charset=utf-8'],
    ['/index.html', 'web/index.html', 'text/html; charset=utf-8'],
    ['/app.js', 'web/app.js', 'text/javascript; charset=utf-8'],
    ['/chart.js', 'web/chart.js', 'text/javascript; charset=utf-8'],
    ['/app.css', 'web/app.css', 'text/css; charset=utf-8'],
    ['/favicon.svg', 'web/favicon.svg', 'image/svg+xml'],
    ['/wshub.js', 'clients/js/wshub.js', 'text/javascript; charset=utf-8'],
  ];
  const etags = new Set();
  for (const [url, file, type] of files) {
    const r = await h.request(srv, 'GET', url);
    assert.equal(r.status, 200, url);
    assert.equal(r.headers['content-type'], type, url);
    assert.equal(r.body, fs.readFileSync(path.join(ROOT, file), 'utf8'), `${url} is ${file}`);
    assert.match(r.headers.etag, /^"[0-9a-f]{16}"$/);
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.equal(r.headers['x-content-type-options'], 'nosniff');
    if (url !== '/') etags.add(r.headers.etag);
  }
  assert.equal(etags.size, files.length - 1, 'different files, different ETags');
});

test('If-None-Match: 304 without a body while unchanged, 200 for another tag', async () => {
  const srv = await server();
  const first = await h.request(srv, 'GET', '/app.js');
  const tag = first.headers.etag;
  const r = await raw(srv.port, '/app.js', { headers: { 'If-None-Match': tag }, bodyless: true });
  assert.equal(r.status, 304);
  assert.equal(r.headers.etag, tag);
  assert.equal(r.headers['content-length'], first.headers['content-length'], 'the length a 200 would have');
  // Nothing follows the head: the next request on the connection is answered cleanly.
  const c = await h.RawClient.connect(srv.port);
  c.write(`GET /app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${tag}\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n`);
  assert.equal((await c.readResponse({ head: true })).status, 304);
  const next = await c.readResponse();
  assert.equal(next.status, 200);
  assert.equal(next.body, '{"status":"ok"}\n');
  c.destroy();
  const list = await raw(srv.port, '/app.js', { headers: { 'If-None-Match': `"0000000000000000", ${tag}` }, bodyless: true });
  assert.equal(list.status, 304);
  const other = await h.request(srv, 'GET', '/app.js', { headers: { 'If-None-Match': '"0000000000000000"' } });
  assert.equal(other.status, 200);
  assert.equal(other.body, first.body);
  const head = await raw(srv.port, '/app.css', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(Number(head.headers['content-length']), fs.statSync(path.join(ROOT, 'web/app.css')).size);
});

test('unknown paths 404, other methods 405 on a file, and the API still answers', async () => {
  const srv = await server();
  assert.equal((await h.request(srv, 'GET', '/nope.js')).status, 404);
  assert.equal((await h.request(srv, 'GET', '/nope.js')).json.error.code, 'not_found');
  assert.equal((await h.request(srv, 'POST', '/nope')).status, 404);
  const post = await h.request(srv, 'POST', '/', { body: '{}' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  // The page's catch-all does not take a path another route has: still 405 there.
  assert.equal((await h.request(srv, 'POST', '/healthz', { body: '{}' })).status, 405);
  assert.equal((await h.request(srv, 'POST', '/ws', { body: '{}' })).status, 405);
  assert.equal((await h.request(srv, 'GET', '/healthz')).status, 200);
  assert.equal((await h.request(srv, 'GET', '/api/online')).status, 200);
  assert.equal((await h.request(srv, 'GET', '/api/nope')).status, 404);
});

test('paths that try to leave the folder are refused (embedded and --web-root)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-web-'));
  const secretDir = fs.mkdtempSync(path.join(os.tmpdir(), 'wshub-secret-'));
  fs.writeFileSync(path.join(secretDir, 'secret.txt'), 'top secret');
  fs.mkdirSync(path.join(dir, 'site'));
  fs.writeFileSync(path.join(dir, 'site', 'index.html'), '<p>mine</p>');
  fs.mkdirSync(path.join(dir, 'site', 'sub'));
  fs.writeFileSync(path.join(dir, 'site', 'sub', 'index.html'), '<p>sub</p>');
  fs.writeFileSync(path.join(dir, 'site', 'data.json'), '{"a":1}');
  fs.symlinkSync(path.join(secretDir, 'secret.txt'), path.join(dir, 'site', 'escape.txt'));
  fs.symlinkSync(secretDir, path.join(dir, 'site', 'escdir'));
  fs.writeFileSync(path.join(dir, 'outside.txt'), 'outside');
  try {
    const embedded = await server();
    const site = await server(['--web-root', path.join(dir, 'site')]);
    const bad = [
      '/../outside.txt', '/sub/../../outside.txt', '/%2e%2e/outside.txt', '/..%2foutside.txt',
      '/./index.html', '//etc/passwd', '/escape.txt', '/escdir/secret.txt', '/sub//index.html',
      '/..', '/.', `/${'a/'.repeat(300)}x`, '/a\\..\\outside.txt', 'http://x/../outside.txt',
      '/../../../../../../etc/passwd',
    ];
    for (const srv of [embedded, site]) {
      for (const p of bad) {
        const r = await raw(srv.port, p);
        assert.ok(r.status === 404 || r.status === 400, `${p}: ${r.status}`);
        assert.ok(!r.body.includes('secret') && !r.body.includes('outside') && !r.body.includes('root:'), p);
      }
    }
    const idx = await h.request(site, 'GET', '/');
    assert.equal(idx.body, '<p>mine</p>');
    assert.equal((await h.request(site, 'GET', '/sub/')).body, '<p>sub</p>');
    const j = await h.request(site, 'GET', '/data.json');
    assert.equal(j.headers['content-type'], 'application/json');
    assert.match(j.headers.etag, /^"[0-9a-f]{16}"$/);
    assert.equal((await h.request(site, 'GET', '/sub')).status, 404, 'a folder is not a file');
    // The folder is read at each request: an edit shows at once, with a new ETag.
    fs.writeFileSync(path.join(dir, 'site', 'data.json'), '{"a":2}');
    const j2 = await h.request(site, 'GET', '/data.json');
    assert.equal(j2.body, '{"a":2}');
    assert.notEqual(j2.headers.etag, j.headers.etag);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
    fs.rmSync(secretDir, { recursive: true, force: true });
  }
});

test('--no-web: / is the plain endpoint list and the page files are gone', async () => {
  const srv = await server(['--no-web']);
  const r = await h.request(srv, 'GET', '/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain/);
  assert.match(r.body, /Endpoints:/);
  assert.equal((await h.request(srv, 'GET', '/app.js')).status, 404);
});

test('a --web-root that is not a folder stops the start with a message', async () => {
  const r = await h.runWshub(['--listen', '127.0.0.1:0', '--web-root', '/nonexistent/wshub-web']);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--web-root .*not a readable folder/);
});

test('the page is served from any working directory (it is inside the binary)', async () => {
  const { spawn } = require('node:child_process');
  const proc = spawn(path.resolve(h.BIN), ['--listen', '127.0.0.1:0', '--threads', '1'], { cwd: os.tmpdir(), stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.setEncoding('utf8');
  const port = await h.withTimeout(new Promise((resolve) => {
    proc.stderr.on('data', (d) => {
      err += d;
      const m = /msg=listening\b.*?\bport=(\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
  }), 5000, 'listening');
  try {
    const r = await h.request(port, 'GET', '/');
    assert.equal(r.status, 200);
    assert.match(r.body, /<title>wshub<\/title>/);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
});
