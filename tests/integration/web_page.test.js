'use strict';
// The web page at / in a real browser: Playwright (playwright-core) driving Debian's
// chromium, headless. Two users chat and see each other; a notification published
// through the API pops up for the right user only; the live chart receives points;
// the server is restarted and both pages reconnect, and a message sent while it was
// down arrives; a reload keeps the chat; the page fits a phone-sized screen; and the
// design guide's own client (section 7.2, as printed) works against wshub.
// Screenshots go to <build>/artifacts/web_page/<variant>/.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./hub_helpers');
const { startProxy } = require('./tcp_proxy');

const CHROMIUM = process.env.WSHUB_CHROMIUM || '/usr/bin/chromium';
const ROOT = path.join(__dirname, '..', '..');
const ARTIFACTS = path.join(path.dirname(path.resolve(h.BIN || '.')), 'artifacts', 'web_page',
  process.env.WSHUB_VARIANT || 'plain');
const T = 15000; // generous: the sanitizer build and a loaded machine are slow

let chromium;
let browser;
const cleanups = [];

before(async () => {
  assert.ok(fs.existsSync(CHROMIUM), `${CHROMIUM} not found: run scripts/setup.sh test (installs Debian's chromium)`);
  ({ chromium } = require('playwright-core'));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  if (browser) await browser.close();
});

async function server(args = []) {
  const s = await h.startServer(['--api-key', 'k', '--stream', 'stats:200ms', ...args]);
  cleanups.push(async () => {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.stop();
  });
  return s;
}

async function proxyTo(port) {
  const p = await startProxy(port);
  cleanups.push(() => p.close());
  return p;
}

// A signed-in page in its own browser context (its own localStorage).
async function openPage(port, name, viewport = { width: 1280, height: 760 }) {
  const ctx = await browser.newContext({ viewport });
  cleanups.push(() => ctx.close());
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.errors = errors;
  page.logs = [];
  page.on('console', (m) => page.logs.push(`${m.type()}: ${m.text()}`));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.fill('#signin-name', name);
  await page.click('#signin-btn');
  await page.waitForSelector('#state.open', { timeout: T });
  return page;
}

const messages = (page) => page.$$eval('#messages li.msg', (els) => els.map((e) => e.textContent));

async function say(page, text) {
  await page.fill('#chat-input', text);
  await page.click('#chat-send');
}

function seesMessage(page, text) {
  return page.waitForSelector(`#messages li.msg:has-text(${JSON.stringify(text)})`, { timeout: T });
}

// waitForFunction that, when it times out, tells what the page showed, what it logged
// and the end of the server's log: a failure on a loaded CI machine must be readable
// from the test's output alone.
async function waitShowing(page, srv, fn, what) {
  try {
    await page.waitForFunction(fn, null, { timeout: T });
  } catch (e) {
    const seen = await page.evaluate(() => ({
      state: document.getElementById('state').textContent,
      online: [...document.querySelectorAll('#online li')].map((l) => l.textContent),
      rooms: [...document.querySelectorAll('#rooms li')].map((l) => l.textContent),
    })).catch((x) => `unreadable: ${x.message}`);
    throw new Error(`${what}: ${e.message}\npage: ${JSON.stringify(seen)}\n` +
      `page log:\n${(page.logs || []).slice(-20).join('\n')}\n` +
      `--- server stderr (end) ---\n${srv.stderr().slice(-3000)}`);
  }
}

const shot = (page, name) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });

