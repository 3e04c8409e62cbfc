import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    MAX_CURSOR_LENGTH_CHARS,
    MAX_PAGE_SIZE,
    MAX_SHARDS_PER_MERGE,
    base64UrlDecode,
    base64UrlEncode,
    decodeCursor,
    encodeCursor,
    mergeCounters,
    mergePages,
    pageAfter,
    pairKeyCodec,
    u64KeyCodec,
    utf8Decode,
    utf8Encode,
    utf8KeyCodec,
    type KeyCodec,
    type MergedPage,
    type MergeInputError,
    type Outcome,
    type ShardPage
} from '../../src/shared/aggregation';

interface Loan {
    id: bigint;
    created_at: bigint;
}

const byId = (a: bigint, b: bigint): number => (a < b ? -1 : a > b ? 1 : 0);
const idKey = (loan: Loan): bigint => loan.id;

/** Newest first, then by id: the dashboard order. */
const newestFirst = (a: [bigint, bigint], b: [bigint, bigint]): number =>
    a[0] !== b[0] ? (a[0] > b[0] ? -1 : 1) : byId(a[1], b[1]);
const newestKey = (loan: Loan): [bigint, bigint] => [loan.created_at, loan.id];

function loans(...ids: number[]): Loan[] {
    return ids.map((id) => ({ id: BigInt(id), created_at: 0n }));
}

function ok(shard_id: number, items: Loan[], has_more: boolean): ShardPage<Loan> {
    return { shard_id, ok: true, items, has_more };
}

function mergeById(
    pages: ShardPage<Loan>[],
    limit: number,
    after: bigint | null = null
): MergedPage<Loan> {
    const result = mergePages(pages, {
        limit,
        key: idKey,
        compare: byId,
        codec: u64KeyCodec,
        after
    });
    if (!result.ok) throw new Error(`unexpected merge error: ${result.error.reason}`);
    return result.value;
}

function cursorKey<K>(cursor: string | null, codec: KeyCodec<K>): K {
    expect(cursor).not.toBeNull();
    const decoded = decodeCursor(cursor as string, codec);
    if (!decoded.ok) throw new Error(`cursor did not decode: ${decoded.error.kind}`);
    return decoded.value;
}

