// The wshub demo page: sign in, rooms with member counts, chat that survives a
// reload (the last messages and the room position are kept in localStorage; on
// reload the room is re-joined from that position and the server replays what was
// missed), online users, notifications, and a live chart of the `stats` stream.
import { connect } from './wshub.js';
import { LiveChart } from './chart.js';

const $ = (id) => document.getElementById(id);
const KEEP = 200; // messages kept per room for a reload
const STATS = 'stats';

let client = null;
let current = localStorage.getItem('wshub.room') || 'lobby';
// Rooms this page is in (it stays in them all, like a chat app's sidebar).
let joinedRooms = [];
try {
  joinedRooms = JSON.parse(localStorage.getItem('wshub.rooms')) || [];
} catch {
  joinedRooms = [];
}
let me = null;
const logs = new Map(); // room -> {epoch, seq, msgs: [{from, content, ts, seq}]}

const chart = new LiveChart($('chart'), [
  { key: 'cpu', label: 'CPU %', color: '#2d6cdf', max: 100 },
  { key: 'mem', label: 'memory %', color: '#1f9d55', max: 100 },
  { key: 'rx', label: 'net in', color: '#d98a00' },
  { key: 'tx', label: 'net out', color: '#a34fd1' },
]);

// ------------------------------------------------------------------ storage

function loadLog(room) {
  if (!logs.has(room)) {
    let l = null;
    try {
      l = JSON.parse(localStorage.getItem(`wshub.log.${room}`));
    } catch {
      l = null;
    }
    logs.set(room, l && Array.isArray(l.msgs) ? l : { epoch: null, seq: null, msgs: [] });
  }
  return logs.get(room);
}

function saveLog(room) {
  const l = loadLog(room);
  const pos = client && client.rooms.get(room);
  if (pos) {
    l.seq = pos.seq;
    l.epoch = pos.epoch;
  }
  l.msgs = l.msgs.slice(-KEEP);
  try {
    localStorage.setItem(`wshub.log.${room}`, JSON.stringify(l));
  } catch {
    /* storage full or disabled: the page still works, without reload recovery */
  }
}

// ------------------------------------------------------------------ rendering

function fmtTime(ts) {
  const d = ts ? new Date(ts) : new Date();
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function messageItem(m) {
  const li = document.createElement('li');
  li.className = 'msg' + (m.from === me ? ' mine' : '') + (m.sys ? ' sys' : '');
  if (m.seq !== undefined) li.dataset.seq = String(m.seq);
  if (!m.sys) {
    const who = document.createElement('span');
    who.className = 'who';
    who.textContent = m.from;
    li.append(who);
  }
  li.append(document.createTextNode(m.content));
  const t = document.createElement('span');
  t.className = 'time';
  t.textContent = fmtTime(m.ts);
  li.append(t);
  return li;
}

function renderMessages() {
  const ol = $('messages');
  ol.replaceChildren(...loadLog(current).msgs.map(messageItem));
  ol.scrollTop = ol.scrollHeight;
  $('room-name').textContent = current;
}

function addMessage(room, m) {
  const l = loadLog(room);
  l.msgs.push(m);
  saveLog(room);
  if (room === current) {
    const ol = $('messages');
    const atEnd = ol.scrollTop + ol.clientHeight >= ol.scrollHeight - 30;
    ol.append(messageItem(m));
    if (atEnd) ol.scrollTop = ol.scrollHeight;
  }
}

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = !text;
}

function toast(text) {
  const t = document.createElement('div');
  t.className = 'toast';
  t.textContent = text;
  $('toasts').append(t);
  setTimeout(() => t.remove(), 6000);
}

function setState(s) {
  const el = $('state');
  el.textContent = s;
  el.className = `state ${s}`;
}

// Listings have a rate budget on the server (--query-rate): at most one refresh a
// second, whatever the number of presence events.
let listTimer = null;
let listAt = 0;
function scheduleLists() {
  if (listTimer) return;
  listTimer = setTimeout(() => {
    listTimer = null;
    listAt = Date.now();
    refreshLists();
  }, Math.max(0, listAt + 1000 - Date.now()));
}

// All rooms, following next_cursor (a few pages at most: this is a sidebar).
async function allRooms() {
  const rooms = [];
  let cursor = null;
  for (let page = 0; page < 5; page++) {
    const r = await client.listRooms(cursor ? { cursor } : {});
    rooms.push(...r.rooms);
    if (!r.next_cursor) break;
    cursor = r.next_cursor;
  }
  return rooms;
}

async function refreshLists() {
  if (!client || client.state !== 'open') return;
  try {
    const [rooms, online] = await Promise.all([allRooms(), client.onlineUsers()]);
    const ul = $('rooms');
    const list = rooms.filter((r) => r.room_id !== STATS);
    if (!list.some((r) => r.room_id === current)) list.unshift({ room_id: current, members: 0 });
    ul.replaceChildren(...list.map((r) => {
      const li = document.createElement('li');
      li.dataset.room = r.room_id;
      li.className = (r.room_id === current ? 'active' : '') + (joinedRooms.includes(r.room_id) ? ' joined' : '');
      const name = document.createElement('span');
      name.textContent = `#${r.room_id}`;
      const n = document.createElement('span');
      n.className = 'n';
      n.textContent = String(r.members);
      li.append(name, n);
      li.onclick = () => switchRoom(r.room_id);
      return li;
    }));
    $('online').replaceChildren(...online.online_users.map((u) => {
      const li = document.createElement('li');
      li.textContent = u;
      return li;
    }));
    $('online-count').textContent = String(online.count);
  } catch (e) {
    // Offline for a moment, or over the listing budget: the next tick refreshes.
    console.warn(`room and user lists not refreshed: ${e.code || e.message}`);
  }
}

