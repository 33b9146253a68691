'use strict';
// A TCP proxy for client tests: a fixed port in front of a server that can be
// restarted on another port (retarget), refused (target null), or made to stop
// forwarding bytes on the connections it holds (pause) — a dead connection that
// neither side sees closed, like a NAT that forgot it.

const net = require('node:net');

async function startProxy(targetPort = null) {
  const conns = new Set();
  const proxy = {
    target: targetPort,
    paused: false,
    accepted: 0,
    port: 0,
    conns,
    // Destroys every proxied connection (both sides see a reset, no close frame).
    dropAll() {
      for (const c of conns) {
        c.client.destroy();
        c.upstream.destroy();
      }
      conns.clear();
    },
    // Stops forwarding on the connections open now; new ones are forwarded.
    stall() {
      for (const c of conns) c.paused = true;
    },
    close() {
      proxy.dropAll();
      return new Promise((r) => server.close(() => r()));
    },
  };
  const server = net.createServer((client) => {
    proxy.accepted++;
    if (!proxy.target) {
      client.destroy();
      return;
    }
    const upstream = net.connect(proxy.target, '127.0.0.1');
    const c = { client, upstream, paused: false };
    conns.add(c);
    // Bytes that arrive while paused are discarded, never delivered late.
    client.on('data', (d) => {
      if (!proxy.paused && !c.paused) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!proxy.paused && !c.paused) client.write(d);
    });
    const end = () => {
      conns.delete(c);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  proxy.port = server.address().port;
  return proxy;
}

module.exports = { startProxy };
