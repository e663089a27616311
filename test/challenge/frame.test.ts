/** The frame codec: exact layout, any fragmentation, strict header checks, and hostile bytes. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import { ErrorCode, isSecpolicyError } from '../../src/index.js';
import { DEFAULT_MAX_PAYLOAD, FrameDecoder, FrameType, HEADER_SIZE, encodeFrame, type Frame } from '../../src/challenge/index.js';

const isProtocol = (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.PROTOCOL;

function header(type: number, version: bigint, size: bigint, pad = 0): Buffer {
  const h = Buffer.alloc(HEADER_SIZE);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(pad, 4);
  h.writeBigUInt64LE(version, 8);
  h.writeBigUInt64LE(size, 16);
  return h;
}

/** Feeds `bytes` cut at `cuts`; returns the frames, or the error thrown. */
function decode(bytes: Uint8Array, cuts: number[], maxPayload?: number): { frames: Frame[]; error?: unknown; maxBuffered: number } {
  const d = new FrameDecoder(maxPayload === undefined ? {} : { maxPayload });
  const frames: Frame[] = [];
  let maxBuffered = 0;
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  let at = 0;
  try {
    for (const p of [...points, bytes.length]) {
      frames.push(...d.push(bytes.subarray(at, p)));
      maxBuffered = Math.max(maxBuffered, d.buffered);
      at = p;
    }
    d.end();
  } catch (error) {
    return { frames, error, maxBuffered };
  }
  return { frames, maxBuffered };
}

test('encodeFrame writes the C struct layout, little-endian', () => {
  const f = encodeFrame(FrameType.RESPONSE, Buffer.from([7, 8, 9]));
  assert.equal(f.toString('hex'), '01000000' + '00000000' + '0100000000000000' + '0300000000000000' + '070809');
  assert.throws(
    () => encodeFrame(FrameType.REQUEST, new Uint8Array(0)),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG,
  );
  assert.throws(
    () => encodeFrame(2 as FrameType, new Uint8Array(1)),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG,
  );
});

test('a frame fed one byte at a time decodes; padding is ignored; several frames in one chunk decode in order', () => {
  const f = Buffer.concat([header(0, 1n, 3n, 0xdeadbeef), Buffer.from('abc')]);
  const d = new FrameDecoder();
  const out: Frame[] = [];
  for (const b of f) out.push(...d.push(Buffer.from([b])));
  assert.deepEqual(
    out.map((x) => [x.type, Buffer.from(x.payload).toString()]),
    [[0, 'abc']],
  );
  assert.equal(d.idle, true);
  const two = Buffer.concat([encodeFrame(FrameType.REQUEST, Buffer.from('x')), encodeFrame(FrameType.RESPONSE, Buffer.from('yz'))]);
  assert.deepEqual(
    new FrameDecoder().push(two).map((x) => [x.type, Buffer.from(x.payload).toString()]),
    [
      [0, 'x'],
      [1, 'yz'],
    ],
  );
});

test('header checks: version, type, empty payload, cap', () => {
  for (const [h, why] of [
    [header(0, 2n, 1n), /version-2 \(shared-secret\) frame where a custom challenge speaks version 1/],
    [header(0, 3n, 1n), /unsupported version 3/],
    [header(0, 1n + 2n ** 32n, 1n), /version/],
    [header(2, 1n, 1n), /unknown type 2/],
    [header(0, 1n, 0n), /empty payload/],
    [header(0, 1n, BigInt(DEFAULT_MAX_PAYLOAD) + 1n), /exceeds the limit of 65536/],
  ] as const) {
    const d = new FrameDecoder();
    assert.throws(
      () => d.push(h),
      (e: unknown) => isProtocol(e) && why.test((e as Error).message),
    );
    // Once failed, it stays failed.
    assert.throws(() => d.push(Buffer.from([0])), isProtocol);
  }
  assert.equal(new FrameDecoder().push(Buffer.concat([header(1, 1n, 65536n), Buffer.alloc(65536)])).length, 1);
});

