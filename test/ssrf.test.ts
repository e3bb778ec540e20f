import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { lookup as dnsLookup } from 'node:dns/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { after, describe, it } from 'node:test';
import { EXCERPT_CHARS, parseRetryAfter, postWebhook } from '../src/webhooks/deliver.ts';
import { checkWebhookUrl, isForbiddenAddress, type ResolvedAddress, type SsrfPolicy, UnsafeUrlError } from '../src/webhooks/ssrf.ts';

// These tests never send a packet anywhere but 127.0.0.0/8. Non-loopback targets are only ever
// handed to postWebhook after checkWebhookUrl has been shown to refuse them (and postWebhook
// checks before it connects), and every client socket Node creates is counted through the
// `net.client.socket` diagnostics channel, so "refused without connecting" is measured, not assumed.
let clientSockets = 0;
const onClientSocket = (): void => {
  clientSockets++;
};
subscribe('net.client.socket', onClientSocket);
after(() => unsubscribe('net.client.socket', onClientSocket));

const servers: Server[] = [];
after(async () => {
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    ),
  );
});

interface TestServer {
  port: number;
  /** TCP connections accepted so far. */
  connections: () => number;
  /** Requests received so far, with their bodies. */
  requests: Array<{ req: IncomingMessage; body: string }>;
}

/** An HTTP server on loopback that counts connections; `handler` answers (or deliberately doesn't). */
async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void, host = '127.0.0.1'): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  let connections = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (body += chunk));
    req.on('end', () => {
      requests.push({ req, body });
      handler(req, res);
    });
  });
  server.on('connection', () => connections++);
  servers.push(server);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  return { port: (server.address() as AddressInfo).port, connections: () => connections, requests };
}

/** A resolver that answers from a table, so multi-address and missing names need no real DNS. */
function fakeLookup(table: Record<string, ResolvedAddress[] | NodeJS.ErrnoException>): SsrfPolicy['lookup'] & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string): Promise<ResolvedAddress[]> => {
    calls.push(hostname);
    const answer = table[hostname];
    if (answer === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    if (answer instanceof Error) throw answer;
    return answer;
  };
  return Object.assign(lookup, { calls });
}

const refusedWith =
  (pattern: RegExp) =>
  (error: unknown): boolean => {
    assert.ok(error instanceof UnsafeUrlError, `expected UnsafeUrlError, got ${String(error)}`);
    assert.match(error.reason, pattern);
    return true;
  };

const webhook = { headers: { 'content-type': 'application/json' }, body: '{"type":"job.completed"}' };

