// wshub client: one WebSocket to a wshub server that stays useful across drops.
// It reconnects with capped exponential backoff and full jitter, re-joins its rooms
// from the last position it saw (the server replays what was missed, or says it
// cannot), queues what the application sends while offline (bounded; overflow is
// rejected), answers every request with a promise settled by the server's reply to
// its id, notices a dead connection with an application-level ping, and refreshes
// its token on the open connection when the server says it is about to expire.
// No dependencies: the global WebSocket (browsers, Node 22+) or else the `ws` package.

export const VERSION = '0.1.0';

// Close codes with a meaning for reconnection (docs/protocol.md, section 8).
export const CLOSE_POLICY = 1008;
export const CLOSE_TOKEN_EXPIRED = 4001;

const DEFAULTS = {
  backoff: { initial: 500, max: 30000, factor: 2 },
  requestTimeout: 10000,
  queueLimit: 100,
  heartbeat: { interval: 25000, timeout: 10000 },
  connectTimeout: 15000,
  recoverUser: true,
  tokenIn: 'query', // or 'protocol': sent as the subprotocol bearer.<token> beside wshub
};

// An error the server answered (`code` is its machine-readable code), or one the
// client made up: timeout, queue_full, disconnected, closed.
export class WshubError extends Error {
  constructor(code, message, reply) {
    super(`${code}: ${message}`);
    this.name = 'WshubError';
    this.code = code;
    this.reply = reply;
  }
}

// The delay before reconnect attempt `attempt` (0-based): full jitter, a uniform draw
// in [0, min(max, initial * factor^attempt)]. Jitter spreads the reconnects of many
// clients that lost the same server, so that its restart is not a stampede.
export function backoffDelay(attempt, { initial, max, factor } = DEFAULTS.backoff, random = Math.random) {
  const cap = Math.min(max, initial * Math.pow(factor, Math.min(attempt, 64)));
  return Math.floor(random() * cap);
}

let wsImpl = null;
async function webSocketImpl(given) {
  if (given) return given;
  if (typeof globalThis.WebSocket === 'function') return globalThis.WebSocket;
  if (!wsImpl) {
    const name = 'ws'; // a variable, so that browser bundlers do not try to bundle it
    const mod = await import(name);
    wsImpl = mod.WebSocket || mod.default;
  }
  return wsImpl;
}

// Guide-compatible handler names: method name for each message type.
const GUIDE_HANDLERS = {
  chat_message: 'onChatMessage',
  notification: 'onNotification',
  data_update: 'onDataUpdate',
};

export class WshubClient {
  constructor(url, options = {}) {
    this.url = url;
    this.options = {
      ...DEFAULTS,
      ...options,
      backoff: { ...DEFAULTS.backoff, ...(options.backoff || {}) },
      heartbeat: options.heartbeat === false ? false : { ...DEFAULTS.heartbeat, ...(options.heartbeat || {}) },
    };
    this.state = 'closed';
    this.userId = null;
    this.rooms = new Map(); // room -> {seq, epoch, joined, waiters: [{resolve, reject}]}
    this.user = { seq: null, epoch: null }; // the user stream's position
    this._handlers = new Map();
    this._pending = new Map(); // id -> {resolve, reject, timer, type}
    this._queue = []; // {frame, id, type, resolve, reject}
    this._nextId = 1;
    this._ws = null;
    this._attempt = 0;
    this._timer = null;
    this._hbTimer = null;
    this._lastRx = 0;
    this._stopped = false;
    this._connects = 0;
    this._random = options.random || Math.random;
    for (const k of ['onConnect', 'onChatMessage', 'onNotification', 'onDataUpdate']) {
      if (typeof options[k] === 'function') this[k] = options[k];
    }
  }

  // The guide's handler names: override them or pass them as options.
  onConnect() {}
  onChatMessage() {}
  onNotification() {}
  onDataUpdate() {}

