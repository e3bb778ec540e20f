import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import {
  verifyWebhook,
  WebhookDeduplicator,
  WebhookVerificationError,
  type WebhookVerificationErrorCode,
} from '../src/client/verify.ts';
import { generateWebhookSecret, parseSecret, signWebhook } from '../src/webhooks/signing.ts';

// The reference package (standardwebhooks 1.1.1, dist/index.js) takes the secret as written:
// its constructor strips a leading "whsec_" if present and base64-decodes the rest, so our
// `whsec_…` secrets go in unchanged. Its verify() always checks the timestamp against the real
// clock (Date.now(), ±300 s), so cross-checks with it use the current time.

const body = JSON.stringify({ type: 'job.completed', data: { id: '01a208c4-03be-78e4-807a-e431693e3473', status: 'completed' } });
const T = 1_700_000_000; // a fixed "now" for the tests that control the clock
const at = (seconds: number) => () => seconds * 1000;

function secretOf(bytes: number): string {
  return `whsec_${randomBytes(bytes).toString('base64')}`;
}

async function refusal(promise: Promise<unknown>, code: WebhookVerificationErrorCode, message?: RegExp): Promise<WebhookVerificationError> {
  const error = await promise.then(
    () => assert.fail(`expected a ${code} refusal, but the webhook verified`),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof WebhookVerificationError, `expected a WebhookVerificationError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  if (message) assert.match(error.message, message);
  return error;
}

describe('webhook secrets', () => {
  it('generates whsec_ + base64 of 32 random bytes, different every time', () => {
    const secret = generateWebhookSecret();
    assert.match(secret, /^whsec_[A-Za-z0-9+/]{43}=$/);
    assert.equal(parseSecret(secret).length, 32);
    assert.notEqual(generateWebhookSecret(), secret);
  });

  it('accepts 24 to 64 bytes and refuses anything else, without echoing the secret', () => {
    assert.equal(parseSecret(secretOf(24)).length, 24);
    assert.equal(parseSecret(secretOf(64)).length, 64);
    assert.throws(() => parseSecret(secretOf(23)), /24–64 bytes; this one holds 23/);
    assert.throws(() => parseSecret(secretOf(65)), /24–64 bytes; this one holds 65/);
    const bare = randomBytes(32).toString('base64');
    assert.throws(() => parseSecret(bare), (error: Error) => /must start with "whsec_"/.test(error.message) && !error.message.includes(bare));
    assert.throws(() => parseSecret('whsec_not base64!'), /standard, padded base64/);
    assert.throws(() => parseSecret(`whsec_${randomBytes(32).toString('base64url')}`), /standard, padded base64/);
  });
});

describe('signWebhook', () => {
  it('produces the three headers, with the HMAC-SHA256 of "id.timestamp.body"', () => {
    const secret = generateWebhookSecret();
    const headers = signWebhook({ id: 'msg_1', timestamp: T, body, secrets: [secret] });
    const mac = createHmac('sha256', parseSecret(secret)).update(`msg_1.${T}.${body}`).digest('base64');
    assert.deepEqual(headers, { 'webhook-id': 'msg_1', 'webhook-timestamp': String(T), 'webhook-signature': `v1,${mac}` });
    assert.deepEqual(signWebhook({ id: 'msg_1', timestamp: new Date(T * 1000 + 999), body, secrets: [secret] }), headers, 'a Date is floored to seconds');
  });

  it('matches a fixed vector, which the reference package computes too', () => {
    const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
    const [id, timestamp, payload] = ['msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}'] as const;
    const expected = 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=';
    assert.equal(signWebhook({ id, timestamp, body: payload, secrets: [secret] })['webhook-signature'], expected);
    assert.equal(new Webhook(secret).sign(id, new Date(timestamp * 1000), payload), expected);
  });

  it('signs non-ASCII bodies as UTF-8', async () => {
    const secret = generateWebhookSecret();
    const text = JSON.stringify({ summary: 'Zusammenfassung: Größe ≈ 5 €, 🚀' });
    const headers = signWebhook({ id: 'msg_utf8', timestamp: new Date(), body: text, secrets: [secret] });
    assert.deepEqual(new Webhook(secret).verify(text, { ...headers }), JSON.parse(text));
    const verified = await verifyWebhook({ headers, body: new TextEncoder().encode(text) }, secret);
    assert.deepEqual(verified.payload, JSON.parse(text));
  });

  it('refuses what it cannot sign correctly, and never signs with only some of the secrets', () => {
    const secret = generateWebhookSecret();
    assert.throws(() => signWebhook({ id: '', timestamp: T, body, secrets: [secret] }), /webhook id/);
    assert.throws(() => signWebhook({ id: 'a b', timestamp: T, body, secrets: [secret] }), /without spaces or commas/);
    assert.throws(() => signWebhook({ id: 'a\nb', timestamp: T, body, secrets: [secret] }), /printable ASCII/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: Date.now(), body, secrets: [secret] }), /looks like milliseconds/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: -1, body, secrets: [secret] }), /whole unix seconds/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: 1.5, body, secrets: [secret] }), /whole unix seconds/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: new Date(Number.NaN), body, secrets: [secret] }), /invalid Date/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: T, body, secrets: [] }), /at least one secret/);
    assert.throws(() => signWebhook({ id: 'msg', timestamp: T, body, secrets: [secret, 'not-a-secret'] }), /whsec_/);
  });
});

describe('interoperability with the standardwebhooks reference package', () => {
  it('our signatures verify with the reference package', () => {
    const secret = generateWebhookSecret();
    const headers = signWebhook({ id: 'msg_ours', timestamp: new Date(), body, secrets: [secret] });
    assert.deepEqual(new Webhook(secret).verify(body, { ...headers }), JSON.parse(body));
    // With the prefix stripped too: the reference reads the same key either way.
    assert.deepEqual(new Webhook(secret.slice('whsec_'.length)).verify(body, { ...headers }), JSON.parse(body));
    assert.throws(() => new Webhook(generateWebhookSecret()).verify(body, { ...headers }), /No matching signature/);
  });

  it('the reference package verifies each signature of a rotation header', () => {
    const [previous, next] = [generateWebhookSecret(), generateWebhookSecret()];
    const headers = signWebhook({ id: 'msg_rot', timestamp: new Date(), body, secrets: [next, previous] });
    assert.equal(headers['webhook-signature'].split(' ').length, 2);
    assert.deepEqual(new Webhook(previous).verify(body, { ...headers }), JSON.parse(body));
    assert.deepEqual(new Webhook(next).verify(body, { ...headers }), JSON.parse(body));
  });

  it('verifyWebhook accepts what the reference package signs', async () => {
    const secret = generateWebhookSecret();
    const sentAt = new Date();
    const signature = new Webhook(secret).sign('msg_theirs', sentAt, body);
    const headers = { 'webhook-id': 'msg_theirs', 'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)), 'webhook-signature': signature };
    const verified = await verifyWebhook({ headers, body }, secret);
    assert.equal(verified.id, 'msg_theirs');
    assert.equal(verified.timestamp.getTime(), Math.floor(sentAt.getTime() / 1000) * 1000);
    assert.deepEqual(verified.payload, JSON.parse(body));
  });
});

describe('verifyWebhook', () => {
  const secret = generateWebhookSecret();
  const signed = (overrides: { timestamp?: number; body?: string } = {}) =>
    signWebhook({ id: 'msg_v', timestamp: overrides.timestamp ?? T, body: overrides.body ?? body, secrets: [secret] });

  it('returns the id, the timestamp and the parsed body', async () => {
    const verified = await verifyWebhook({ headers: signed(), body }, secret, { now: at(T) });
    assert.deepEqual(verified, { id: 'msg_v', timestamp: new Date(T * 1000), payload: JSON.parse(body) as unknown });
  });

  it('finds headers whatever their case, in a Fetch Headers, a plain object or Node-style arrays', async () => {
    const headers = signed();
    const upper = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toUpperCase(), value]));
    const asArrays = Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.replace('webhook', 'Webhook'), [value]]));
    for (const form of [new Headers(headers), upper, asArrays]) {
      assert.equal((await verifyWebhook({ headers: form, body }, secret, { now: at(T) })).id, 'msg_v');
    }
  });

  it('verifies the raw bytes as well as a string', async () => {
    const bytes = new TextEncoder().encode(body);
    assert.equal((await verifyWebhook({ headers: signed(), body: bytes }, secret, { now: at(T) })).id, 'msg_v');
    assert.equal((await verifyWebhook({ headers: signed(), body: Buffer.from(body) }, secret, { now: at(T) })).id, 'msg_v');
  });

  it('refuses a tampered body', async () => {
    const tampered = body.replace('completed', 'cancelled');
    await refusal(verifyWebhook({ headers: signed(), body: tampered }, secret, { now: at(T) }), 'invalid_signature', /re-serialised/);
    // One whitespace byte is enough: the signature covers the bytes, not the JSON's meaning.
    await refusal(verifyWebhook({ headers: signed(), body: `${body} ` }, secret, { now: at(T) }), 'invalid_signature');
  });

  it('refuses a tampered id or timestamp, which the signature covers too', async () => {
    const headers = signed();
    await refusal(verifyWebhook({ headers: { ...headers, 'webhook-id': 'msg_other' }, body }, secret, { now: at(T) }), 'invalid_signature');
    await refusal(verifyWebhook({ headers: { ...headers, 'webhook-timestamp': String(T + 1) }, body }, secret, { now: at(T) }), 'invalid_signature');
  });

  it('refuses a wrong secret', async () => {
    await refusal(verifyWebhook({ headers: signed(), body }, generateWebhookSecret(), { now: at(T) }), 'invalid_signature', /1 configured secret/);
  });

  it('accepts 300 s either way, and refuses 301 s old and 301 s in the future', async () => {
    assert.ok(await verifyWebhook({ headers: signed({ timestamp: T - 300 }), body }, secret, { now: at(T) }));
    assert.ok(await verifyWebhook({ headers: signed({ timestamp: T + 300 }), body }, secret, { now: at(T) }));
    const old = await refusal(verifyWebhook({ headers: signed({ timestamp: T - 301 }), body }, secret, { now: at(T) }), 'timestamp_too_old');
    assert.equal(old.message, 'webhook-timestamp is 301 s old; at most 300 s is accepted.');
    const future = await refusal(verifyWebhook({ headers: signed({ timestamp: T + 301 }), body }, secret, { now: at(T) }), 'timestamp_in_future');
    assert.equal(future.message, 'webhook-timestamp is 301 s in the future; at most 300 s is accepted.');
  });

  it('honours toleranceSeconds and the real clock by default', async () => {
    await refusal(verifyWebhook({ headers: signed({ timestamp: T - 61 }), body }, secret, { now: at(T), toleranceSeconds: 60 }), 'timestamp_too_old', /61 s old; at most 60 s/);
    await refusal(verifyWebhook({ headers: signed({ timestamp: T }), body }, secret), 'timestamp_too_old');
    const nowSeconds = Math.floor(Date.now() / 1000);
    assert.ok(await verifyWebhook({ headers: signed({ timestamp: nowSeconds }), body }, secret));
    await assert.rejects(verifyWebhook({ headers: signed(), body }, secret, { toleranceSeconds: -1 }), RangeError);
  });

  it('says when a timestamp looks like milliseconds', async () => {
    // signWebhook refuses milliseconds, so sign this one by hand, as a careless sender would.
    const mac = createHmac('sha256', parseSecret(secret)).update(`msg_v.${T * 1000}.${body}`).digest('base64');
    const headers = { 'webhook-id': 'msg_v', 'webhook-timestamp': String(T * 1000), 'webhook-signature': `v1,${mac}` };
    await refusal(verifyWebhook({ headers, body }, secret, { now: at(T) }), 'timestamp_in_future', /looks like milliseconds/);
  });

  it('refuses a message without any one of the three headers, naming it', async () => {
    for (const name of ['webhook-id', 'webhook-timestamp', 'webhook-signature'] as const) {
      const headers: Record<string, string> = { ...signed() };
      delete headers[name];
      await refusal(verifyWebhook({ headers, body }, secret, { now: at(T) }), 'missing_header', new RegExp(`^The ${name} header is missing`));
      await refusal(verifyWebhook({ headers: { ...signed(), [name]: ' ' }, body }, secret, { now: at(T) }), 'missing_header', new RegExp(name));
    }
    await refusal(verifyWebhook({ headers: new Headers(), body }, secret), 'missing_header', /webhook-id and webhook-timestamp and webhook-signature headers are missing/);
  });

  it('refuses a timestamp that is not whole seconds', async () => {
    for (const value of ['abc', '1700000000.5', '-1', '1e9', '99999999999999999999']) {
      await refusal(verifyWebhook({ headers: { ...signed(), 'webhook-timestamp': value }, body }, secret, { now: at(T) }), 'invalid_timestamp', /whole seconds/);
    }
  });

  it('refuses a signature header without a usable v1 signature, ignoring other versions', async () => {
    const headers = signed();
    const [, mac] = headers['webhook-signature'].split(',');
    await refusal(verifyWebhook({ headers: { ...headers, 'webhook-signature': `v2,${mac}` }, body }, secret, { now: at(T) }), 'invalid_signature', /no v1 signature/);
    await refusal(verifyWebhook({ headers: { ...headers, 'webhook-signature': 'v1,!!!' }, body }, secret, { now: at(T) }), 'invalid_signature', /no v1 signature/);
    // An unknown scheme next to a valid v1 signature is skipped, as the spec asks.
    assert.ok(await verifyWebhook({ headers: { ...headers, 'webhook-signature': `v1a,abc v2,${mac} ${headers['webhook-signature']}` }, body }, secret, { now: at(T) }));
    // Repeated headers merged by a proxy with ", " still verify.
    assert.ok(await verifyWebhook({ headers: { ...headers, 'webhook-signature': `v1,${randomBytes(32).toString('base64')}, ${headers['webhook-signature']}` }, body }, secret, { now: at(T) }));
  });

  it('refuses a secret that is not whsec_, without echoing it', async () => {
    const bare = randomBytes(32).toString('base64');
    const error = await refusal(verifyWebhook({ headers: signed(), body }, bare, { now: at(T) }), 'invalid_secret', /does not start with "whsec_"/);
    assert.ok(!error.message.includes(bare));
    await refusal(verifyWebhook({ headers: signed(), body }, [secret, 'whsec_c2hvcnQ='], { now: at(T) }), 'invalid_secret', /secret #2 of 2 holds 5 bytes/);
    await refusal(verifyWebhook({ headers: signed(), body }, [], { now: at(T) }), 'invalid_secret', /No webhook secret/);
    await refusal(verifyWebhook({ headers: signed(), body }, 'whsec_abc', { now: at(T) }), 'invalid_secret', /padded base64/);
  });

  it('refuses a body that is not raw, or not JSON once authenticated', async () => {
    const parsed = JSON.parse(body) as unknown;
    await refusal(verifyWebhook({ headers: signed(), body: parsed as string }, secret, { now: at(T) }), 'invalid_body', /raw request body/);
    await refusal(verifyWebhook({ headers: signed({ body: 'not json' }), body: 'not json' }, secret, { now: at(T) }), 'invalid_body', /signature is valid but the body is not JSON/);
    const invalidUtf8 = new Uint8Array([0x7b, 0xff, 0x7d]);
    const headers = signed();
    const mac = createHmac('sha256', parseSecret(secret)).update(Buffer.concat([Buffer.from(`msg_v.${T}.`), invalidUtf8])).digest('base64');
    await refusal(verifyWebhook({ headers: { ...headers, 'webhook-signature': `v1,${mac}` }, body: invalidUtf8 }, secret, { now: at(T) }), 'invalid_body');
  });

  it('runs on WebCrypto alone: no node: imports, so it works in browsers and edge runtimes', async () => {
    const source = await readFile(new URL('../src/client/verify.ts', import.meta.url), 'utf8');
    // Only relative imports (none today), no CommonJS, no Node globals in code.
    const offending = source.match(/\bfrom\s+['"](?!\.)[^'"]*['"]|\bimport\(|\brequire\(|\bBuffer\.|\bprocess\./g);
    assert.equal(offending, null, `src/client/verify.ts must stay runtime-neutral; found ${String(offending)}`);
  });
});

describe('key rotation', () => {
  const previous = generateWebhookSecret();
  const next = generateWebhookSecret();

  it('a header with old and new signatures verifies with either secret alone', async () => {
    const headers = signWebhook({ id: 'msg_r', timestamp: T, body, secrets: [next, previous] });
    assert.match(headers['webhook-signature'], /^v1,\S+ v1,\S+$/);
    assert.equal((await verifyWebhook({ headers, body }, previous, { now: at(T) })).id, 'msg_r');
    assert.equal((await verifyWebhook({ headers, body }, next, { now: at(T) })).id, 'msg_r');
    await refusal(verifyWebhook({ headers, body }, generateWebhookSecret(), { now: at(T) }), 'invalid_signature', /2 v1 signature/);
  });

  it('a receiver configured with [new, old] verifies a message signed only by old, and only by new', async () => {
    for (const signer of [previous, next]) {
      const headers = signWebhook({ id: 'msg_r', timestamp: T, body, secrets: [signer] });
      assert.equal((await verifyWebhook({ headers, body }, [next, previous], { now: at(T) })).id, 'msg_r');
    }
    const stranger = signWebhook({ id: 'msg_r', timestamp: T, body, secrets: [generateWebhookSecret()] });
    await refusal(verifyWebhook({ headers: stranger, body }, [next, previous], { now: at(T) }), 'invalid_signature', /2 configured secret/);
  });
});

describe('WebhookDeduplicator', () => {
  it('answers false the first time and true for a repeat', () => {
    const dedupe = new WebhookDeduplicator();
    assert.equal(dedupe.seen('msg_1'), false);
    assert.equal(dedupe.seen('msg_1'), true);
    assert.equal(dedupe.seen('msg_2'), false);
  });

  it('forgets an id after the TTL since it was last seen', () => {
    let now = 0;
    const dedupe = new WebhookDeduplicator({ ttlMs: 1000, now: () => now });
    dedupe.seen('msg_1');
    now = 999;
    assert.equal(dedupe.seen('msg_1'), true, 'still remembered, and remembered again from now');
    now = 1998;
    assert.equal(dedupe.seen('msg_1'), true, 'the repeat restarted the TTL');
    now = 2998;
    assert.equal(dedupe.seen('msg_1'), false, 'expired');
  });

  it('defaults to 24 hours', () => {
    let now = 0;
    const dedupe = new WebhookDeduplicator({ now: () => now });
    dedupe.seen('msg_1');
    now = 24 * 3600 * 1000 - 1;
    assert.equal(dedupe.seen('msg_1'), true);
    now += 24 * 3600 * 1000;
    assert.equal(dedupe.seen('msg_1'), false);
  });

  it('keeps at most maxEntries ids, dropping the oldest first', () => {
    const dedupe = new WebhookDeduplicator({ maxEntries: 2 });
    dedupe.seen('a');
    dedupe.seen('b');
    dedupe.seen('c');
    assert.equal(dedupe.seen('c'), true);
    assert.equal(dedupe.seen('b'), true);
    assert.equal(dedupe.seen('a'), false, 'dropped when c arrived');
  });

  it('forget() lets the next delivery through, for when processing failed', () => {
    const dedupe = new WebhookDeduplicator();
    dedupe.seen('msg_1');
    dedupe.forget('msg_1');
    assert.equal(dedupe.seen('msg_1'), false);
  });

  it('refuses nonsensical options', () => {
    assert.throws(() => new WebhookDeduplicator({ ttlMs: 0 }), RangeError);
    assert.throws(() => new WebhookDeduplicator({ maxEntries: 0 }), RangeError);
    assert.throws(() => new WebhookDeduplicator({ maxEntries: 1.5 }), RangeError);
  });
});