test('two users chat, the API notification reaches the right one, the chart fills', async () => {
  const srv = await server();
  const alice = await openPage(srv.port, 'alice');
  const bob = await openPage(srv.port, 'bob');
  await say(alice, 'hello bob');
  await seesMessage(bob, 'hello bob');
  await say(bob, 'hi alice');
  await seesMessage(alice, 'hi alice');
  await seesMessage(alice, 'hello bob');
  assert.deepEqual((await messages(bob)).map((t) => t.replace(/\d\d:\d\d:\d\d.*$/, '')), ['alicehello bob', 'bobhi alice']);

  // The room list counts both members; the online list names both.
  await alice.waitForFunction(() => {
    const li = document.querySelector('#rooms li[data-room="lobby"] .n');
    return li && li.textContent === '2';
  }, null, { timeout: T });
  await waitShowing(alice, srv, () => [...document.querySelectorAll('#online li')].map((l) => l.textContent).join(',') === 'alice,bob',
    "alice's online list to read alice,bob");

  const r = await h.publish(srv, { type: 'notification', user_id: 'bob', payload: { title: 'Build finished', body: 'all green', priority: 'high' } }, { key: 'k' });
  assert.equal(r.status, 202);
  await bob.waitForSelector('#notifications .note.high:has-text("Build finished")', { timeout: T });
  await bob.waitForSelector('.toast:has-text("Build finished")', { timeout: T });
  assert.equal(await alice.$$eval('#notifications .note', (e) => e.length), 0, 'alice gets no notification of bob');

  await alice.waitForFunction(() => Number(document.getElementById('chart').dataset.points) >= 5, null, { timeout: T });
  assert.match(await alice.textContent('#legend'), /CPU \d+\.\d %/);
  await shot(alice, 'alice');
  await shot(bob, 'bob');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('the server restarts: both pages reconnect; a message sent while it was down arrives', async () => {
  const s1 = await server();
  // One proxy per page: the test decides which page reconnects first.
  const pa = await proxyTo(s1.port);
  const pb = await proxyTo(s1.port);
  const alice = await openPage(pa.port, 'alice');
  const bob = await openPage(pb.port, 'bob');
  await say(alice, 'before the restart');
  await seesMessage(bob, 'before the restart');

  await s1.stop();
  await alice.waitForSelector('#state.reconnecting', { timeout: T });
  await bob.waitForSelector('#state.reconnecting', { timeout: T });
  await shot(alice, 'reconnecting');
  await say(bob, 'sent while the server was down'); // queued by the client

  const s2 = await server();
  pa.target = s2.port;
  await alice.waitForSelector('#state.open', { timeout: T });
  await alice.waitForFunction(() => window.wshub.client.rooms.get('lobby')?.joined, null, { timeout: T });
  pb.target = s2.port;
  await bob.waitForSelector('#state.open', { timeout: T });
  await seesMessage(alice, 'sent while the server was down');
  await say(alice, 'after the restart');
  await seesMessage(bob, 'after the restart');
  await shot(alice, 'after_restart');
  assert.deepEqual([...alice.errors, ...bob.errors], []);
});

test('a reload keeps the conversation; what was said while the page was away is recovered', async () => {
  const srv = await server();
  const alice = await openPage(srv.port, 'alice');
  const bob = await openPage(srv.port, 'bob');
  await say(alice, 'remember me');
  await seesMessage(bob, 'remember me');
  await alice.reload();
  await alice.waitForSelector('#state.open', { timeout: T });
  await seesMessage(alice, 'remember me');
  await say(bob, 'after your reload');
  await seesMessage(alice, 'after your reload');

  // Away (the page closed), then back: the room is re-joined from the saved position.
  const url = alice.url();
  await alice.goto('about:blank');
  await say(bob, 'while you were away');
  await say(bob, 'and this too');
  await seesMessage(bob, 'and this too');
  await alice.goto(url);
  await alice.waitForSelector('#state.open', { timeout: T });
  await seesMessage(alice, 'and this too');
  // replayed counts the room's presence events too (alice's own leave)
  assert.match(await alice.textContent('#notice'), /^recovered \d+ messages? missed while away$/);
  const texts = (await messages(alice)).map((t) => t.replace(/\d\d:\d\d:\d\d.*$/, ''));
  assert.deepEqual(texts, ['aliceremember me', 'bobafter your reload', 'bobwhile you were away', 'boband this too'],
    'each message once, in order');
  await shot(alice, 'after_reload');
});

test('phone-sized screen: one column, nothing wider than the screen', async () => {
  const srv = await server();
  const page = await openPage(srv.port, 'carol', { width: 390, height: 844 });
  await say(page, 'from my phone');
  await seesMessage(page, 'from my phone');
  await page.waitForFunction(() => Number(document.getElementById('chart').dataset.points) >= 2, null, { timeout: T });
  const { scroll, inner } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, inner: window.innerWidth }));
  assert.ok(scroll <= inner, `page is ${scroll}px wide on a ${inner}px screen`);
  const chat = await page.$eval('#chat', (e) => e.getBoundingClientRect().width);
  assert.ok(chat > 300, `chat column ${chat}px`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'phone.png'), fullPage: true });
});

