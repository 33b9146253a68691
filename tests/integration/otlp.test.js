'use strict';
// OpenTelemetry export end to end: wshub POSTs OTLP/HTTP protobuf to a test receiver
// (otlp_receiver.js) that decodes it with the OpenTelemetry project's generated code.
// Checks the guide's spans (names, kinds, parent links upgrade -> receive -> process ->
// broadcast -> send), their attributes, the ids written into delivered messages, W3C
// traceparent continuation (upgrade header and message fields), sampling, metric values
// after a known workload, and the exporter under failure (collector down, slow,
// answering 503 with Retry-After): the server keeps serving, memory stays bounded,
// drops and retries are counted.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');

const { startServer, HubClient, closeAll, eventually, delay, withTimeout, metrics } = require('./hub_helpers');
const { startReceiver, SpanKind } = require('./otlp_receiver');

const FAST = { OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRIC_EXPORT_INTERVAL: '300' };

function byId(spans) {
  return new Map(spans.map((s) => [s.spanId, s]));
}

// The chain of span names from s up to its root (within what was exported).
function ancestry(spans, s) {
  const ids = byId(spans);
  const out = [];
  for (let cur = s; cur; cur = ids.get(cur.parentSpanId)) out.push(cur.name);
  return out;
}

function rssKb(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

// Alice and bob join a room; alice sends one message; returns what bob got.
async function roomRound(srv, room, extra = {}, aliceOpts = {}) {
  const alice = await HubClient.open(srv, 'alice', aliceOpts);
  const bob = await HubClient.open(srv, 'bob');
  alice.send('join_room', { room_id: room });
  await alice.takeType('room_joined');
  bob.send('join_room', { room_id: room });
  await bob.takeType('room_joined');
  alice.send('send_to_room', { room_id: room, text: 'hello' }, { id: 'msg-1', ...extra });
  const got = await bob.takeType('send_to_room');
  const ack = await alice.takeType('ack');
  return { alice, bob, got, ack };
}

describe('OTLP traces', () => {
  let rx;
  let srv;
  before(async () => {
    rx = await startReceiver();
    srv = await startServer(['--stream', ''], {
      env: {
        ...FAST,
        OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint,
        OTEL_SERVICE_NAME: 'wshub-test',
        OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=ci,team=a%2Cb',
        OTEL_EXPORTER_OTLP_HEADERS: 'x-test-key=s3cret,authorization=Bearer%20tok',
      },
    });
  });
  after(async () => {
    if (srv) await srv.stop();
    if (rx) await rx.close();
  });

  it('exports the guide spans with kinds, parent links, attributes and resource; ids in the delivered message match the send span', async () => {
    const room = 'otlp-room-1';
    const { alice, bob, got, ack } = await roomRound(srv, room);
    try {
      assert.match(got.trace_id, /^[0-9a-f]{32}$/);
      assert.match(got.span_id, /^[0-9a-f]{16}$/);
      const send = await eventually(() => rx.spans.find((s) => s.spanId === got.span_id), {
        what: 'the send span of the delivered message',
      });
      assert.equal(send.name, 'websocket.send');
      assert.equal(send.kind, SpanKind.SPAN_KIND_PRODUCER);
      assert.equal(send.traceId, got.trace_id);
      assert.equal(send.attributes['messaging.destination.name'], room);
      assert.equal(send.attributes['messaging.operation.type'], 'send');
      assert.equal(send.attributes['message.type'], 'send_to_room');
      const spans = await eventually(() => {
        const inTrace = rx.spans.filter((s) => s.traceId === got.trace_id);
        return ancestry(inTrace, send).length === 5 ? inTrace : null;
      }, { what: 'the whole chain of the message' });
      assert.deepEqual(ancestry(spans, send),
        ['websocket.send', 'hub.broadcast', 'hub.process_message', 'websocket.receive', 'websocket.upgrade']);
      const ids = byId(spans);
      const bc = ids.get(send.parentSpanId);
      const proc = ids.get(bc.parentSpanId);
      const recv = ids.get(proc.parentSpanId);
      const up = ids.get(recv.parentSpanId);
      assert.equal(bc.kind, SpanKind.SPAN_KIND_INTERNAL);
      assert.equal(bc.attributes['recipients.count'], 2, 'both members');
      assert.equal(bc.attributes['room.id'], room);
      assert.equal(proc.kind, SpanKind.SPAN_KIND_INTERNAL);
      assert.equal(proc.attributes['message.type'], 'send_to_room');
      assert.equal(proc.status.code, 1, 'process span OK');
      assert.equal(recv.kind, SpanKind.SPAN_KIND_CONSUMER);
      assert.equal(recv.attributes['message.type'], 'send_to_room');
      assert.equal(recv.attributes['user.id'], 'alice');
      assert.match(recv.attributes['client.id'], /^[0-9a-f]{16}$/);
      assert.equal(recv.attributes['messaging.message.id'], 'msg-1');
      assert.equal(recv.attributes['room.id'], room);
      assert.equal(recv.attributes['messaging.system'], 'wshub');
      assert.equal(up.kind, SpanKind.SPAN_KIND_SERVER);
      assert.equal(up.parentSpanId, '', 'the upgrade is the root');
      assert.equal(up.attributes['http.request.method'], 'GET');
      assert.equal(up.attributes['url.path'], '/ws');
      assert.equal(up.attributes['http.response.status_code'], 101);
      assert.equal(up.attributes['user.id'], 'alice');
      assert.equal(up.attributes['client.id'], recv.attributes['client.id']);
      assert.equal(up.status.code, 1);
      // Parent spans enclose their children in time.
      for (const [child, parent] of [[send, bc], [bc, proc], [proc, recv]]) {
        assert.ok(child.start >= parent.start && child.end <= parent.end, `${child.name} inside ${parent.name}`);
      }
      // The ack to the sender is its own send span under the same process span.
      const ackSend = spans.find((s) => s.spanId === ack.span_id);
      assert.ok(ackSend, 'ack carries the ids of an exported span');
      assert.equal(ackSend.parentSpanId, proc.spanId);
      assert.equal(ackSend.attributes['message.type'], 'ack');
      // Resource and scope.
      assert.equal(send.resource['service.name'], 'wshub-test');
      assert.equal(send.resource['deployment.environment'], 'ci');
      assert.equal(send.resource['team'], 'a,b', 'percent-decoded');
      assert.match(send.resource['service.version'], /^\d+\.\d+\.\d+/);
      assert.ok(send.resource['host.name']);
      assert.equal(send.scope, 'wshub');
      // The wire: protobuf, with the configured headers.
      const req = rx.requests.find((r) => r.kind === 'traces');
      assert.equal(req.contentType, 'application/x-protobuf');
      assert.equal(req.headers['x-test-key'], 's3cret');
      assert.equal(req.headers.authorization, 'Bearer tok');
      assert.deepEqual(rx.errors, []);
    } finally {
      await closeAll([alice, bob]);
    }
  });

  it('one hub.broadcast span with recipients.count for a fan-out, not one span per recipient', async () => {
    const room = 'otlp-fan';
    const members = [];
    for (let i = 0; i < 20; i++) members.push(await HubClient.open(srv, `fan${i}`));
    try {
      for (const m of members) {
        m.send('join_room', { room_id: room });
        await m.takeType('room_joined');
      }
      members[0].send('send_to_room', { room_id: room, n: 1 });
      const got = await Promise.all(members.map((m) => m.takeType('send_to_room')));
      const ids = new Set(got.map((g) => `${g.trace_id}/${g.span_id}`));
      assert.equal(ids.size, 1, 'every member got the one frame, with the same ids');
      const send = await eventually(() => rx.spans.find((s) => s.spanId === got[0].span_id));
      const broadcasts = await eventually(() => {
        const b = rx.spans.filter((s) => s.traceId === got[0].trace_id && s.name === 'hub.broadcast' &&
          s.attributes['message.type'] === 'send_to_room');
        return b.length ? b : null;
      });
      assert.equal(broadcasts.length, 1);
      assert.equal(broadcasts[0].attributes['recipients.count'], 20);
      assert.equal(send.parentSpanId, broadcasts[0].spanId);
      await delay(300);
      assert.equal(rx.spans.filter((s) => s.traceId === got[0].trace_id && s.name === 'websocket.send' &&
        s.attributes['message.type'] === 'send_to_room').length, 1);
    } finally {
      await closeAll(members);
    }
  });

  it('continues a traceparent sent with the upgrade request', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const { alice, bob, got } = await roomRound(srv, 'otlp-tp-header', {}, {
      headers: { traceparent: `00-${traceId}-${parent}-01` },
    });
    try {
      const up = await eventually(() => rx.spans.find((s) => s.name === 'websocket.upgrade' && s.traceId === traceId));
      assert.equal(up.parentSpanId, parent);
      assert.equal(got.trace_id, traceId, 'the message sent on that connection is in the same trace');
    } finally {
      await closeAll([alice, bob]);
    }
  });

  it('continues a message\'s traceparent field, and the guide\'s trace_id/span_id fields', async () => {
    const t1 = '0af7651916cd43dd8448eb211c80319c';
    const p1 = 'b7ad6b7169203331';
    const r1 = await roomRound(srv, 'otlp-tp-msg', { traceparent: `00-${t1}-${p1}-01` });
    const t2 = 'a1b2c3d4e5f60718293a4b5c6d7e8f90';
    const p2 = '1122334455667788';
    const r2 = await roomRound(srv, 'otlp-guide-ids', { trace_id: t2, span_id: p2 });
    try {
      for (const [r, t, p] of [[r1, t1, p1], [r2, t2, p2]]) {
        assert.equal(r.got.trace_id, t);
        const recv = await eventually(() => rx.spans.find((s) => s.name === 'websocket.receive' && s.traceId === t));
        assert.equal(recv.parentSpanId, p);
      }
    } finally {
      await closeAll([r1.alice, r1.bob, r2.alice, r2.bob]);
    }
  });

  it('a refused message: the process span is an error with the code; the error reply carries ids', async () => {
    const c = await HubClient.open(srv, 'carol');
    try {
      c.send('join_room', {}, { id: 'bad-1' });
      const err = await c.takeType('error');
      assert.equal(err.payload.code, 'missing_field');
      const send = await eventually(() => rx.spans.find((s) => s.spanId === err.span_id));
      const proc = await eventually(() => rx.spans.find((s) => s.spanId === send.parentSpanId));
      assert.equal(proc.name, 'hub.process_message');
      assert.equal(proc.status.code, 2);
      assert.equal(proc.attributes['error.type'], 'missing_field');
    } finally {
      await closeAll([c]);
    }
  });

  it('a recovery is a hub.recover span under the join\'s hub.process_message, with the position, result and count', async () => {
    const a = await HubClient.open(srv, 'rec-a');
    const b = await HubClient.open(srv, 'rec-b');
    let a2;
    try {
      a.send('join_room', { room_id: 'otlp-rec' }, { id: 'j' });
      const j = await a.takeType('room_joined');
      b.send('join_room', { room_id: 'otlp-rec' }, { id: 'j' });
      await b.takeType('room_joined');
      for (let i = 0; i < 3; i++) {
        b.send('send_to_room', { room_id: 'otlp-rec', i }, { id: `m${i}` });
        await b.takeType('ack');
      }
      const since = j.payload.seq + 1; // after a's own presence event
      a2 = await HubClient.open(srv, 'rec-a');
      a2.send('join_room', { room_id: 'otlp-rec', since: { seq: since, epoch: j.payload.epoch } }, { id: 'r' });
      const r = await a2.takeType('room_joined');
      assert.equal(r.payload.recovered, true);
      const rec = await eventually(() => rx.spans.find((s) => s.name === 'hub.recover' && s.traceId === r.trace_id));
      assert.equal(rec.kind, SpanKind.SPAN_KIND_INTERNAL);
      assert.equal(rec.attributes['messaging.destination.name'], 'otlp-rec');
      assert.equal(rec.attributes['messaging.destination.kind'], 'room');
      assert.equal(rec.attributes['recovery.since'], since);
      assert.equal(rec.attributes['recovery.recovered'], true);
      assert.equal(rec.attributes['recovery.replayed'], r.payload.replayed);
      const proc = await eventually(() => rx.spans.find((s) => s.spanId === rec.parentSpanId));
      assert.equal(proc.name, 'hub.process_message');
    } finally {
      await closeAll([a, b, ...(a2 ? [a2] : [])]);
    }
  });

  it('exports the guide metrics with the values of a known workload (cumulative)', async () => {
    // A baseline once earlier tests' traffic has been exported: two exports in a row agree.
    const val = (m, name) => (m[name] ? m[name].points[0].value : 0);
    const n0 = rx.metrics.length;
    const before = await eventually(() => {
      const k = rx.metrics.length;
      if (k < n0 + 2) return null;
      const [x, y] = [rx.metrics[k - 2], rx.metrics[k - 1]];
      return val(x, 'websocket.messages.received') === val(y, 'websocket.messages.received') &&
        val(x, 'websocket.messages.sent') === val(y, 'websocket.messages.sent') ? y : null;
    }, { what: 'a quiet baseline' });
    const base = (name) => (before[name] ? before[name].points[0].value : 0);
    const recv0 = base('websocket.messages.received');
    const sent0 = base('websocket.messages.sent');
    const a = await HubClient.open(srv, 'm-a');
    const b = await HubClient.open(srv, 'm-b');
    try {
      a.send('join_room', { room_id: 'otlp-metrics' });
      await a.takeType('room_joined');
      b.send('join_room', { room_id: 'otlp-metrics' });
      await b.takeType('room_joined');
      for (let i = 0; i < 10; i++) a.send('send_to_room', { room_id: 'otlp-metrics', i });
      await b.takeN((m) => m.type === 'send_to_room', 10);
      await a.takeN((m) => m.type === 'send_to_room', 10);
      // received: 2 joins + 10 sends; sent: 2 room_joined + 1 presence (b's join, to a) + 20 deliveries
      const m = await eventually(() => {
        const last = rx.metrics[rx.metrics.length - 1];
        const r = last['websocket.messages.received'].points[0].value - recv0;
        const s = last['websocket.messages.sent'].points[0].value - sent0;
        if (!(r === 12 && s === 25)) throw new Error(`received +${r}, sent +${s}`);
        return last;
      }, { what: 'the metric values after the workload', timeout: 5000 });
      assert.equal(m['websocket.messages.received'].kind, 'sum');
      assert.equal(m['websocket.messages.received'].monotonic, true);
      assert.equal(m['websocket.messages.received'].temporality, 2, 'cumulative');
      assert.notEqual(m['websocket.active_connections'].monotonic, true, 'an up-down counter');
      assert.ok(m['websocket.active_connections'].points[0].value >= 2);
      assert.equal(m['wshub.otel.spans.dropped'].points[0].value, 0);
      // A histogram and an attributed series from the same registry as /metrics.
      const lat = m['hub.delivery.latency'];
      assert.equal(lat.kind, 'histogram');
      assert.equal(lat.temporality, 2);
      const latBefore = before['hub.delivery.latency'] ? before['hub.delivery.latency'].points[0].count : 0;
      assert.ok(lat.points[0].count - latBefore >= 20, 'one latency sample per delivery');
      assert.ok(m['websocket.handshake.failures'].points.every((p) => typeof p.attributes.reason === 'string'));
      assert.ok(m['wshub.otel.spans.exported'].points[0].value > 0);
    } finally {
      await closeAll([a, b]);
    }
  });
});