describe('mergePages', () => {
    it('interleaves sorted shard pages into one ascending page', () => {
        const page = mergeById([ok(0, loans(1, 4, 7), false), ok(1, loans(2, 3, 9), false)], 10);
        expect(page.items.map((l) => l.id)).toEqual([1n, 2n, 3n, 4n, 7n, 9n]);
        expect(page.next_cursor).toBeNull();
        expect(page.complete).toBe(true);
        expect(page.failed_shards).toEqual([]);
    });

    it('stops at limit and resumes after the last emitted key', () => {
        const page = mergeById([ok(0, loans(1, 4, 7), false), ok(1, loans(2, 3, 9), false)], 4);
        expect(page.items.map((l) => l.id)).toEqual([1n, 2n, 3n, 4n]);
        expect(cursorKey(page.next_cursor, u64KeyCodec)).toBe(4n);
    });

    it('never emits past the last key of a shard that has more', () => {
        // Shard 0 holds 1..4 but returned only 1,2; shard 1 returned 5,6. Emitting 5 would skip 3,4.
        const page = mergeById([ok(0, loans(1, 2), true), ok(1, loans(5, 6), false)], 10);
        expect(page.items.map((l) => l.id)).toEqual([1n, 2n]);
        const after = cursorKey(page.next_cursor, u64KeyCodec);
        const next = mergeById([ok(0, loans(3, 4), false), ok(1, loans(5, 6), false)], 10, after);
        expect(next.items.map((l) => l.id)).toEqual([3n, 4n, 5n, 6n]);
        expect(next.next_cursor).toBeNull();
    });

    it('reports failed shards in ascending order and marks the page incomplete', () => {
        const page = mergeById(
            [
                { shard_id: 7, ok: false, error: 'timeout' },
                ok(2, loans(1, 2), false),
                { shard_id: 3, ok: false, error: 'breaker open' }
            ],
            10
        );
        expect(page.items.map((l) => l.id)).toEqual([1n, 2n]);
        expect(page.complete).toBe(false);
        expect(page.failed_shards).toEqual([3, 7]);
    });

    it('treats an unsorted page, an item not after the cursor, or has_more with no items as a failure', () => {
        const unsorted = mergeById([ok(0, loans(2, 1), false), ok(1, loans(3), false)], 10);
        expect(unsorted.failed_shards).toEqual([0]);
        expect(unsorted.items.map((l) => l.id)).toEqual([3n]);

        const stale = mergeById([ok(0, loans(5, 6), false), ok(1, loans(9), false)], 10, 5n);
        expect(stale.failed_shards).toEqual([0]);

        const empty = mergeById([ok(0, [], true), ok(1, loans(1), false)], 10);
        expect(empty.failed_shards).toEqual([0]);
        expect(empty.complete).toBe(false);
    });

    it('cuts a page longer than limit without losing its tail', () => {
        const first = mergeById([ok(0, loans(1, 2, 3, 4, 5), false), ok(1, loans(10), false)], 2);
        expect(first.items.map((l) => l.id)).toEqual([1n, 2n]);
        const after = cursorKey(first.next_cursor, u64KeyCodec);
        const second = mergeById([ok(0, loans(3, 4, 5), false), ok(1, loans(10), false)], 2, after);
        expect(second.items.map((l) => l.id)).toEqual([3n, 4n]);
    });

    it('returns an empty final page when nothing is left', () => {
        const page = mergeById([ok(0, [], false), ok(1, [], false)], 5);
        expect(page).toEqual({ items: [], next_cursor: null, complete: true, failed_shards: [] });
    });

    it('rejects a bad limit, too many shards and duplicate shard ids as values', () => {
        const opts = { key: idKey, compare: byId, codec: u64KeyCodec, after: null };
        for (const limit of [0, -1, 1.5, MAX_PAGE_SIZE + 1, Number.NaN]) {
            const result = mergePages([], { ...opts, limit });
            expect(result.ok).toBe(false);
            if (!result.ok) expect(result.error.field).toBe('limit');
        }
        const many = Array.from({ length: MAX_SHARDS_PER_MERGE + 1 }, (_, i) => ok(i, [], false));
        const tooMany = mergePages(many, { ...opts, limit: 10 });
        expect(tooMany.ok).toBe(false);
        const dup = mergePages([ok(1, [], false), ok(1, [], false)], { ...opts, limit: 10 });
        expect(dup.ok).toBe(false);
        if (!dup.ok) expect(dup.error.reason).toContain('duplicate');
    });

    it('merges newest-first with an id tie-break through a tuple cursor', () => {
        const codec = pairKeyCodec(u64KeyCodec, u64KeyCodec);
        const a: Loan[] = [
            { id: 3n, created_at: 30n },
            { id: 1n, created_at: 10n }
        ];
        const b: Loan[] = [
            { id: 2n, created_at: 30n },
            { id: 4n, created_at: 20n }
        ];
        const opts = { limit: 3, key: newestKey, compare: newestFirst, codec, after: null };
        const result = mergePages([ok(0, a, false), ok(1, b, false)], opts);
        expect(result.ok).toBe(true);
        if (!result.ok) return;
        expect(result.value.items.map((l) => l.id)).toEqual([2n, 3n, 4n]);
        expect(cursorKey(result.value.next_cursor, codec)).toEqual([20n, 4n]);
    });

    it('pages k sorted random lists into exactly their sorted union (property)', () => {
        fc.assert(
            fc.property(
                fc.uniqueArray(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { maxLength: 200 }),
                fc.integer({ min: 1, max: 12 }),
                fc.infiniteStream(fc.integer({ min: 0, max: 1 << 30 })),
                (ids, shardCount, draws) => {
                    const shards: Loan[][] = Array.from({ length: shardCount }, () => []);
                    const next = (): number => draws.next().value as number;
                    for (const id of ids) shards[next() % shardCount].push({ id, created_at: 0n });
                    for (const shard of shards) shard.sort((x, y) => byId(x.id, y.id));

                    const seen: bigint[] = [];
                    let after: bigint | null = null;
                    // Each page emits at least one item, so ids.length + 1 pages suffice.
                    for (let round = 0; round <= ids.length; round++) {
                        const limit = 1 + (next() % 20);
                        const pages = shards.map((shard, shard_id) => {
                            // Shards may answer short (reply-size caps) or long (ignoring limit).
                            const size = 1 + (next() % (limit + 3));
                            const page = pageAfter(shard, after, size, idKey, byId);
                            return ok(shard_id, page.items, page.has_more);
                        });
                        const merged = mergeById(pages, limit, after);
                        expect(merged.items.length).toBeLessThanOrEqual(limit);
                        seen.push(...merged.items.map((l) => l.id));
                        if (merged.next_cursor === null) break;
                        after = cursorKey(merged.next_cursor, u64KeyCodec);
                    }
                    expect(seen).toEqual([...ids].sort(byId));
                }
            ),
            { numRuns: 150 }
        );
    });

    it('pages the newest-first order with tuple keys without duplicates or gaps (property)', () => {
        const codec = pairKeyCodec(u64KeyCodec, u64KeyCodec);
        fc.assert(
            fc.property(
                fc.uniqueArray(fc.bigInt({ min: 0n, max: 1000n }), { maxLength: 120 }),
                fc.array(fc.bigInt({ min: 0n, max: 20n }), { minLength: 120, maxLength: 120 }),
                fc.integer({ min: 1, max: 6 }),
                fc.integer({ min: 1, max: 9 }),
                (ids, times, shardCount, limit) => {
                    const all = ids.map((id, i) => ({ id, created_at: times[i] }));
                    const shards: Loan[][] = Array.from({ length: shardCount }, () => []);
                    all.forEach((loan, i) => shards[i % shardCount].push(loan));
                    const cmp = (x: Loan, y: Loan): number =>
                        newestFirst(newestKey(x), newestKey(y));
                    for (const shard of shards) shard.sort(cmp);

                    const seen: Loan[] = [];
                    let after: [bigint, bigint] | null = null;
                    for (let round = 0; round <= all.length; round++) {
                        const pages = shards.map((shard, shard_id) => {
                            const page = pageAfter(
                                shard,
                                after,
                                1 + (round % 4),
                                newestKey,
                                newestFirst
                            );
                            return ok(shard_id, page.items, page.has_more);
                        });
                        const result: Outcome<MergedPage<Loan>, MergeInputError> = mergePages(
                            pages,
                            {
                                limit,
                                key: newestKey,
                                compare: newestFirst,
                                codec,
                                after
                            }
                        );
                        if (!result.ok) throw new Error(result.error.reason);
                        seen.push(...result.value.items);
                        if (result.value.next_cursor === null) break;
                        after = cursorKey(result.value.next_cursor, codec);
                    }
                    expect(seen).toEqual([...all].sort(cmp));
                }
            ),
            { numRuns: 100 }
        );
    });

    it('with failing shards, reports exactly them and still emits each item at most once, in order (property)', () => {
        fc.assert(
            fc.property(
                fc.uniqueArray(fc.integer({ min: 0, max: 10_000 }), { maxLength: 150 }),
                fc.integer({ min: 1, max: 8 }),
                fc.infiniteStream(fc.integer({ min: 0, max: 1 << 30 })),
                (ids, shardCount, draws) => {
                    const next = (): number => draws.next().value as number;
                    const shards: Loan[][] = Array.from({ length: shardCount }, () => []);
                    for (const id of [...ids].sort((x, y) => x - y)) {
                        shards[next() % shardCount].push({ id: BigInt(id), created_at: 0n });
                    }
                    const seen: bigint[] = [];
                    let after: bigint | null = null;
                    for (let round = 0; round <= ids.length; round++) {
                        const down = new Set(
                            shards.map((_, i) => i).filter(() => next() % 4 === 0)
                        );
                        const pages = shards.map((shard, shard_id): ShardPage<Loan> => {
                            if (down.has(shard_id)) return { shard_id, ok: false, error: 'down' };
                            const page = pageAfter(shard, after, 1 + (next() % 5), idKey, byId);
                            return ok(shard_id, page.items, page.has_more);
                        });
                        const merged = mergeById(pages, 1 + (next() % 6), after);
                        expect(merged.failed_shards).toEqual([...down].sort((x, y) => x - y));
                        expect(merged.complete).toBe(down.size === 0);
                        seen.push(...merged.items.map((l) => l.id));
                        if (merged.next_cursor === null) break;
                        after = cursorKey(merged.next_cursor, u64KeyCodec);
                    }
                    for (let i = 1; i < seen.length; i++) expect(seen[i - 1] < seen[i]).toBe(true);
                    const valid = new Set(ids.map(BigInt));
                    for (const id of seen) expect(valid.has(id)).toBe(true);
                }
            ),
            { numRuns: 150 }
        );
    });
});

