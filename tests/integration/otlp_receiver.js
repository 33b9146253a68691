'use strict';
// A test OTLP/HTTP receiver on 127.0.0.1: decodes what wshub POSTs with the
// OpenTelemetry project's own generated protobuf code (@opentelemetry/otlp-transformer's
// root, compiled from the official opentelemetry-proto files) and keeps the decoded
// requests for the tests to assert on. Its answers can be scripted (status codes,
// Retry-After, delays) to play a failing or slow collector.

const http = require('node:http');
const zlib = require('node:zlib');

const root = require('@opentelemetry/otlp-transformer/build/src/generated/root');

const TraceReq = root.opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest;
const MetricsReq = root.opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest;
const SpanKind = root.opentelemetry.proto.trace.v1.Span.SpanKind;

const hex = (b) => Buffer.from(b).toString('hex');

// An AnyValue as a plain JS value.
function anyValue(v) {
  if (!v) return undefined;
  if (v.stringValue !== undefined && v.stringValue !== null && v.value === 'stringValue') return v.stringValue;
  if (v.value === 'intValue') return Number(v.intValue);
  if (v.value === 'boolValue') return v.boolValue;
  if (v.value === 'doubleValue') return v.doubleValue;
  return v[v.value];
}

function attrs(list) {
  const o = {};
  for (const kv of list || []) o[kv.key] = anyValue(kv.value);
  return o;
}

// Flattens an ExportTraceServiceRequest into span objects with hex ids.
function spansOf(req) {
  const out = [];
  for (const rs of req.resourceSpans || []) {
    const resource = attrs(rs.resource && rs.resource.attributes);
    for (const ss of rs.scopeSpans || []) {
      for (const s of ss.spans || []) {
        out.push({
          name: s.name,
          kind: s.kind,
          kindName: SpanKind[s.kind],
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: s.parentSpanId && s.parentSpanId.length ? hex(s.parentSpanId) : '',
          start: BigInt(s.startTimeUnixNano.toString()),
          end: BigInt(s.endTimeUnixNano.toString()),
          attributes: attrs(s.attributes),
          status: s.status ? { code: s.status.code || 0, message: s.status.message || '' } : { code: 0 },
          scope: ss.scope ? ss.scope.name : '',
          resource,
        });
      }
    }
  }
  return out;
}

// Flattens an ExportMetricsServiceRequest into {name: {kind, points:[{value, attributes}]}}.
function metricsOf(req) {
  const out = {};
  for (const rm of req.resourceMetrics || []) {
    for (const sm of rm.scopeMetrics || []) {
      for (const m of sm.metrics || []) {
        const kind = m.sum ? 'sum' : m.gauge ? 'gauge' : m.histogram ? 'histogram' : 'other';
        const data = m.sum || m.gauge || m.histogram;
        out[m.name] = {
          kind,
          unit: m.unit,
          description: m.description,
          temporality: data.aggregationTemporality,
          monotonic: data.isMonotonic,
          points: (data.dataPoints || []).map((p) => ({
            value: p.asInt !== undefined && p.asInt !== null && p.value === 'asInt' ? Number(p.asInt) : p.asDouble,
            count: p.count !== undefined ? Number(p.count) : undefined,
            attributes: attrs(p.attributes),
          })),
        };
      }
    }
  }
  return out;
}

// Starts the receiver. behaviour(kind, n) may return {status, headers, delayMs} for the
// n-th (0-based) request of that kind ('traces' | 'metrics'); default 200.
async function startReceiver({ behaviour = () => ({}) } = {}) {
  const rx = {
    requests: [], // {kind, status, contentType, headers, at}
    spans: [],
    metrics: [], // one decoded map per accepted metrics request
    errors: [],
    counts: { traces: 0, metrics: 0 },
  };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const kind = req.url === '/v1/traces' ? 'traces' : req.url === '/v1/metrics' ? 'metrics' : 'other';
      const n = rx.counts[kind] === undefined ? 0 : rx.counts[kind]++;
      const b = behaviour(kind, n) || {};
      const status = b.status || (kind === 'other' ? 404 : 200);
      const record = { kind, status, contentType: req.headers['content-type'], headers: req.headers, at: Date.now() };
      rx.requests.push(record);
      let body = Buffer.concat(chunks);
      record.bodyBytes = body.length;
      if (req.headers['content-encoding'] === 'gzip') {
        try {
          body = zlib.gunzipSync(body);
        } catch (e) {
          rx.errors.push(e);
        }
      }
      if (status === 200) {
        try {
          if (kind === 'traces') rx.spans.push(...spansOf(TraceReq.decode(body)));
          if (kind === 'metrics') rx.metrics.push(metricsOf(MetricsReq.decode(body)));
        } catch (e) {
          rx.errors.push(e);
        }
      }
      const answer = () => {
        if (res.destroyed) return;
        res.writeHead(status, { 'Content-Type': 'application/x-protobuf', ...(b.headers || {}) });
        res.end();
      };
      if (b.delayMs) setTimeout(answer, b.delayMs);
      else answer();
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  rx.port = server.address().port;
  rx.endpoint = `http://127.0.0.1:${rx.port}`;
  rx.close = () => new Promise((resolve) => {
    for (const s of sockets) s.destroy();
    server.close(() => resolve());
  });
  return rx;
}

module.exports = { startReceiver, spansOf, metricsOf, SpanKind };