describe('OTLP sampling', () => {
  it('ratio 0: nothing is exported and messages carry no ids; a sampled remote parent is still followed', async () => {
    const rx = await startReceiver();
    const srv = await startServer(['--stream', ''], {
      env: {
        ...FAST,
        OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint,
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: '0',
      },
    });
    try {
      const r = await roomRound(srv, 'sample-0');
      assert.equal(r.got.trace_id, undefined);
      assert.equal(r.got.span_id, undefined);
      // Unsampled remote parent: still nothing.
      r.alice.send('send_to_room', { room_id: 'sample-0' },
        { traceparent: '00-11111111111111111111111111111111-2222222222222222-00' });
      const g2 = await r.bob.takeType('send_to_room');
      assert.equal(g2.trace_id, undefined);
      await eventually(() => rx.metrics.length >= 1, { what: 'a metrics export (the exporter runs)' });
      await delay(300);
      assert.equal(rx.spans.length, 0, `spans exported at ratio 0: ${rx.spans.map((s) => s.name)}`);
      // A sampled remote parent: parent-based sampling follows it.
      const t = 'c0ffee00c0ffee00c0ffee00c0ffee00';
      r.alice.send('send_to_room', { room_id: 'sample-0' }, { traceparent: `00-${t}-3333333333333333-01` });
      const g3 = await r.bob.takeType('send_to_room');
      assert.equal(g3.trace_id, t);
      await eventually(() => rx.spans.some((s) => s.traceId === t && s.name === 'websocket.receive'));
      await closeAll([r.alice, r.bob]);
    } finally {
      await srv.stop();
      await rx.close();
    }
  });

  it('OTEL_EXPORTER_OTLP_COMPRESSION=gzip: bodies are gzipped (Content-Encoding) and decode to the same spans', async () => {
    const rx = await startReceiver();
    const srv = await startServer(['--stream', ''], {
      env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip' },
    });
    try {
      const r = await roomRound(srv, 'gzip');
      await eventually(() => rx.spans.some((s) => s.spanId === r.got.span_id), { what: 'the gzipped spans' });
      const tr = rx.requests.filter((q) => q.kind === 'traces');
      assert.ok(tr.every((q) => q.headers['content-encoding'] === 'gzip'));
      await eventually(() => rx.metrics.length > 0, { what: 'gzipped metrics' });
      assert.deepEqual(rx.errors, []);
      await closeAll([r.alice, r.bob]);
    } finally {
      await srv.stop();
      await rx.close();
    }
  });

  it('OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none export no spans; a bad sampler refuses to start', async () => {
    const rx = await startReceiver();
    for (const env of [{ OTEL_SDK_DISABLED: 'true' }, { OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }]) {
      const srv = await startServer(['--stream', ''], { env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, ...env } });
      try {
        const r = await roomRound(srv, 'off');
        assert.equal(r.got.trace_id, undefined);
        await closeAll([r.alice, r.bob]);
        await delay(400);
      } finally {
        await srv.stop();
      }
    }
    assert.equal(rx.requests.length, 0);
    await rx.close();
    const { runWshub } = require('./harness');
    const res = await runWshub(['--listen', '127.0.0.1:0'], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:9', OTEL_TRACES_SAMPLER: 'sometimes' },
    });
    assert.equal(res.code, 2);
    assert.match(res.stderr, /OTEL_TRACES_SAMPLER/);
  });
});