describe('cursor', () => {
    it('round-trips u64, string and tuple keys', () => {
        expect(cursorKey(encodeCursor(0n, u64KeyCodec), u64KeyCodec)).toBe(0n);
        const max = (1n << 64n) - 1n;
        expect(cursorKey(encodeCursor(max, u64KeyCodec), u64KeyCodec)).toBe(max);
        const text = 'aaaaa-aa ünï 😀';
        expect(cursorKey(encodeCursor(text, utf8KeyCodec), utf8KeyCodec)).toBe(text);
        const longest = 'é'.repeat(64); // 128 UTF-8 bytes, the codec's bound
        const twoStrings = pairKeyCodec(utf8KeyCodec, utf8KeyCodec);
        const encoded = encodeCursor([longest, longest], twoStrings);
        expect(encoded.length).toBeLessThanOrEqual(MAX_CURSOR_LENGTH_CHARS);
        expect(cursorKey(encoded, twoStrings)).toEqual([longest, longest]);
        expect(() => encodeCursor('é'.repeat(65), utf8KeyCodec)).toThrow(RangeError);
        const pair = pairKeyCodec(utf8KeyCodec, u64KeyCodec);
        expect(cursorKey(encodeCursor(['x', 5n], pair), pair)).toEqual(['x', 5n]);
    });

    it('is compact url-safe text', () => {
        const cursor = encodeCursor(123456789n, u64KeyCodec);
        expect(cursor).toMatch(/^[A-Za-z0-9_-]+$/);
        expect(cursor.length).toBe(18); // 1 version + 8 key + 4 checksum bytes
    });

    it('rejects garbage with typed errors instead of throwing', () => {
        expect(decodeCursor('', u64KeyCodec)).toEqual({ ok: false, error: { kind: 'Empty' } });
        const long = decodeCursor('A'.repeat(MAX_CURSOR_LENGTH_CHARS + 1), u64KeyCodec);
        expect(long.ok || long.error.kind).toBe('TooLong');
        const chars = decodeCursor('abc$def', u64KeyCodec);
        expect(chars.ok || chars.error.kind).toBe('BadEncoding');
        const short = decodeCursor('AQ', u64KeyCodec);
        expect(short.ok || short.error.kind).toBe('BadEncoding');
    });

    it('rejects an unknown version, a corrupted byte and a key of the wrong shape', () => {
        const good = base64UrlDecode(encodeCursor(77n, u64KeyCodec)) as Uint8Array;
        const version = Uint8Array.from(good);
        version[0] = 9;
        const v = decodeCursor(base64UrlEncode(version), u64KeyCodec);
        expect(v).toEqual({ ok: false, error: { kind: 'UnsupportedVersion', version: 9 } });

        const flipped = Uint8Array.from(good);
        flipped[5] ^= 1;
        const f = decodeCursor(base64UrlEncode(flipped), u64KeyCodec);
        expect(f.ok || f.error.kind).toBe('BadChecksum');

        // Valid envelope, but a string key is not a u64 key (wrong length).
        const other = decodeCursor(encodeCursor('abc', utf8KeyCodec), u64KeyCodec);
        expect(other.ok || other.error.kind).toBe('BadKey');
    });

    it('never throws and only accepts canonical text for arbitrary input (property)', () => {
        fc.assert(
            fc.property(fc.string({ maxLength: 40 }), (text) => {
                const decoded = decodeCursor(text, u64KeyCodec);
                if (decoded.ok) expect(encodeCursor(decoded.value, u64KeyCodec)).toBe(text);
            }),
            { numRuns: 500 }
        );
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
                const decoded = decodeCursor(
                    base64UrlEncode(bytes),
                    pairKeyCodec(utf8KeyCodec, u64KeyCodec)
                );
                expect(typeof decoded.ok).toBe('boolean');
            }),
            { numRuns: 500 }
        );
    });
});