test("the design guide's client (section 7.2, as printed) runs in the browser against wshub", async () => {
  const fixture = path.join(ROOT, 'tests', 'fixtures', 'guide_client_7_2.js');
  const code = fs.readFileSync(fixture, 'utf8');
  const seed = '/work/shared/seed/000_9f66d0c07883d85e.txt';
  if (fs.existsSync(seed)) {
    const s = fs.readFileSync(seed, 'utf8');
    const i = s.indexOf('```javascript', s.indexOf('### 7.2')) + '```javascript\n'.length;
    assert.equal(code, s.slice(i, s.indexOf('```', i)), 'the fixture is the guide code as printed');
  }
  const srv = await server();
  const alice = await openPage(srv.port, 'alice');
  const ctx = await browser.newContext();
  cleanups.push(() => ctx.close());
  const page = await ctx.newPage();
  const logs = [];
  page.on('console', (m) => logs.push(m.text()));
  await page.goto(`http://127.0.0.1:${srv.port}/favicon.svg`); // same origin, not the app
  await page.evaluate(({ code, url }) => {
    // eslint-disable-next-line no-new-func
    const WebSocketClient = new Function(`${code}\nreturn WebSocketClient;`)();
    const got = { connected: 0, chat: [], notes: [], data: [] };
    const c = new WebSocketClient(url, 'guide-user');
    c.onConnect = () => got.connected++;
    c.onChatMessage = (p) => got.chat.push(p);
    c.onNotification = (p) => got.notes.push(p);
    c.onDataUpdate = (p) => got.data.push(p);
    c.connect();
    window.guide = { c, got };
  }, { code, url: `ws://127.0.0.1:${srv.port}/ws` });
  await page.waitForFunction(() => window.guide.got.connected === 1, null, { timeout: T });
  await page.evaluate(() => {
    window.guide.c.send('join_room', { room_id: 'lobby' });
    window.guide.c.send('join_room', { room_id: 'stats' });
  });
  await waitShowing(alice, srv, () => [...document.querySelectorAll('#online li')].some((l) => l.textContent === 'guide-user'),
    "alice's online list to name guide-user");
  await say(alice, 'hello guide');
  await page.waitForFunction(() => window.guide.got.chat.some((p) => p.content === 'hello guide'), null, { timeout: T });
  await page.evaluate(() => window.guide.c.send('chat_message', { room_id: 'lobby', content: 'the guide answers' }));
  await seesMessage(alice, 'the guide answers');
  await h.publish(srv, { type: 'notification', user_id: 'guide-user', payload: { title: 'for the guide' } }, { key: 'k' });
  await page.waitForFunction(() => window.guide.got.notes.some((p) => p.title === 'for the guide'), null, { timeout: T });
  await page.waitForFunction(() => window.guide.got.data.some((p) => p.data && typeof p.data.cpu_percent === 'number'), null, { timeout: T });
  assert.ok(logs.includes('WebSocket connected'), logs.join('\n'));
  await page.evaluate(() => {
    window.guide.c.ws.onclose = null; // the guide's client would reconnect forever
    window.guide.c.ws.close();
  });
});