describe('OTLP exporter under failure', () => {
  // Echo round trips on /ws (ping -> pong) stay fast while the exporter struggles.
  async function roundTrips(c, n) {
    const t0 = Date.now();
    for (let i = 0; i < n; i++) {
      c.send('ping', {}, { id: `p${i}` });
      await c.takeType('pong', 2000);
    }
    return (Date.now() - t0) / n;
  }

  it('collector down (connection refused): clients keep being served, memory stays bounded, drops are counted', async () => {
    const metricsRx = await startReceiver();
    // A port that refuses: bind then close.
    const dead = await startReceiver();
    const deadUrl = `${dead.endpoint}/v1/traces`;
    await dead.close();
    const srv = await startServer(['--stream', '', '--rate-limit', '0'], {
      env: {
        ...FAST,
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: deadUrl,
        OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: `${metricsRx.endpoint}/v1/metrics`,
        OTEL_BSP_MAX_QUEUE_SIZE: '64',
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '16',
      },
    });
    try {
      const c = await HubClient.open(srv, 'down');
      await roundTrips(c, 20);
      const rss0 = rssKb(srv.pid);
      for (let k = 0; k < 5; k++) {
        for (let i = 0; i < 400; i++) c.send('ping', {}, { id: i });
        await c.takeN((m) => m.type === 'pong', 400, 10000);
      }
      const perRt = await roundTrips(c, 20);
      assert.ok(perRt < 200, `round trip ${perRt} ms while the collector is down`);
      const grew = rssKb(srv.pid) - rss0;
      assert.ok(grew < 32 * 1024, `RSS grew by ${grew} kB for 2000 traced messages with a 64-span queue`);
      const m = await eventually(() => {
        const last = metricsRx.metrics[metricsRx.metrics.length - 1];
        return last && last['wshub.otel.spans.dropped'].points[0].value > 1000 &&
          last['wshub.otel.export.retries'].points[0].value > 0 ? last : null;
      }, { what: 'drops and retries in the metrics', timeout: 10000 });
      assert.equal(m['wshub.otel.spans.exported'].points[0].value, 0);
      // The same counters on GET /metrics.
      const prom = await metrics(srv);
      assert.ok(prom.get('wshub_otel_spans_dropped_total') > 1000);
      assert.ok(prom.get('wshub_otel_export_retries_total') > 0);
      assert.ok(m['wshub.otel.spans.queued'].points[0].value <= 64);
      await closeAll([c]);
      const t0 = Date.now();
      await srv.stop({ timeout: 15000 });
      assert.ok(Date.now() - t0 < 9000, `shutdown took ${Date.now() - t0} ms with the collector down`);
      const stopped = /OTLP exporter stopped.* spans_dropped=(\d+).* retries=(\d+)/.exec(srv.stderr());
      assert.ok(stopped && Number(stopped[1]) > 1000 && Number(stopped[2]) > 0, 'the exit line counts drops and retries');
    } finally {
      await srv.stop({ timeout: 15000 }).catch(() => {});
      await metricsRx.close();
    }
  });

  it('collector answering 503 with Retry-After: the batch is retried after the delay it asked for, then delivered', async () => {
    const rx = await startReceiver({
      behaviour: (kind, n) => (kind === 'traces' && n < 2 ? { status: 503, headers: { 'Retry-After': '1' } } : {}),
    });
    const srv = await startServer(['--stream', ''], { env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint } });
    try {
      const r = await roomRound(srv, 'retry');
      const perRt = await roundTrips(r.alice, 10);
      assert.ok(perRt < 200);
      await eventually(() => rx.spans.some((s) => s.spanId === r.got.span_id), {
        what: 'the spans, after two 503s', timeout: 10000,
      });
      const tr = rx.requests.filter((q) => q.kind === 'traces');
      assert.equal(tr[0].status, 503);
      assert.equal(tr[1].status, 503);
      assert.equal(tr[2].status, 200);
      assert.ok(tr[1].at - tr[0].at >= 900, `retry came ${tr[1].at - tr[0].at} ms after a Retry-After: 1`);
      assert.ok(tr[2].at - tr[1].at >= 900);
      await closeAll([r.alice, r.bob]);
    } finally {
      await srv.stop();
      await rx.close();
    }
  });

  it('slow collector (answers after 3 s, timeout 500 ms): clients are served at full speed, the export times out and is retried', async () => {
    let slow = true;
    const rx = await startReceiver({ behaviour: (kind) => (kind === 'traces' && slow ? { delayMs: 3000 } : {}) });
    const srv = await startServer(['--stream', ''], {
      env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: '500' },
    });
    try {
      const r = await roomRound(srv, 'slow');
      await eventually(() => rx.requests.filter((q) => q.kind === 'traces').length >= 2, {
        what: 'a timed-out request and its retry', timeout: 8000,
      });
      const perRt = await roundTrips(r.alice, 20);
      assert.ok(perRt < 200, `round trip ${perRt} ms while the collector is slow`);
      slow = false;
      await eventually(() => rx.spans.some((s) => s.spanId === r.got.span_id), {
        what: 'delivery once the collector is fast again', timeout: 15000,
      });
      await closeAll([r.alice, r.bob]);
    } finally {
      await srv.stop({ timeout: 15000 });
      await rx.close();
    }
  });

  it('shutdown during a long Retry-After back-off still ends within the flush deadline', async () => {
    const rx = await startReceiver({
      behaviour: (kind) => (kind === 'traces' ? { status: 503, headers: { 'Retry-After': '30' } } : {}),
    });
    const srv = await startServer(['--stream', ''], { env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint } });
    try {
      const r = await roomRound(srv, 'backoff');
      await closeAll([r.alice, r.bob]);
      await eventually(() => rx.requests.some((q) => q.kind === 'traces' && q.status === 503), {
        what: 'the first 503',
      });
      const t0 = Date.now();
      await srv.stop({ timeout: 20000 });
      assert.ok(Date.now() - t0 < 8000, `shutdown took ${Date.now() - t0} ms inside a 30 s back-off`);
      assert.match(srv.stderr(), /OTLP exporter stopped.* spans_exported=0 spans_dropped=[1-9]/);
    } finally {
      await srv.stop({ timeout: 20000 }).catch(() => {});
      await rx.close();
    }
  });

  it('final flush on shutdown: spans still queued are exported before the process exits', async () => {
    const rx = await startReceiver();
    const srv = await startServer(['--stream', ''], {
      env: { OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint, OTEL_BSP_SCHEDULE_DELAY: '60000', OTEL_METRIC_EXPORT_INTERVAL: '60000' },
    });
    const r = await roomRound(srv, 'flush');
    await closeAll([r.alice, r.bob]);
    assert.equal(rx.spans.length, 0, 'nothing exported before the schedule delay');
    await withTimeout(srv.stop(), 10000, 'stop');
    assert.ok(rx.spans.some((s) => s.spanId === r.got.span_id), 'the send span was flushed at shutdown');
    assert.ok(rx.metrics.length >= 1, 'metrics exported at shutdown');
    await rx.close();
  });
});