describe('encodings', () => {
    it('base64url matches the standard alphabet and round-trips (property)', () => {
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
                const text = base64UrlEncode(bytes);
                expect(text).toBe(Buffer.from(bytes).toString('base64url'));
                expect(base64UrlDecode(text)).toEqual(bytes);
            }),
            { numRuns: 300 }
        );
    });

    it('base64url rejects non-canonical padding bits and impossible lengths', () => {
        expect(base64UrlDecode('AB')).toBeNull(); // 'B' leaves a non-zero bit after the byte
        expect(base64UrlDecode('ABCDE')).toBeNull();
        expect(base64UrlDecode('AA')).toEqual(new Uint8Array([0]));
    });

    it('utf8 agrees with TextEncoder/TextDecoder (property)', () => {
        fc.assert(
            fc.property(fc.string({ unit: 'binary', maxLength: 30 }), (text) => {
                const bytes = utf8Encode(text);
                expect(bytes).toEqual([...new TextEncoder().encode(text)]);
                expect(utf8Decode(Uint8Array.from(bytes))).toBe(
                    new TextDecoder().decode(Uint8Array.from(bytes))
                );
            }),
            { numRuns: 300 }
        );
    });

    it('utf8 decode rejects overlong, truncated and surrogate sequences', () => {
        expect(utf8Decode(Uint8Array.from([0xc0, 0x80]))).toBeNull();
        expect(utf8Decode(Uint8Array.from([0xe2, 0x82]))).toBeNull();
        expect(utf8Decode(Uint8Array.from([0xed, 0xa0, 0x80]))).toBeNull();
        expect(utf8Decode(Uint8Array.from([0xf0, 0x9f, 0x98, 0x80]))).toBe('😀');
    });
});