  // Subscribes fn to an event: a server message type ('chat_message', 'presence', ...),
  // 'message' (every server message), or a client event: 'state', 'connect',
  // 'disconnect', 'close', 'joined', 'recovery_failed', 'session', 'token_refreshed',
  // 'error'. Returns a function that unsubscribes.
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const s = this._handlers.get(type);
    if (s) s.delete(fn);
  }

  _emit(type, ...args) {
    const s = this._handlers.get(type);
    if (!s) return;
    for (const fn of [...s]) {
      try {
        fn(...args);
      } catch (e) {
        // An application handler that throws must not break the connection.
        if (type !== 'handler_error') this._emit('handler_error', e, type);
      }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    const prev = this.state;
    this.state = s;
    this._emit('state', s, prev);
  }

  // Starts connecting (connect() calls it). Resolves once; the client keeps
  // reconnecting on its own afterwards.
  open() {
    if (this.state !== 'closed' || this._opened) return this;
    this._opened = true;
    this._stopped = false;
    this._dial();
    return this;
  }

  // Closes for good: no reconnect. Pending requests and queued messages are rejected.
  close(code = 1000, reason = '') {
    this._stop({ code, reason, byClient: true });
  }

  // ----------------------------------------------------------------- requests

  // since {seq, epoch}: a position saved earlier (a page reload): the server replays
  // what came after it, or answers recovered: false.
  join(room, { presence, since } = {}) {
    let r = this.rooms.get(room);
    if (!r) {
      r = { seq: null, epoch: null, joined: false, presence, waiters: [] };
      if (since && typeof since.seq === 'number' && since.epoch) {
        r.seq = since.seq;
        r.epoch = since.epoch;
      }
      this.rooms.set(room, r);
    } else if (presence !== undefined) r.presence = presence;
    if (this._stopped) return Promise.reject(new WshubError('closed', 'the client is closed'));
    if (r.joined && this.state === 'open') {
      return this._request('join_room', this._joinPayload(room, r, false));
    }
    // Offline (or rejoining): the room is joined by the (re)join pass.
    const p = new Promise((resolve, reject) => r.waiters.push({ resolve, reject }));
    if (this.state === 'open') this._joinRoom(room, r).catch(() => {});
    return p;
  }

  leave(room) {
    const r = this.rooms.get(room);
    this.rooms.delete(room);
    if (r) for (const w of r.waiters.splice(0)) w.reject(new WshubError('left', 'left before joined'));
    if (this.state !== 'open' || !r || !r.joined) {
      // Not joined on the server side (offline): forgetting the room is enough.
      return Promise.resolve({ type: 'room_left', payload: { room_id: room } });
    }
    return this._request('leave_room', { room_id: room });
  }

  sendToRoom(room, payload = {}) {
    return this._request('send_to_room', { ...payload, room_id: room }, { queue: true });
  }

  sendToUser(user, payload = {}) {
    return this._request('send_to_user', { ...payload, user_id: user }, { queue: true });
  }

  chat(room, text) {
    return this._request('chat_message', { room_id: room, content: String(text) }, { queue: true });
  }

  // Any request type (queries: 'online_users', 'list_rooms', 'room_members', 'ping').
  request(type, payload = {}, opts = {}) {
    return this._request(type, payload, opts);
  }

  listRooms(opts) {
    return this._request('list_rooms', opts || {}).then((m) => m.payload);
  }

  onlineUsers() {
    return this._request('online_users', {}).then((m) => m.payload);
  }

  roomMembers(room) {
    return this._request('room_members', { room_id: room }).then((m) => m.payload);
  }

  ping(timeout) {
    return this._request('ping', {}, { timeout });
  }

  // Sends a message without an id (fire and forget, no promise), like the guide's
  // client: {type, payload, timestamp}. Queued while offline like the others.
  // Returns true when it was sent or queued; false when it was refused (queue full,
  // client closed), which is also reported as an 'error' event.
  send(type, payload = {}) {
    const frame = JSON.stringify({ type, payload, timestamp: new Date().toISOString() });
    let err = null;
    if (this._stopped) err = new WshubError('closed', 'the client is closed');
    else if (this.state === 'open') {
      if (this._write(frame)) return true;
      err = new WshubError('disconnected', 'the connection is not open');
    } else if (this._queue.length >= this.options.queueLimit) {
      err = new WshubError('queue_full', `offline queue full (${this.options.queueLimit} messages)`);
    } else {
      this._enqueue({ frame, id: null, type }).catch(() => {}); // a later close() rejects it
      return true;
    }
    this._emit('error', err);
    return false;
  }

  // Messages sent while offline wait in a bounded queue and go out in order once
  // the rooms are re-joined. Queries are not queued: they fail fast when offline.
  _request(type, payload, { queue = false, timeout } = {}) {
    if (this._stopped) return Promise.reject(new WshubError('closed', 'the client is closed'));
    const id = `c${this._nextId++}`;
    const frame = JSON.stringify({ type, payload, id });
    if (this.state === 'open') return this._sendWithReply(frame, id, type, timeout);
    if (!queue && type !== 'join_room')
      return Promise.reject(new WshubError('disconnected', `not connected (state ${this.state})`));
    return this._enqueue({ frame, id, type, timeout });
  }

  _enqueue(item) {
    if (this._queue.length >= this.options.queueLimit)
      return Promise.reject(new WshubError('queue_full', `offline queue full (${this.options.queueLimit} messages)`));
    return new Promise((resolve, reject) => {
      this._queue.push({ ...item, resolve, reject });
    });
  }

  // onReply(m) runs synchronously when the reply is read, before later messages.
  _sendWithReply(frame, id, type, timeout = this.options.requestTimeout, onReply = null) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new WshubError('timeout', `no reply to ${type} within ${timeout} ms`));
      }, timeout);
      this._pending.set(id, { resolve, reject, timer, type, onReply });
      if (!this._write(frame)) {
        clearTimeout(timer);
        this._pending.delete(id);
        reject(new WshubError('disconnected', 'the connection is not open'));
      }
    });
  }

  _write(frame) {
    const ws = this._ws;
    if (!ws || ws.readyState !== 1) return false;
    try {
      ws.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  // ----------------------------------------------------------------- connection

  async _dial() {
    if (this._stopped) return;
    this._setState(this._connects === 0 ? 'connecting' : 'reconnecting');
    let token;
    let Impl;
    try {
      Impl = await webSocketImpl(this.options.WebSocket);
      token = this.options.getToken ? await this.options.getToken() : this.options.token;
    } catch (e) {
      this._emit('error', e);
      this._scheduleReconnect({ code: 0, reason: `getToken failed: ${e && e.message}` });
      return;
    }
    if (this._stopped) return;
    const u = new URL(this.url, typeof location !== 'undefined' ? location.href : undefined);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    else if (u.protocol === 'https:') u.protocol = 'wss:';
    const protocols = ['wshub'];
    // Percent-encoded by hand: URLSearchParams writes a space as '+', which the server
    // (like most) reads as a literal '+' in a token.
    const params = [];
    if (token !== undefined && token !== null) {
      if (this.options.tokenIn === 'protocol') protocols.push(`bearer.${token}`);
      else params.push(`token=${encodeURIComponent(token)}`);
    }
    if (this.options.recoverUser) {
      params.push(`since=${this.user.seq ?? 0}`);
      if (this.user.epoch) params.push(`epoch=${encodeURIComponent(this.user.epoch)}`);
    }
    const kept = u.search.slice(1).split('&').filter((kv) => kv && !/^(token|since|epoch)=/.test(kv));
    u.search = '';
    u.hash = '';
    const query = [...kept, ...params].join('&');
    let ws;
    try {
      ws = new Impl(u.toString() + (query ? `?${query}` : ''), protocols);
    } catch (e) {
      this._emit('error', e);
      this._scheduleReconnect({ code: 0, reason: String(e && e.message) });
      return;
    }
    this._ws = ws;
    this._rejoining = null;
    const connectTimer = setTimeout(() => this._drop(ws, 4900, 'connect timeout'), this.options.connectTimeout);
    ws.onopen = () => {
      clearTimeout(connectTimer);
      if (this._ws !== ws) return;
      this._lastRx = Date.now();
      this._startHeartbeat();
      this._rejoin();
    };
    ws.onmessage = (ev) => {
      if (this._ws !== ws) return;
      this._lastRx = Date.now();
      this._onFrame(ev.data);
    };
    ws.onerror = (ev) => {
      if (this._ws === ws) this._emit('error', ev && ev.error ? ev.error : new Error('WebSocket error'));
    };
    ws.onclose = (ev) => {
      clearTimeout(connectTimer);
      if (this._ws !== ws) return;
      this._onClosed(ev.code, ev.reason || '');
    };
  }

  // Gives up on a connection (dead or stuck): the close event of a dead TCP
  // connection may take minutes, so it is detached and treated as closed now.
  _drop(ws, code, reason) {
    if (this._ws !== ws) return;
    this._ws = null;
    ws.onopen = ws.onmessage = ws.onclose = null;
    ws.onerror = () => {};
    try {
      if (typeof ws.terminate === 'function') ws.terminate();
      else ws.close(4000, reason);
    } catch {
      /* already closing */
    }
    this._onClosed(code, reason, ws);
  }

  _onClosed(code, reason) {
    this._ws = null;
    this._stopHeartbeat();
    const wasOpen = this.state === 'open';
    // In flight: unknown whether the server carried them out; the caller decides.
    for (const [id, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(new WshubError('disconnected', `connection lost before the reply to ${p.type}`));
      this._pending.delete(id);
    }
    for (const r of this.rooms.values()) r.joined = false;
    if (this._stopped) return;
    const tokenExpired = code === CLOSE_TOKEN_EXPIRED;
    if (code === CLOSE_POLICY || (code >= 4000 && code < 5000 && !tokenExpired && code !== 4900) ||
        (tokenExpired && !this.options.getToken)) {
      this._stop({ code, reason, byClient: false });
      return;
    }
    if (wasOpen) this._attempt = 0;
    this._scheduleReconnect({ code, reason });
  }

  _scheduleReconnect({ code, reason }) {
    if (this._stopped) return;
    const delay = backoffDelay(this._attempt, this.options.backoff, this._random);
    this._attempt++;
    this._setState('reconnecting');
    this._emit('disconnect', { code, reason, delay, attempt: this._attempt });
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this._dial(), delay);
  }

  _stop({ code, reason, byClient }) {
    if (this._stopped) return;
    this._stopped = true;
    clearTimeout(this._timer);
    this._stopHeartbeat();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try {
        ws.close(code === 1000 || (code >= 3000 && code < 5000) ? code : 1000, reason);
      } catch {
        /* not open yet */
      }
    }
    const err = new WshubError('closed', byClient ? 'the client was closed' : `the server closed with ${code} ${reason}`);
    for (const [, p] of this._pending) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this._pending.clear();
    for (const q of this._queue.splice(0)) q.reject(err);
    for (const r of this.rooms.values()) for (const w of r.waiters.splice(0)) w.reject(err);
    this._setState('closed');
    this._emit('close', { code, reason, byClient });
  }

  // After the socket opens: re-join every room from its last position, then flush
  // the offline queue in order, then the connection counts as open.
  async _rejoin() {
    const ws = this._ws;
    const reconnect = this._connects > 0;
    const tried = new Set();
    // Rooms joined by the application during the pass are taken by the next round.
    for (;;) {
      const todo = [...this.rooms.entries()].filter(([room]) => !tried.has(room));
      if (!todo.length) break;
      for (const [room] of todo) tried.add(room);
      await Promise.allSettled(todo.map(([room, r]) => this._joinRoom(room, r, reconnect)));
      if (this._ws !== ws || this._stopped) return;
    }
    this._connects++;
    this._setState('open');
    const queued = this._queue.splice(0);
    for (const q of queued) {
      if (q.id === null) {
        if (this._write(q.frame)) q.resolve(true);
        else q.reject(new WshubError('disconnected', 'connection lost while flushing'));
      } else {
        this._sendWithReply(q.frame, q.id, q.type, q.timeout).then(q.resolve, q.reject);
      }
    }
    this._emit('connect', { reconnect, userId: this.userId });
    try {
      this.onConnect({ reconnect });
    } catch (e) {
      this._emit('handler_error', e, 'onConnect');
    }
  }

  _joinPayload(room, r, withSince) {
    const p = { room_id: room };
    if (r.presence !== undefined) p.presence = r.presence;
    if (withSince && r.epoch && r.seq !== null) p.since = { seq: r.seq, epoch: r.epoch };
    return p;
  }

  // The room's position is updated synchronously when the reply is read (not in a
  // promise callback): the replayed and live messages right behind the reply in the
  // same read must already be checked against the new position.
  _joinRoom(room, r, rejoin = false) {
    const id = `c${this._nextId++}`;
    const frame = JSON.stringify({ type: 'join_room', payload: this._joinPayload(room, r, true), id });
    if (!r.epoch) r.seq = null; // no position the server can continue: start afresh
    const onReply = (m) => {
      if (m.type !== 'room_joined' || this.rooms.get(room) !== r) return;
      const p = m.payload || {};
      const info = { room_id: room, seq: p.seq, epoch: p.epoch, recovered: p.recovered, replayed: p.replayed || 0, rejoin };
      if (p.recovered === false) {
        this._emit('recovery_failed', { ...info, stream: 'room', lastSeq: r.seq, lastEpoch: r.epoch });
      }
      // recovered: the replayed messages (seq above ours) follow, keep our position.
      if ((p.recovered === false || r.seq === null) && typeof p.seq === 'number') r.seq = p.seq;
      if (typeof p.epoch === 'string') r.epoch = p.epoch;
      r.joined = true;
      this._emit('joined', info);
      for (const w of r.waiters.splice(0)) w.resolve(m);
    };
    return this._sendWithReply(frame, id, 'join_room', undefined, onReply).catch((e) => {
      if (e.code !== 'disconnected' && e.code !== 'closed' && this.rooms.get(room) === r) {
        // The server refused the room (forbidden, ...): forget it and say so.
        this.rooms.delete(room);
        for (const w of r.waiters.splice(0)) w.reject(e);
        this._emit('error', e);
      }
      throw e;
    });
  }

  // ----------------------------------------------------------------- heartbeat

  // A dead connection (a NAT dropped it, a laptop slept) can look open for minutes.
  // When nothing has arrived for `interval`, ask for a pong; when nothing at all
  // arrives within `timeout` after that, drop the socket and reconnect.
  _startHeartbeat() {
    const hb = this.options.heartbeat;
    if (!hb) return;
    this._stopHeartbeat();
    const tick = Math.max(50, Math.min(hb.interval, hb.timeout) / 2);
    let probeSentAt = 0;
    this._hbTimer = setInterval(() => {
      const ws = this._ws;
      if (!ws) return;
      const now = Date.now();
      if (probeSentAt && this._lastRx < probeSentAt && now - probeSentAt >= hb.timeout) {
        probeSentAt = 0;
        this._emit('heartbeat_timeout', { silentFor: now - this._lastRx });
        this._drop(ws, 4900, 'heartbeat timeout');
        return;
      }
      if (this._lastRx >= probeSentAt) probeSentAt = 0;
      if (!probeSentAt && now - this._lastRx >= hb.interval) {
        probeSentAt = now;
        this._write(JSON.stringify({ type: 'ping', id: `hb${this._nextId++}` }));
      }
    }, tick);
  }

  _stopHeartbeat() {
    clearInterval(this._hbTimer);
    this._hbTimer = null;
  }

  // ----------------------------------------------------------------- incoming

  _onFrame(data) {
    let m;
    try {
      m = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
    } catch {
      this._emit('error', new Error('a message from the server is not JSON'));
      return;
    }
    if (!m || typeof m !== 'object') return;
    const type = m.type;
    // Replies: top-level id (room_joined, queries, pong) or payload.id (ack, error).
    const rid = m.id !== undefined ? m.id : type === 'ack' || type === 'error' ? m.payload && m.payload.id : undefined;
    if (rid !== undefined && this._pending.has(rid)) {
      const p = this._pending.get(rid);
      this._pending.delete(rid);
      clearTimeout(p.timer);
      if (type === 'error') {
        p.reject(new WshubError(m.payload.code, m.payload.message, m));
      } else {
        if (p.onReply) p.onReply(m);
        p.resolve(m);
      }
      if (type === 'error' || type === 'ack') return;
    }
    if (typeof rid === 'string' && rid.startsWith('hb')) return;
    if (type === 'session') return this._onSession(m);
    if (type === 'token_expiring') return this._onTokenExpiring(m);
    if (type === 'room_joined' && rid === undefined) return this._onRoomReset(m);
    if (typeof m.seq === 'number') {
      if (typeof m.room_id === 'string') {
        const r = this.rooms.get(m.room_id);
        if (r) {
          if (r.seq !== null && m.seq <= r.seq) return; // a duplicate after a rejoin
          r.seq = m.seq;
        }
      } else if (this.user.seq !== null && m.seq <= this.user.seq) {
        return;
      } else {
        this.user.seq = m.seq;
      }
    }
    this._emit('message', m);
    // An unsolicited `error` is the client's 'error' event (a WshubError, .reply the
    // message), not emitted a second time under its type.
    if (type === 'error') this._emit('error', new WshubError(m.payload.code, m.payload.message, m));
    else if (type) this._emit(type, m.payload, m);
    const guide = GUIDE_HANDLERS[type];
    if (guide) {
      try {
        this[guide](m.payload, m);
      } catch (e) {
        this._emit('handler_error', e, guide);
      }
    }
  }

  // Unasked room_joined (cluster mode): the room's stream started over (Redis lost it),
  // so positions before are void: take the new one, or later messages would look old.
  _onRoomReset(m) {
    const p = m.payload || {};
    const r = this.rooms.get(p.room_id);
    if (!r) return;
    this._emit('recovery_failed', { room_id: p.room_id, stream: 'room', seq: p.seq, epoch: p.epoch, recovered: false, replayed: 0, lastSeq: r.seq, lastEpoch: r.epoch, reset: true });
    if (typeof p.seq === 'number') r.seq = p.seq;
    if (typeof p.epoch === 'string') r.epoch = p.epoch;
    this._emit('room_joined', p, m);
  }

  _onSession(m) {
    const p = m.payload || {};
    this.userId = p.user_id ?? this.userId;
    const had = this.user.seq;
    if (p.recovered === false && had) {
      this._emit('recovery_failed', { stream: 'user', user_id: p.user_id, seq: p.seq, epoch: p.epoch, lastSeq: had, lastEpoch: this.user.epoch });
    }
    if (p.recovered !== true && typeof p.seq === 'number') this.user.seq = p.seq;
    if (typeof p.epoch === 'string') this.user.epoch = p.epoch;
    this._emit('session', p);
  }

  // The server warns before the token's exp: fetch a fresh one and hand it over on
  // the open connection. Without getToken there is nothing to refresh with: the
  // server will close with 4001 and the client stops.
  async _onTokenExpiring(m) {
    this._emit('token_expiring', m.payload);
    if (!this.options.getToken) return;
    try {
      const token = await this.options.getToken();
      const r = await this._request('refresh', { token });
      this._emit('token_refreshed', r.payload);
    } catch (e) {
      this._emit('error', e);
    }
  }
}

// Creates a client and starts connecting. Options: token | getToken, backoff
// {initial, max, factor}, requestTimeout, queueLimit, heartbeat {interval, timeout}
// | false, connectTimeout, recoverUser, tokenIn, WebSocket, and the guide's handlers.
export function connect(url, options = {}) {
  return new WshubClient(url, options).open();
}

export default connect;
