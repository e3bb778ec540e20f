import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

/** A TCP forwarder to PostgreSQL that a test opens and cuts: a real "the database is unreachable". */
export interface TcpProxy {
  port: number;
  /** Starts accepting (again) on the same port. */
  open(): Promise<void>;
  /** Stops accepting and cuts every forwarded connection: the port refuses. */
  close(): Promise<void>;
}

/** A port nothing listens on (taken from the system, then released). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Forwards 127.0.0.1:`port` to `target` once opened; starts closed. */
export function tcpProxy(port: number, target = { host: '127.0.0.1', port: 5432 }): TcpProxy {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  return {
    port,
    open: () => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    }),
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      if (!server.listening) return resolve();
      server.close(() => resolve());
    }),
  };
}