describe('mergeCounters', () => {
    it('sums numbers, bigints and nested counts by status field by field', () => {
        const merged = mergeCounters([
            { loans: 2, total_amount: 5n, by_status: { Active: 2, Repaid: 0 } },
            { loans: 3, total_amount: 7n, by_status: { Active: 1, Defaulted: 1 } }
        ]);
        expect(merged).toEqual({
            loans: 5,
            total_amount: 12n,
            by_status: { Active: 3, Repaid: 0, Defaulted: 1 }
        });
    });

    it('returns an empty record for no shards', () => {
        expect(mergeCounters([])).toEqual({});
    });

    it('treats mixing a number and a bigint in one field as a bug', () => {
        expect(() => mergeCounters([{ a: 1 }, { a: 1n }])).toThrow(TypeError);
    });

    it('equals the sum of the parts for random bigint totals (property)', () => {
        fc.assert(
            fc.property(
                fc.array(fc.bigInt({ min: 0n, max: 1n << 70n }), { maxLength: 50 }),
                (parts) => {
                    const merged = mergeCounters(parts.map((amount) => ({ amount, n: 1 })));
                    if (parts.length === 0) return;
                    expect(merged.amount).toBe(parts.reduce((s, x) => s + x, 0n));
                    expect(merged.n).toBe(parts.length);
                }
            ),
            { numRuns: 100 }
        );
    });
});