// ------------------------------------------------------------------ rooms

function joinOptions(room) {
  const l = loadLog(room);
  return l.epoch && typeof l.seq === 'number' ? { since: { seq: l.seq, epoch: l.epoch } } : {};
}

function joinRoom(room) {
  if (!joinedRooms.includes(room)) {
    joinedRooms.push(room);
    localStorage.setItem('wshub.rooms', JSON.stringify(joinedRooms));
  }
  return client.join(room, joinOptions(room)).catch((e) => {
    joinedRooms = joinedRooms.filter((r) => r !== room);
    localStorage.setItem('wshub.rooms', JSON.stringify(joinedRooms));
    if (room === current) notice(`could not join #${room}: ${e.code || e.message}`);
  });
}

async function switchRoom(room) {
  if (!room || room === current || room === STATS) return;
  current = room;
  localStorage.setItem('wshub.room', room);
  notice('');
  renderMessages();
  await joinRoom(room);
  scheduleLists();
}

// ------------------------------------------------------------------ connection

function start(cred) {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
  me = cred.name || null;
  $('me').textContent = me ? `signed in as ${me}` : 'signed in with a token';
  const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
  client = connect(url, { token: cred.name || cred.token, heartbeat: { interval: 20000, timeout: 8000 } });
  window.wshub = { client, chart }; // for the browser tests and the curious

  client.on('state', setState);
  client.on('connect', scheduleLists);
  client.on('session', (s) => {
    me = s.user_id;
    $('me').textContent = `signed in as ${me}`;
  });
  client.on('close', (i) => {
    notice(`disconnected for good (${i.code} ${i.reason || ''}): sign in again`);
  });
  client.on('joined', (i) => {
    if (i.room_id === STATS) return;
    saveLog(i.room_id);
    if (i.recovered === true && i.replayed > 0 && i.room_id === current)
      notice(`recovered ${i.replayed} message${i.replayed === 1 ? '' : 's'} missed while away`);
  });
  client.on('recovery_failed', (i) => {
    if (i.stream === 'room' && i.room_id !== STATS) {
      addMessage(i.room_id, { sys: true, content: 'the server could not replay what was said while you were away (it restarted, or its history does not go back that far): some messages may be missing above' });
    }
  });
  client.on('chat_message', (p, m) => {
    addMessage(m.room_id || p.room_id, { from: p.user_id || m.from, content: p.content, ts: m.timestamp, seq: m.seq });
  });
  client.on('presence', scheduleLists);
  client.on('notification', (p) => {
    const li = document.createElement('li');
    li.className = `note ${p.priority || 'normal'}`;
    const b = document.createElement('b');
    b.textContent = p.title;
    li.append(b);
    if (p.body) li.append(document.createTextNode(p.body));
    if (p.link) {
      const a = document.createElement('a');
      a.href = p.link;
      a.textContent = ' open';
      li.append(a);
    }
    $('notifications').prepend(li);
    $('note-count').textContent = String($('notifications').children.length);
    toast(`${p.title}${p.body ? ': ' + p.body : ''}`);
  });
  client.on('data_update', (p, m) => {
    if (m.room_id !== STATS || !p.data) return;
    const d = p.data;
    chart.push({
      cpu: d.cpu_percent ?? 0,
      mem: d.memory ? d.memory.used_percent : 0,
      rx: d.network ? d.network.rx_bytes_per_s : 0,
      tx: d.network ? d.network.tx_bytes_per_s : 0,
    });
    $('legend').replaceChildren(...[
      ['CPU', `${(d.cpu_percent ?? 0).toFixed(1)} %`, '#2d6cdf'],
      ['memory', `${d.memory ? d.memory.used_percent.toFixed(1) : '?'} %`, '#1f9d55'],
      ['net in', rate(d.network && d.network.rx_bytes_per_s), '#d98a00'],
      ['net out', rate(d.network && d.network.tx_bytes_per_s), '#a34fd1'],
    ].map(([k, v, c]) => {
      const s = document.createElement('span');
      s.style.setProperty('--c', c);
      s.textContent = `${k} ${v}`;
      return s;
    }));
  });

  renderMessages();
  for (const room of new Set([current, ...joinedRooms])) joinRoom(room);
  client.join(STATS, { presence: false }).catch(() => {});
  setInterval(scheduleLists, 5000);
}

function rate(v) {
  if (typeof v !== 'number') return '?';
  if (v > 1e6) return `${(v / 1e6).toFixed(1)} MB/s`;
  if (v > 1e3) return `${(v / 1e3).toFixed(1)} kB/s`;
  return `${v.toFixed(0)} B/s`;
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = $('signin-name').value.trim();
  const token = $('signin-token').value.trim();
  if (!name && !token) return;
  const cred = token ? { token } : { name };
  localStorage.setItem('wshub.cred', JSON.stringify(cred));
  start(cred);
});

$('signout').addEventListener('click', () => {
  localStorage.removeItem('wshub.cred');
  if (client) client.close();
  location.reload();
});

$('chat-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const input = $('chat-input');
  const text = input.value;
  if (!text.trim() || !client) return;
  input.value = '';
  // Sent at once when online, queued (in order, bounded) while reconnecting.
  client.chat(current, text).catch((e) => toast(`not sent: ${e.code || e.message}`));
});

$('room-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const room = $('room-input').value.trim();
  $('room-input').value = '';
  switchRoom(room);
});

try {
  const saved = JSON.parse(localStorage.getItem('wshub.cred'));
  if (saved && (saved.name || saved.token)) start(saved);
} catch {
  /* nothing saved */
}