test('a version-2 decoder (shared secret) takes version-2 frames and names a version-1 frame as the downgrade it is', () => {
  const f = new FrameDecoder({ version: 2 }).push(encodeFrame(FrameType.REQUEST, Buffer.from('n'), 2));
  assert.equal(f.length, 1);
  assert.throws(
    () => new FrameDecoder({ version: 2 }).push(encodeFrame(FrameType.REQUEST, Buffer.from('n'))),
    (e: unknown) => isProtocol(e) && /version-1 frame .*no fallback/.test((e as Error).message),
  );
  assert.throws(
    () => new FrameDecoder({ version: 7 }),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG,
  );
  assert.throws(
    () => encodeFrame(FrameType.REQUEST, Buffer.from('n'), 3),
    (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG,
  );
});

test('a payload trickled in one byte at a time arrives whole and unchanged', () => {
  const payload = randomBytes(5000);
  const d = new FrameDecoder();
  const frame = encodeFrame(FrameType.RESPONSE, payload);
  const out = [];
  for (let i = 0; i < frame.length; i++) out.push(...d.push(frame.subarray(i, i + 1)));
  assert.equal(out.length, 1);
  assert.deepEqual(Buffer.from(out[0]!.payload), payload);
});

test('a header announcing 2^63 bytes fails as soon as the header is complete, holding only the header', () => {
  const d = new FrameDecoder();
  const h = header(1, 1n, 2n ** 63n);
  d.push(h.subarray(0, 23));
  assert.equal(d.buffered, 23);
  assert.throws(() => d.push(h.subarray(23)), isProtocol);
});

test('the cap is configurable and validated', () => {
  assert.throws(() => new FrameDecoder({ maxPayload: 4 }).push(header(0, 1n, 5n)), isProtocol);
  assert.equal(new FrameDecoder({ maxPayload: 5 }).push(Buffer.concat([header(0, 1n, 5n), Buffer.alloc(5)])).length, 1);
  for (const bad of [0, -1, 1.5, 2 ** 40, '10', NaN]) {
    assert.throws(
      () => new FrameDecoder({ maxPayload: bad as number }),
      (e: unknown) => isSecpolicyError(e) && e.code === ErrorCode.INVALID_ARG && /maxPayload/.test((e as Error).message),
    );
  }
});

test('a stream that ends inside a header or a payload is a protocol error; between frames it is not', () => {
  const f = encodeFrame(FrameType.REQUEST, Buffer.from('hello'));
  for (const n of [1, 23, 24, 28]) {
    const d = new FrameDecoder();
    d.push(f.subarray(0, n));
    assert.throws(() => d.end(), isProtocol, `cut at ${n}`);
  }
  const d = new FrameDecoder();
  d.push(f);
  d.end();
});

const payloads = fc.array(
  fc.tuple(fc.constantFrom(FrameType.REQUEST, FrameType.RESPONSE), fc.uint8Array({ minLength: 1, maxLength: 300 })),
  { minLength: 1, maxLength: 5 },
);
const cutList = fc.array(fc.nat(), { maxLength: 40 });

test('property: valid frames in any fragmentation decode to exactly what was encoded', () => {
  fc.assert(
    fc.property(payloads, cutList, (frames, cuts) => {
      const bytes = Buffer.concat(frames.map(([t, p]) => encodeFrame(t, p)));
      const r = decode(bytes, cuts);
      assert.equal(r.error, undefined);
      assert.deepEqual(
        r.frames.map((f) => [f.type, Buffer.from(f.payload).toString('hex')]),
        frames.map(([t, p]) => [t, Buffer.from(p).toString('hex')]),
      );
    }),
    { numRuns: 300 },
  );
});

test('property: random bytes in random fragmentation only ever throw ERR_SECPOLICY_PROTOCOL and never buffer past the cap', () => {
  const cap = 256;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), cutList, (bytes, cuts) => {
      const r = decode(bytes, cuts, cap);
      if (r.error !== undefined) assert.ok(isProtocol(r.error), String(r.error));
      assert.ok(r.maxBuffered <= HEADER_SIZE + cap);
    }),
    { numRuns: 500 },
  );
});

test('property: mutated valid frames either decode or throw ERR_SECPOLICY_PROTOCOL, never anything else', () => {
  const cap = 512;
  const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 });
  fc.assert(
    fc.property(payloads, mutation, cutList, fc.nat(), (frames, edits, cuts, truncate) => {
      const bytes = Buffer.concat(frames.map(([t, p]) => encodeFrame(t, p)));
      for (const [at, value] of edits) bytes[at % bytes.length] = value;
      const cut = bytes.subarray(0, bytes.length - (truncate % 4 === 0 ? truncate % bytes.length : 0));
      const r = decode(cut, cuts, cap);
      if (r.error !== undefined) assert.ok(isProtocol(r.error), String(r.error));
      assert.ok(r.maxBuffered <= HEADER_SIZE + cap);
      for (const f of r.frames) assert.ok(f.payload.length >= 1 && f.payload.length <= cap);
    }),
    { numRuns: 500 },
  );
});

test('property: headers with random 64-bit sizes are judged from the header alone', () => {
  fc.assert(
    fc.property(fc.oneof(fc.bigInt({ min: 0n, max: 2048n }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), (size) => {
      const d = new FrameDecoder({ maxPayload: 1024 });
      let ok = true;
      try {
        d.push(header(1, 1n, size));
      } catch (e) {
        assert.ok(isProtocol(e));
        ok = false;
      }
      assert.equal(ok, size >= 1n && size <= 1024n);
      assert.ok(d.buffered <= HEADER_SIZE);
    }),
    { numRuns: 300 },
  );
});
