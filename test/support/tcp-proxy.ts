/**
 * A TCP proxy on loopback whose link can be cut: a network blackout between clients and a
 * server without iptables or privileges. While cut, nothing crosses in either direction and
 * new connections are accepted but not forwarded; what was sent meanwhile arrives after
 * `restore()`, as TCP retransmission would deliver it after a short outage. Neither side sees
 * a reset: each only notices through its own timeouts (the server, unlike a frozen process,
 * keeps running and expires what it expires).
 *
 * @example
 *   const proxy = await startTcpProxy(brokerPort);
 *   proxy.cut(); ... proxy.restore(); await proxy.close();
 */
import { createServer, type Server, type Socket, connect } from 'node:net';

export interface TcpProxy {
  readonly port: number;
  cut(): void;
  restore(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(targetPort: number, listenPort = 0): Promise<TcpProxy> {
  let isCut = false;
  const sockets = new Set<Socket>();
  const held: Socket[] = [];

  const pair = (client: Socket) => {
    const upstream = connect(targetPort, '127.0.0.1');
    sockets.add(upstream);
    const forward = (from: Socket, to: Socket) => {
      from.on('data', (chunk) => {
        if (!to.write(chunk)) from.pause();
      });
      to.on('drain', () => {
        if (!isCut) from.resume();
      });
    };
    forward(client, upstream);
    forward(upstream, client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  };

  const server: Server = createServer((client) => {
    sockets.add(client);
    client.on('error', () => client.destroy());
    if (isCut) {
      client.pause();
      held.push(client);
    } else pair(client);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (typeof address !== 'object' || !address) throw new Error('proxy has no address');

  return {
    port: address.port,
    cut() {
      isCut = true;
      for (const s of sockets) s.pause();
    },
    restore() {
      isCut = false;
      // Held connections get their upstream before anything flows again.
      for (const client of held.splice(0)) {
        if (!client.destroyed) pair(client);
      }
      for (const s of sockets) s.resume();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