describe('logs', () => {
  it('access line has chi\'s fields and the trace id; connection open/close lines at debug with client, user, remote, duration, code; JSON too', async () => {
    const rx = await startReceiver();
    for (const format of ['logfmt', 'json']) {
      const srv = await startServer(['--stream', '', '--log-level', 'debug', '--log-format', format], {
        env: { ...FAST, OTEL_EXPORTER_OTLP_ENDPOINT: rx.endpoint },
      });
      let tid;
      try {
        const traceId = '5bf92f3577b34da6a3ce929d0e0e4736';
        const c = await HubClient.open(srv, 'logger', { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
        tid = traceId;
        c.ws.close(4001, 'bye');
        await eventually(() => /client disconnected/.test(srv.stderr()), { what: 'the close line' });
      } finally {
        await srv.stop();
      }
      const lines = srv.stderr().split('\n').filter(Boolean);
      const pick = (re) => {
        const l = lines.find((x) => re.test(x));
        assert.ok(l, `no line matching ${re} in\n${srv.stderr()}`);
        return format === 'json' ? JSON.parse(l) : Object.fromEntries(
          [...l.matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)].map((m) => [m[1], m[2].replace(/^"|"$/g, '')]));
      };
      const access = pick(/http request/);
      assert.equal(access.method, 'GET');
      assert.equal(access.path, '/ws');
      assert.equal(access.proto, 'HTTP/1.1');
      assert.equal(String(access.status), '101');
      assert.ok('bytes' in access && 'duration_ms' in access);
      assert.equal(access.remote, '127.0.0.1');
      assert.equal(access.trace_id, tid);
      const open = pick(/client connected/);
      assert.equal(open.level, 'debug');
      assert.match(open.client, /^[0-9a-f]{16}$/);
      assert.equal(open.user, 'logger');
      assert.equal(open.remote, '127.0.0.1');
      assert.equal(open.trace_id, tid);
      const close = pick(/client disconnected/);
      assert.equal(close.client, open.client);
      assert.equal(String(close.code), '4001');
      assert.match(String(close.duration_ms), /^\d+$/);
    }
    await rx.close();
  });
});