describe('isForbiddenAddress', () => {
  it('names the range an address falls in', () => {
    const cases: Array<[string, RegExp]> = [
      ['127.0.0.1', /^127\.0\.0\.1 is a loopback address$/],
      ['127.255.255.254', /loopback/],
      ['10.0.0.1', /private/],
      ['172.16.0.1', /private/],
      ['172.31.255.255', /private/],
      ['192.168.1.1', /private/],
      ['169.254.0.1', /link-local/],
      ['169.254.169.254', /cloud metadata/],
      ['100.100.100.200', /cloud metadata/],
      ['100.64.0.1', /carrier-grade NAT/],
      ['100.127.255.255', /carrier-grade NAT/],
      ['0.0.0.0', /unspecified/],
      ['0.1.2.3', /this network/],
      ['224.0.0.1', /multicast/],
      ['239.255.255.250', /multicast/],
      ['255.255.255.255', /broadcast/],
      ['240.0.0.1', /reserved/],
      ['192.0.2.1', /documentation/],
      ['198.18.0.1', /benchmarking/],
      ['::1', /^::1 is a loopback address$/],
      ['::', /unspecified/],
      ['fe80::1', /link-local/],
      ['fe80::1%eth0', /link-local/],
      ['febf::1', /link-local/],
      ['fc00::1', /unique-local/],
      ['fd12:3456::1', /unique-local/],
      ['fd00:ec2::254', /cloud metadata/],
      ['ff02::1', /multicast/],
      ['fec0::1', /site-local/],
      ['2001:db8::1', /documentation/],
      ['2001:0:4136:e378:8000:63bf:3fff:fdd2', /Teredo/],
      ['::ffff:127.0.0.1', /IPv4-mapped 127\.0\.0\.1, a loopback address/],
      ['::ffff:7f00:1', /IPv4-mapped 127\.0\.0\.1, a loopback address/],
      ['0:0:0:0:0:ffff:a9fe:a9fe', /IPv4-mapped 169\.254\.169\.254, a cloud metadata address/],
      ['::ffff:10.0.0.1', /IPv4-mapped 10\.0\.0\.1, a private address/],
      ['64:ff9b::7f00:1', /NAT64 for 127\.0\.0\.1, a loopback address/],
      ['64:ff9b::192.168.0.1', /NAT64 for 192\.168\.0\.1, a private address/],
      ['2002:a9fe:a9fe::1', /6to4 for 169\.254\.169\.254/],
      ['::127.0.0.1', /IPv4-compatible/],
      ['1::1', /not a global unicast address/],
      ['not-an-address', /not an IP address/],
    ];
    for (const [ip, reason] of cases) assert.match(isForbiddenAddress(ip) ?? '(allowed)', reason, ip);
  });

  it('lets public addresses through, including public IPv4 embedded in IPv6', () => {
    for (const ip of ['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '64:ff9b::808:808', '2002:808:808::1']) {
      assert.equal(isForbiddenAddress(ip), undefined, ip);
    }
  });
});

describe('checkWebhookUrl refuses without connecting', () => {
  const refused: Array<[string, RegExp]> = [
    ['http://127.0.0.1/', /^127\.0\.0\.1 is a loopback address$/],
    ['http://10.0.0.1/', /^10\.0\.0\.1 is a private address$/],
    ['http://169.254.169.254/latest/meta-data', /^169\.254\.169\.254 is a cloud metadata address$/],
    ['http://[::1]/', /^::1 is a loopback address$/],
    ['http://[::ffff:127.0.0.1]/', /IPv4-mapped 127\.0\.0\.1, a loopback address/],
    ['http://[::ffff:7f00:1]/', /IPv4-mapped 127\.0\.0\.1, a loopback address/],
    ['http://localhost/', /^localhost resolves to (127\.\d+\.\d+\.\d+|::1) is a loopback address$/],
    ['http://0.0.0.0/', /^0\.0\.0\.0 is an unspecified address$/],
    ['http://100.64.0.1/', /^100\.64\.0\.1 is a carrier-grade NAT/],
    ['ftp://example.com/', /^only http and https URLs are allowed$/],
    ['http://user:pass@127.0.0.1/', /^credentials in the URL are not allowed$/],
    ['https://user@example.com/', /^credentials in the URL are not allowed$/],
    // Spellings the URL parser normalizes to an address, which is what gets checked.
    ['http://2130706433/', /^127\.0\.0\.1 is a loopback address$/],
    ['http://0x7f.1/', /^127\.0\.0\.1 is a loopback address$/],
    ['http://[0:0:0:0:0:ffff:a9fe:a9fe]/', /169\.254\.169\.254, a cloud metadata address/],
    ['http://[fd00:ec2::254]/', /cloud metadata/],
    ['http://[64:ff9b::a00:1]/', /NAT64 for 10\.0\.0\.1/],
    ['http://[fe80::1]/', /link-local/],
    ['http://192.168.0.1:8080/', /private/],
    ['file:///etc/passwd', /only http and https/],
    ['gopher://127.0.0.1:6379/_INFO', /only http and https/],
    ['javascript:alert(1)', /only http and https/],
    ['not a url', /not a valid URL/],
  ];

  for (const [url, reason] of refused) {
    it(`refuses ${url}`, async () => {
      const before = clientSockets;
      // Order matters for the no-traffic promise: postWebhook is only reached once the check
      // alone has been seen to refuse, and it runs the same check before it opens a socket.
      await assert.rejects(checkWebhookUrl(url), refusedWith(reason));
      await assert.rejects(postWebhook(url, webhook), refusedWith(reason));
      assert.equal(clientSockets, before, 'no socket was opened');
    });
  }

  it('refuses loopback targets that have a live server, which sees no connection', async () => {
    const server = await startServer((_req, res) => res.end('should never be reached'));
    const before = clientSockets;
    for (const url of [
      `http://127.0.0.1:${server.port}/`,
      `http://localhost:${server.port}/`,
      `http://[::ffff:127.0.0.1]:${server.port}/`,
      `http://0.0.0.0:${server.port}/`,
      `http://2130706433:${server.port}/`,
      `http://user:pass@127.0.0.1:${server.port}/`,
    ]) {
      await assert.rejects(postWebhook(url, webhook), UnsafeUrlError, url);
    }
    assert.equal(server.connections(), 0);
    assert.equal(clientSockets, before);
  });

  it('refuses a name if any one of its addresses is forbidden (DNS rebinding, split answers)', async () => {
    const lookup = fakeLookup({
      'mixed.example': [
        { address: '93.184.215.14', family: 4 },
        { address: '10.0.0.7', family: 4 },
      ],
      'mixed6.example': [
        { address: '2606:4700:4700::1111', family: 6 },
        { address: '::ffff:169.254.169.254', family: 6 },
      ],
      'metadata.google.internal': [{ address: '169.254.169.254', family: 4 }],
    });
    await assert.rejects(checkWebhookUrl('https://mixed.example/hook', { lookup }), refusedWith(/^mixed\.example resolves to 10\.0\.0\.7 is a private address$/));
    await assert.rejects(checkWebhookUrl('https://mixed6.example/hook', { lookup }), refusedWith(/IPv4-mapped 169\.254\.169\.254, a cloud metadata address/));
    await assert.rejects(checkWebhookUrl('http://metadata.google.internal/computeMetadata/v1/', { lookup }), refusedWith(/cloud metadata/));
    assert.deepEqual(lookup.calls, ['mixed.example', 'mixed6.example', 'metadata.google.internal']);
  });

  it('checks every address localhost really resolves to, not just the first', async () => {
    const addresses = await dnsLookup('localhost', { all: true });
    await assert.rejects(checkWebhookUrl('http://localhost/'), refusedWith(/loopback/));
    // Allowing only 127.0.0.1 admits localhost only if that is all it resolves to here.
    const others = addresses.filter((a) => a.address !== '127.0.0.1');
    const check = checkWebhookUrl('http://localhost/', { allow: ['127.0.0.1'] });
    if (others.length === 0) assert.equal((await check).address, '127.0.0.1');
    else await assert.rejects(check, refusedWith(new RegExp(`${others[0]!.address.replaceAll('.', '\\.')} is`)));
  });

  it('treats a name that does not resolve as unsafe, and a DNS outage as a failure', async () => {
    const lookup = fakeLookup({
      empty: [],
      flaky: Object.assign(new Error('getaddrinfo EAI_AGAIN flaky'), { code: 'EAI_AGAIN' }),
    });
    await assert.rejects(checkWebhookUrl('https://example.internal/', { lookup }), refusedWith(/^example\.internal did not resolve$/));
    await assert.rejects(checkWebhookUrl('https://empty/', { lookup }), refusedWith(/^empty did not resolve$/));
    await assert.rejects(checkWebhookUrl('https://flaky/', { lookup }), (error: unknown) => !(error instanceof UnsafeUrlError) && /EAI_AGAIN/.test(String(error)));
    const result = await postWebhook('https://flaky/', { ...webhook, policy: { lookup } });
    assert.equal(result.ok, false);
    assert.match(result.error ?? '', /EAI_AGAIN/);
  });
});

describe('checkWebhookUrl accepts', () => {
  it('public addresses, and returns the one to connect to', async () => {
    const v4 = await checkWebhookUrl('https://93.184.215.14/hook?x=1');
    assert.deepEqual([v4.address, v4.family, v4.url.pathname], ['93.184.215.14', 4, '/hook']);
    const v6 = await checkWebhookUrl('https://[2606:4700:4700::1111]:8443/hook');
    assert.deepEqual([v6.address, v6.family], ['2606:4700:4700::1111', 6]);
    const lookup = fakeLookup({ 'hooks.example.com': [{ address: '2606:4700::6810:84e5', family: 6 }, { address: '104.16.132.229', family: 4 }] });
    const named = await checkWebhookUrl('https://Hooks.Example.com/in', { lookup });
    assert.deepEqual([named.address, named.family], ['2606:4700::6810:84e5', 6]);
  });

  it('what the allow-list names: hosts, addresses and CIDR ranges, nothing more', async () => {
    assert.equal((await checkWebhookUrl('http://10.1.2.3/', { allow: ['10.0.0.0/8'] })).address, '10.1.2.3');
    assert.equal((await checkWebhookUrl('http://[::1]:3000/', { allow: ['[::1]'] })).address, '::1');
    assert.equal((await checkWebhookUrl('http://[::ffff:127.0.0.1]/', { allow: ['127.0.0.1'] })).address, '::ffff:7f00:1');
    // The URL parser lower-cases the host and keeps the trailing dot, which the resolver gets as is.
    const lookup = fakeLookup({ 'dev.local.': [{ address: '192.168.1.20', family: 4 }] });
    assert.equal((await checkWebhookUrl('http://DEV.local./', { allow: ['dev.local'], lookup })).address, '192.168.1.20');
    await assert.rejects(checkWebhookUrl('http://127.0.0.2/', { allow: ['127.0.0.1'] }), refusedWith(/127\.0\.0\.2 is a loopback/));
    // Scheme and credential rules hold whatever the allow-list says.
    await assert.rejects(checkWebhookUrl('ftp://127.0.0.1/', { allow: ['127.0.0.1'] }), refusedWith(/only http and https/));
    await assert.rejects(checkWebhookUrl('http://a:b@127.0.0.1/', { allow: ['127.0.0.1'] }), refusedWith(/credentials/));
    await assert.rejects(checkWebhookUrl('http://10.0.0.1/', { allow: ['10.0.0.0/33'] }), TypeError);
  });
});

describe('postWebhook', () => {
  const allowLoopback: SsrfPolicy = { allow: ['127.0.0.1'] };

  it('delivers to an allowed receiver: 2xx is ok, with latency and a bounded excerpt', async () => {
    const server = await startServer((_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end(`accepted ${'x'.repeat(2000)}`));
    const result = await postWebhook(`http://127.0.0.1:${server.port}/hooks/in?src=test`, {
      headers: { ...webhook.headers, 'webhook-id': 'msg_1', Host: 'evil.example', 'Content-Length': '1' },
      body: webhook.body,
      policy: allowLoopback,
    });
    assert.equal(result.ok, true);
    assert.equal(result.status, 200);
    assert.equal(result.error, undefined);
    assert.ok(Number.isFinite(result.latencyMs) && result.latencyMs >= 0, `latency ${result.latencyMs}`);
    assert.equal(result.responseExcerpt?.length, EXCERPT_CHARS);
    assert.ok(result.responseExcerpt?.startsWith('accepted x'));
    const [received] = server.requests;
    assert.equal(received?.req.method, 'POST');
    assert.equal(received?.req.url, '/hooks/in?src=test');
    assert.equal(received?.req.headers.host, `127.0.0.1:${server.port}`, 'a caller cannot override Host');
    assert.equal(received?.req.headers['webhook-id'], 'msg_1');
    assert.equal(received?.body, webhook.body, 'Content-Length is computed, not taken from the caller');
  });

  it('does not follow a redirect, even to an allowed address', async () => {
    const target = await startServer((_req, res) => res.end('redirect target'));
    const redirector = await startServer((_req, res) => res.writeHead(302, { location: `http://127.0.0.1:${target.port}/` }).end());
    const result = await postWebhook(`http://127.0.0.1:${redirector.port}/`, { ...webhook, policy: allowLoopback });
    assert.equal(result.ok, false);
    assert.equal(result.status, 302);
    assert.equal(redirector.requests.length, 1);
    assert.equal(target.connections(), 0, 'the redirect target was never contacted');
  });

  it('reads Retry-After in seconds and as an HTTP date', async () => {
    const busy = await startServer((_req, res) => res.writeHead(503, { 'retry-after': '7' }).end('busy'));
    const result = await postWebhook(`http://127.0.0.1:${busy.port}/`, { ...webhook, policy: allowLoopback });
    assert.deepEqual([result.ok, result.status, result.retryAfterMs, result.responseExcerpt], [false, 503, 7000, 'busy']);

    const limited = await startServer((_req, res) => res.writeHead(429, { 'retry-after': new Date(Date.now() + 30_000).toUTCString() }).end());
    const dated = await postWebhook(`http://127.0.0.1:${limited.port}/`, { ...webhook, policy: allowLoopback });
    assert.equal(dated.status, 429);
    assert.ok(dated.retryAfterMs !== undefined && dated.retryAfterMs > 25_000 && dated.retryAfterMs <= 30_000, `got ${dated.retryAfterMs}`);
    assert.equal(dated.responseExcerpt, undefined, 'an empty body has no excerpt');
  });

  it('gives up at the deadline when the receiver never answers', async () => {
    const silent = await startServer(() => {
      /* never respond */
    });
    const result = await postWebhook(`http://127.0.0.1:${silent.port}/`, { ...webhook, timeoutMs: 300, policy: allowLoopback });
    assert.equal(result.ok, false);
    assert.equal(result.status, undefined);
    assert.match(result.error ?? '', /timed out after 300 ms/);
  });

  it('counts a DNS lookup that hangs against the same deadline', async () => {
    const hangingLookup = (): Promise<ResolvedAddress[]> => new Promise(() => undefined);
    const result = await postWebhook('https://slow-dns.example/', { ...webhook, timeoutMs: 200, policy: { lookup: hangingLookup } });
    assert.deepEqual([result.ok, result.error], [false, 'timed out after 200 ms']);
  });

  it('counts a response whose body stalls past the deadline as failed, keeping its status', async () => {
    const stalling = await startServer((_req, res) => {
      res.writeHead(200);
      res.write('partial');
    });
    const result = await postWebhook(`http://127.0.0.1:${stalling.port}/`, { ...webhook, timeoutMs: 300, policy: allowLoopback });
    assert.deepEqual([result.ok, result.status], [false, 200]);
    assert.match(result.error ?? '', /timed out/);
  });

  it('stops reading an endless body after the excerpt', async () => {
    let closed = false;
    const firehose = await startServer((_req, res) => {
      res.writeHead(200);
      res.on('close', () => (closed = true));
      const chunk = 'y'.repeat(64 * 1024);
      const pump = (): void => {
        while (!res.destroyed && res.write(chunk));
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    const result = await postWebhook(`http://127.0.0.1:${firehose.port}/`, { ...webhook, timeoutMs: 5000, policy: allowLoopback });
    assert.equal(result.ok, true);
    assert.equal(result.responseExcerpt, 'y'.repeat(EXCERPT_CHARS));
    for (let i = 0; i < 100 && !closed; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    assert.ok(closed, 'the connection was torn down instead of downloading the rest');
  });

  it('resolves network errors and aborts instead of throwing', async () => {
    const gone = await startServer(() => undefined);
    const port = gone.port;
    const server = servers.at(-1)!;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const refused = await postWebhook(`http://127.0.0.1:${port}/`, { ...webhook, policy: allowLoopback });
    assert.equal(refused.ok, false);
    assert.match(refused.error ?? '', /ECONNREFUSED/);

    const hung = await startServer(() => undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const aborted = await postWebhook(`http://127.0.0.1:${hung.port}/`, { ...webhook, signal: controller.signal, policy: allowLoopback });
    assert.deepEqual([aborted.ok, aborted.error], [false, 'aborted']);

    const early = await postWebhook(`http://127.0.0.1:${hung.port}/`, { ...webhook, signal: AbortSignal.abort(), policy: allowLoopback });
    assert.deepEqual([early.ok, early.error], [false, 'aborted']);
  });

  it('connects to the address it checked, keeping the host name for Host', async (t) => {
    // 127.0.0.2 is loopback on Linux but not configured everywhere (macOS).
    let pinned: TestServer;
    try {
      pinned = await startServer((_req, res) => res.end('pinned'), '127.0.0.2');
    } catch {
      t.skip('127.0.0.2 is not available here');
      return;
    }
    // The check resolves "localhost" to 127.0.0.2; a second, ordinary resolution would give
    // 127.0.0.1 (or ::1), where nothing listens on this port, and the delivery would fail.
    const lookup = fakeLookup({ localhost: [{ address: '127.0.0.2', family: 4 }] });
    const result = await postWebhook(`http://localhost:${pinned.port}/in`, { ...webhook, policy: { allow: ['127.0.0.2'], lookup } });
    assert.deepEqual([result.ok, result.responseExcerpt], [true, 'pinned']);
    assert.equal(pinned.requests[0]?.req.headers.host, `localhost:${pinned.port}`);
    assert.deepEqual(lookup.calls, ['localhost'], 'resolved once, by the check');
  });

  it('sends the URL host name as TLS SNI while connecting to the checked address', async () => {
    const names: string[] = [];
    // No certificate: the handshake fails right after SNI, which is all this test needs to see.
    const tls = createTlsServer({
      SNICallback: (name, callback) => {
        names.push(name);
        callback(new Error('test server has no certificate'), undefined);
      },
    });
    tls.on('tlsClientError', () => undefined);
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    try {
      const port = (tls.address() as AddressInfo).port;
      const lookup = fakeLookup({ localhost: [{ address: '127.0.0.1', family: 4 }] });
      const result = await postWebhook(`https://localhost:${port}/`, { ...webhook, policy: { allow: ['localhost'], lookup } });
      assert.equal(result.ok, false);
      assert.ok(result.error);
      assert.deepEqual(names, ['localhost']);
    } finally {
      await new Promise<void>((resolve) => tls.close(() => resolve()));
    }
  });
});

describe('parseRetryAfter', () => {
  it('reads delay-seconds and HTTP dates, and ignores the rest', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('0', now), 0);
    assert.equal(parseRetryAfter(' 120 ', now), 120_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now), 0, 'a past date means now');
    for (const junk of [undefined, '', 'soon', '-1', '1.5']) assert.equal(parseRetryAfter(junk, now), undefined, String(junk));
  });
});
