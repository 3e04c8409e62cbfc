import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
    indexNodeCodec,
    MAX_CACHED_NODES,
    MAX_INDEXED_ID,
    MemoryKvStore,
    SortedIdIndex,
    headerKey,
    pageKey,
    type IndexHeader,
    type IndexNode,
    type IndexPage,
    type KvStoreStats
} from '../../src/shared/sorted_index';

/** Index keys that would collide under a naive `key + '#' + pageNo` layout. */
const TRICKY_KEYS = [
    'a',
    'a#1',
    'a#',
    '#',
    '',
    '1:a',
    'h1:a',
    'p1:a#0',
    'aaaaa-aa',
    'status:Active'
];

function freshIndex(pageSize: number): { store: MemoryKvStore<IndexNode>; index: SortedIdIndex } {
    const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
    return { store, index: new SortedIdIndex(store, { page_size: pageSize }) };
}

function touches(store: MemoryKvStore<IndexNode>, action: () => void): KvStoreStats {
    const before = { ...store.stats };
    action();
    return {
        gets: store.stats.gets - before.gets,
        inserts: store.stats.inserts - before.inserts,
        removes: store.stats.removes - before.removes
    };
}

function headerOf(store: MemoryKvStore<IndexNode>, indexKey: string): IndexHeader | undefined {
    return store.peek(headerKey(indexKey)) as IndexHeader | undefined;
}

function pageSizes(store: MemoryKvStore<IndexNode>, indexKey: string): number[] {
    const header = headerOf(store, indexKey);
    if (header === undefined) return [];
    return Array.from(
        header.page_nos,
        (no) => (store.peek(pageKey(indexKey, no)) as IndexPage | undefined)?.ids.length ?? -1
    );
}

/** Checks the stored layout of every key against the reference and that nothing else is stored. */
function expectLayout(
    store: MemoryKvStore<IndexNode>,
    reference: Map<string, Set<bigint>>,
    pageSize: number
): void {
    let expectedKeys = 0;
    for (const [indexKey, ids] of reference) {
        const header = headerOf(store, indexKey);
        if (ids.size === 0) {
            expect(header).toBeUndefined();
            continue;
        }
        if (header === undefined) throw new Error(`missing header for ${indexKey}`);
        const stored: bigint[] = [];
        header.page_nos.forEach((no, at) => {
            const page = store.peek(pageKey(indexKey, no)) as IndexPage;
            expect(page.ids.length).toBeGreaterThan(0);
            expect(page.ids.length).toBeLessThanOrEqual(pageSize);
            expect(page.ids[0]).toBe(header.page_mins[at]);
            stored.push(...page.ids);
        });
        expect(stored).toEqual([...ids].sort(compareBigInt));
        expect(header.count).toBe(ids.size);
        const sizes = pageSizes(store, indexKey);
        for (let at = 1; at < sizes.length; at++) {
            expect(sizes[at - 1] + sizes[at]).toBeGreaterThan(Math.floor(pageSize / 2));
        }
        expectedKeys += 1 + header.page_nos.length;
    }
    expect(store.size).toBe(expectedKeys);
}

/** A node in the format earlier builds stored (big-endian; `P` pages and `H` headers). */
function legacyBytes(node: IndexNode): Uint8Array {
    if (node.kind === 'page') {
        const bytes = new Uint8Array(1 + 8 * node.ids.length);
        const view = new DataView(bytes.buffer);
        bytes[0] = 0x50;
        node.ids.forEach((id, i) => view.setBigUint64(1 + 8 * i, id));
        return bytes;
    }
    const n = node.page_nos.length;
    const bytes = new Uint8Array(13 + 12 * n);
    const view = new DataView(bytes.buffer);
    bytes[0] = 0x48;
    view.setUint32(1, node.count);
    view.setUint32(5, node.next_page_no);
    view.setUint32(9, n);
    for (let i = 0; i < n; i++) {
        view.setBigUint64(13 + 8 * i, node.page_mins[i]);
        view.setUint32(13 + 8 * n + 4 * i, node.page_nos[i]);
    }
    return bytes;
}

/** Deterministic Fisher-Yates shuffle driven by a small LCG, so fast-check can shrink the seed. */
function shuffled<T>(items: T[], seed: number): T[] {
    let state = seed;
    for (let i = items.length - 1; i > 0; i--) {
        state = (state * 1_103_515_245 + 12_345) % 2_147_483_648;
        const j = state % (i + 1);
        [items[i], items[j]] = [items[j], items[i]];
    }
    return items;
}

function compareBigInt(a: bigint, b: bigint): number {
    return a < b ? -1 : a > b ? 1 : 0;
}

/** The reference's ids after the cursor, ascending. */
function referencePage(ids: Set<bigint> | undefined, afterId: bigint | null): bigint[] {
    const sorted = [...(ids ?? [])].sort(compareBigInt);
    return afterId === null ? sorted : sorted.filter((id) => id > afterId);
}

const idArb = fc.oneof(
    { weight: 4, arbitrary: fc.bigInt({ min: 0n, max: 80n }) },
    { weight: 1, arbitrary: fc.bigInt({ min: MAX_INDEXED_ID - 300n, max: MAX_INDEXED_ID }) },
    { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: MAX_INDEXED_ID }) }
);
const keyArb = fc.constantFrom(...TRICKY_KEYS.slice(0, 3));
const opArb = fc.oneof(
    {
        weight: 6,
        arbitrary: fc.record({ op: fc.constant('add' as const), key: keyArb, id: idArb })
    },
    {
        weight: 3,
        arbitrary: fc.record({ op: fc.constant('remove' as const), key: keyArb, id: idArb })
    },
    {
        weight: 1,
        arbitrary: fc.record({ op: fc.constant('has' as const), key: keyArb, id: idArb })
    },
    {
        weight: 2,
        arbitrary: fc.record({
            op: fc.constant('page' as const),
            key: keyArb,
            after: fc.option(idArb, { nil: null }),
            limit: fc.integer({ min: 1, max: 40 })
        })
    },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('count' as const), key: keyArb }) }
);

describe('SortedIdIndex', () => {
    it('behaves like a sorted set per index key under random adds, removes and pages', () => {
        fc.assert(
            fc.property(
                fc.constantFrom(8, 9, 16),
                fc.array(opArb, { minLength: 1, maxLength: 300 }),
                fc.integer({ min: 1, max: 1_000_000 }),
                (pageSize, ops, drainSeed) => {
                    const { store, index } = freshIndex(pageSize);
                    const reference = new Map<string, Set<bigint>>();
                    const setOf = (key: string): Set<bigint> => {
                        let set = reference.get(key);
                        if (set === undefined) reference.set(key, (set = new Set()));
                        return set;
                    };
                    ops.forEach((step, at) => {
                        if (at % 20 === 0) expectLayout(store, reference, pageSize);
                        if (step.op === 'add') {
                            const fresh = !setOf(step.key).has(step.id);
                            expect(index.add(step.key, step.id)).toBe(fresh);
                            setOf(step.key).add(step.id);
                        } else if (step.op === 'remove') {
                            expect(index.remove(step.key, step.id)).toBe(
                                setOf(step.key).delete(step.id)
                            );
                        } else if (step.op === 'has') {
                            expect(index.has(step.key, step.id)).toBe(setOf(step.key).has(step.id));
                        } else if (step.op === 'count') {
                            expect(index.count(step.key)).toBe(setOf(step.key).size);
                        } else {
                            const got = index.page(step.key, step.after, step.limit);
                            const beyond = referencePage(reference.get(step.key), step.after);
                            expect(got.ids).toEqual(beyond.slice(0, got.ids.length));
                            expect(got.has_more).toBe(beyond.length > got.ids.length);
                            const floor = Math.min(step.limit, Math.floor(pageSize / 2) + 1);
                            expect(got.ids.length).toBeGreaterThanOrEqual(
                                Math.min(floor, beyond.length)
                            );
                        }
                    });
                    expectLayout(store, reference, pageSize);
                    expect(index.removeAll(TRICKY_KEYS[0])).toBe(setOf(TRICKY_KEYS[0]).size);
                    setOf(TRICKY_KEYS[0]).clear();
                    for (const [key, ids] of reference) {
                        for (const id of shuffled([...ids], drainSeed)) {
                            expect(index.remove(key, id)).toBe(true);
                            ids.delete(id);
                            expectLayout(store, reference, pageSize);
                        }
                    }
                    expect(store.size).toBe(0);
                }
            ),
            { numRuns: 150 }
        );
    });

    it('walks a key with a cursor seeing every id once, in order, while ids change beyond it', () => {
        fc.assert(
            fc.property(
                fc.constantFrom(8, 13),
                fc.uniqueArray(fc.bigInt({ min: 0n, max: 2000n }), { maxLength: 400 }),
                fc.integer({ min: 1, max: 30 }),
                fc.array(
                    fc.record({
                        adds: fc.array(fc.bigInt({ min: 0n, max: 2200n }), { maxLength: 5 }),
                        removes: fc.array(fc.bigInt({ min: 0n, max: 2200n }), { maxLength: 5 })
                    }),
                    { maxLength: 200 }
                ),
                (pageSize, initial, limit, changes) => {
                    const { index } = freshIndex(pageSize);
                    const present = new Set<bigint>(initial);
                    for (const id of initial) index.add('status:Active', id);
                    const removedEver = new Set<bigint>();
                    const addedBeyondCursor = new Set<bigint>();
                    const seen: bigint[] = [];
                    let cursor: bigint | null = null;
                    for (let call = 0; call < 10_000; call++) {
                        const got = index.page('status:Active', cursor, limit);
                        const beyond = referencePage(present, cursor);
                        expect(got.ids).toEqual(beyond.slice(0, got.ids.length));
                        seen.push(...got.ids);
                        if (!got.has_more) break;
                        expect(got.ids.length).toBeGreaterThan(0);
                        cursor = got.ids[got.ids.length - 1];
                        const change = changes[call % Math.max(1, changes.length)];
                        for (const id of change?.removes ?? []) {
                            expect(index.remove('status:Active', id)).toBe(present.delete(id));
                            removedEver.add(id);
                        }
                        for (const id of change?.adds ?? []) {
                            index.add('status:Active', id);
                            present.add(id);
                            if (id > cursor) addedBeyondCursor.add(id);
                        }
                    }
                    const seenSet = new Set(seen);
                    expect(seenSet.size).toBe(seen.length);
                    expect(seen).toEqual([...seen].sort(compareBigInt));
                    for (const id of initial) {
                        if (!removedEver.has(id)) expect(seenSet.has(id)).toBe(true);
                    }
                    for (const id of addedBeyondCursor) {
                        if (present.has(id)) expect(seenSet.has(id)).toBe(true);
                    }
                }
            ),
            { numRuns: 100 }
        );
    });

    it('splits a full page into two halves when the page_size+1-th id arrives', () => {
        const { store, index } = freshIndex(8);
        for (let id = 1n; id <= 8n; id++) index.add('k', id * 10n);
        expect(pageSizes(store, 'k')).toEqual([8]);
        expect(store.size).toBe(2);
        index.add('k', 45n);
        expect(pageSizes(store, 'k')).toEqual([4, 5]);
        expect([...headerOf(store, 'k')!.page_mins]).toEqual([10n, 45n]);
        expect(store.size).toBe(3);
        expect(index.page('k', null, 20).ids).toEqual([
            10n,
            20n,
            30n,
            40n,
            45n,
            50n,
            60n,
            70n,
            80n
        ]);
    });

    it('reads up to two extra pages to fill a page when the cursor ends a page', () => {
        const { store, index } = freshIndex(8);
        for (let id = 1n; id <= 13n; id++) index.add('k', id);
        for (const id of [8n, 7n, 6n]) index.remove('k', id);
        expect(pageSizes(store, 'k')).toEqual([4, 1, 5]);
        const read = touches(store, () => {
            expect(index.page('k', 4n, 5)).toEqual({
                ids: [5n, 9n, 10n, 11n, 12n],
                has_more: true
            });
        });
        expect(read.gets).toBe(1 + 3);
    });

    it('returns fewer than limit ids with has_more when half-full pages exceed the read bound', () => {
        const { index } = freshIndex(8);
        for (let id = 1n; id <= 100n; id++) index.add('k', id);
        const first = index.page('k', null, 24);
        expect(first.ids).toEqual(Array.from({ length: 20 }, (_, i) => BigInt(i + 1)));
        expect(first.has_more).toBe(true);
        expect(index.page('k', 20n, 24).ids[0]).toBe(21n);
    });

    it('merges a page that shrinks to half a page into a neighbour that fits', () => {
        const { store, index } = freshIndex(8);
        for (let id = 1n; id <= 9n; id++) index.add('k', id);
        expect(pageSizes(store, 'k')).toEqual([4, 5]);
        index.remove('k', 9n);
        index.remove('k', 8n);
        index.remove('k', 7n);
        expect(pageSizes(store, 'k')).toEqual([4, 2]);
        index.remove('k', 1n);
        expect(pageSizes(store, 'k')).toEqual([3, 2]);
        index.remove('k', 2n);
        expect(pageSizes(store, 'k')).toEqual([4]);
        expect(store.size).toBe(2);
        expect(index.page('k', null, 10)).toEqual({ ids: [3n, 4n, 5n, 6n], has_more: false });
    });

    it('merges a shrinking page into its left neighbour when the pair fits in half a page', () => {
        const { store, index } = freshIndex(8);
        for (let id = 1n; id <= 13n; id++) index.add('k', id);
        expect(pageSizes(store, 'k')).toEqual([4, 4, 5]);
        for (const id of [1n, 8n, 7n]) index.remove('k', id);
        expect(pageSizes(store, 'k')).toEqual([3, 2, 5]);
        index.remove('k', 6n);
        expect(pageSizes(store, 'k')).toEqual([4, 5]);
        expect(index.page('k', null, 4)).toEqual({ ids: [2n, 3n, 4n, 5n], has_more: true });
    });

    it('leaves no entries behind when a key becomes empty', () => {
        const { store, index } = freshIndex(8);
        const ids = Array.from({ length: 100 }, (_, i) => BigInt(i * 7));
        for (const id of ids) index.add('borrower:aaaaa-aa', id);
        for (const id of ids) index.add('investor:aaaaa-aa', id);
        for (const id of [...ids].reverse())
            expect(index.remove('borrower:aaaaa-aa', id)).toBe(true);
        expect(index.count('borrower:aaaaa-aa')).toBe(0);
        expect(index.removeAll('investor:aaaaa-aa')).toBe(100);
        expect(index.removeAll('investor:aaaaa-aa')).toBe(0);
        expect(store.size).toBe(0);
        expect(index.page('borrower:aaaaa-aa', null, 5)).toEqual({ ids: [], has_more: false });
    });

    it('touches a bounded number of keys per operation on a large key', () => {
        const pageSize = 8;
        const { store, index } = freshIndex(pageSize);
        for (let id = 0n; id < 3000n; id += 3n) index.add('status:Active', id);
        for (let id = 0n; id < 3000n; id += 15n) index.remove('status:Active', id);
        fc.assert(
            fc.property(
                fc.option(fc.bigInt({ min: 0n, max: 3100n }), { nil: null }),
                fc.integer({ min: 1, max: 1000 }),
                fc.bigInt({ min: 0n, max: 3100n }),
                (after, limit, id) => {
                    const read = touches(store, () => index.page('status:Active', after, limit));
                    expect(read.gets).toBeLessThanOrEqual(1 + Math.ceil(limit / pageSize) + 2);
                    expect(read.inserts + read.removes).toBe(0);
                    expect(
                        touches(store, () => index.has('status:Active', id)).gets
                    ).toBeLessThanOrEqual(2);
                    const added = touches(store, () => index.add('status:Active', id));
                    expect(added.gets).toBeLessThanOrEqual(2);
                    expect(added.inserts).toBeLessThanOrEqual(3);
                    expect(added.removes).toBe(0);
                    const removed = touches(store, () => index.remove('status:Active', id));
                    expect(removed.gets).toBeLessThanOrEqual(4);
                    expect(removed.inserts).toBeLessThanOrEqual(2);
                    expect(removed.removes).toBeLessThanOrEqual(2);
                    expect(touches(store, () => index.count('status:Active')).gets).toBe(1);
                }
            ),
            { numRuns: 300 }
        );
        const pages = pageSizes(store, 'status:Active').length;
        const cleared = touches(store, () => index.removeAll('status:Active'));
        expect(cleared).toEqual({ gets: 1, inserts: 0, removes: pages + 1 });
    });

    it('keeps ids of different index keys apart, including keys like a#1 and a', () => {
        const { store, index } = freshIndex(8);
        TRICKY_KEYS.forEach((key, k) => {
            for (let i = 0; i < 30; i++) index.add(key, BigInt(i * TRICKY_KEYS.length + k));
        });
        TRICKY_KEYS.forEach((key, k) => {
            const expected = Array.from({ length: 30 }, (_, i) =>
                BigInt(i * TRICKY_KEYS.length + k)
            );
            expect(index.count(key)).toBe(30);
            expect(index.page(key, null, 100)).toEqual({ ids: expected, has_more: false });
            expect(index.has(key, BigInt(k === 0 ? 1 : 0))).toBe(false);
        });
        expect(index.removeAll('a')).toBe(30);
        expect(index.count('a#1')).toBe(30);
        expect(index.count('a#')).toBe(30);
        for (const key of TRICKY_KEYS) index.removeAll(key);
        expect(store.size).toBe(0);
    });

    it('maps distinct index keys and page numbers to distinct store keys', () => {
        const textArb = fc.string({
            unit: fc.constantFrom('a', '1', '#', ':', 'h', 'p'),
            maxLength: 6
        });
        const pageNoArb = fc.nat({ max: 1_000_000 });
        fc.assert(
            fc.property(textArb, textArb, pageNoArb, pageNoArb, (a, b, pageA, pageB) => {
                expect(headerKey(a) === headerKey(b)).toBe(a === b);
                expect(pageKey(a, pageA) === pageKey(b, pageB)).toBe(a === b && pageA === pageB);
                expect(headerKey(a)).not.toBe(pageKey(b, pageB));
            }),
            { numRuns: 1000 }
        );
    });

    it('stores ids across the whole nat64 range', () => {
        const { store, index } = freshIndex(8);
        index.add('k', MAX_INDEXED_ID);
        index.add('k', 0n);
        expect(store.peek(pageKey('k', 0))).toEqual({
            kind: 'page',
            ids: BigUint64Array.of(0n, MAX_INDEXED_ID)
        });
        expect(index.page('k', 0n, 5)).toEqual({ ids: [MAX_INDEXED_ID], has_more: false });
        expect(index.page('k', MAX_INDEXED_ID, 5)).toEqual({ ids: [], has_more: false });
    });

    it('throws for a bad page_size, limit or id, which are caller bugs', () => {
        const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
        for (const pageSize of [7, 4097, 8.5, NaN]) {
            expect(() => new SortedIdIndex(store, { page_size: pageSize })).toThrow(RangeError);
        }
        const index = new SortedIdIndex(store);
        expect(index.page_size).toBe(256);
        for (const limit of [0, 1001, 1.5, NaN]) {
            expect(() => index.page('k', null, limit)).toThrow(RangeError);
        }
        expect(() => index.add('k', -1n)).toThrow(RangeError);
        expect(() => index.add('k', MAX_INDEXED_ID + 1n)).toThrow(RangeError);
        expect(() => index.page('k', -1n, 10)).toThrow(RangeError);
        expect(() => index.add('x'.repeat(1025), 1n)).toThrow(RangeError);
        expect(store.size).toBe(0);
    });

    it('reads nodes written in the earlier big-endian format, alone or mixed with new ones', () => {
        fc.assert(
            fc.property(fc.array(opArb, { maxLength: 200 }), fc.boolean(), (ops, mixed) => {
                const reference = freshIndex(8);
                let writes = 0;
                const store = new MemoryKvStore<IndexNode>({
                    toBytes: (node) =>
                        !mixed || writes++ % 2 === 0
                            ? legacyBytes(node)
                            : indexNodeCodec.toBytes(node),
                    fromBytes: indexNodeCodec.fromBytes
                });
                const index = new SortedIdIndex(store, { page_size: 8 });
                for (const op of ops) {
                    const ref = reference.index;
                    if (op.op === 'add')
                        expect(index.add(op.key, op.id)).toBe(ref.add(op.key, op.id));
                    else if (op.op === 'remove')
                        expect(index.remove(op.key, op.id)).toBe(ref.remove(op.key, op.id));
                    else if (op.op === 'has')
                        expect(index.has(op.key, op.id)).toBe(ref.has(op.key, op.id));
                    else if (op.op === 'count') expect(index.count(op.key)).toBe(ref.count(op.key));
                    else
                        expect(index.page(op.key, op.after, op.limit)).toEqual(
                            ref.page(op.key, op.after, op.limit)
                        );
                }
                for (const key of reference.store.keys())
                    expect(store.peek(key)).toEqual(reference.store.peek(key));
            }),
            { numRuns: 200 }
        );
    });

    it('encodes nodes as 8 bytes per id and refuses malformed bytes', () => {
        const header: IndexHeader = {
            kind: 'header',
            count: 300,
            next_page_no: 40,
            page_mins: BigUint64Array.of(0n, MAX_INDEXED_ID),
            page_nos: Uint32Array.of(0, 39)
        };
        expect(indexNodeCodec.toBytes(header).length).toBe(16 + 2 * 12);
        expect(indexNodeCodec.fromBytes(indexNodeCodec.toBytes(header))).toEqual(header);
        const page: IndexPage = { kind: 'page', ids: BigUint64Array.of(1n, 36n, MAX_INDEXED_ID) };
        const bytes = indexNodeCodec.toBytes(page);
        expect(bytes.length).toBe(8 + 3 * 8);
        expect(indexNodeCodec.fromBytes(bytes)).toEqual(page);
        // Decoding copies: changing the decoded ids leaves the bytes as they were.
        const decoded = indexNodeCodec.fromBytes(bytes) as IndexPage;
        decoded.ids[0] = 2n;
        expect(indexNodeCodec.fromBytes(bytes)).toEqual(page);
        // A page at an odd offset of a larger buffer (as a store may hand it out) decodes too.
        const shifted = new Uint8Array(bytes.length + 3);
        shifted.set(bytes, 3);
        expect(indexNodeCodec.fromBytes(shifted.subarray(3))).toEqual(page);
        expect(indexNodeCodec.fromBytes(legacyBytes(page))).toEqual(page);
        expect(indexNodeCodec.fromBytes(legacyBytes(header))).toEqual(header);
        expect(() => indexNodeCodec.fromBytes(new Uint8Array([0x58, 1, 2]))).toThrow();
        expect(() =>
            indexNodeCodec.fromBytes(indexNodeCodec.toBytes(header).slice(0, 20))
        ).toThrow();
    });
});

describe('SortedIdIndex with a node cache', () => {
    /** The store's contents as comparable bytes, by store key. */
    function contents(store: MemoryKvStore<IndexNode>): Map<string, string> {
        const out = new Map<string, string>();
        for (const key of [...store.keys()].sort()) {
            out.set(key, Buffer.from(indexNodeCodec.toBytes(store.peek(key)!)).toString('hex'));
        }
        return out;
    }

    it('answers and writes exactly as an uncached index under random operations', () => {
        fc.assert(
            fc.property(
                fc.constantFrom(8, 16),
                fc.integer({ min: 1, max: 12 }),
                fc.array(opArb, { minLength: 1, maxLength: 300 }),
                (pageSize, cachedNodes, ops) => {
                    const plain = freshIndex(pageSize);
                    const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
                    const cached = new SortedIdIndex(store, {
                        page_size: pageSize,
                        cached_nodes: cachedNodes
                    });
                    ops.forEach((step, at) => {
                        if (step.op === 'add' || step.op === 'remove' || step.op === 'has') {
                            expect(cached[step.op](step.key, step.id)).toBe(
                                plain.index[step.op](step.key, step.id)
                            );
                        } else if (step.op === 'count') {
                            expect(cached.count(step.key)).toBe(plain.index.count(step.key));
                        } else {
                            expect(cached.page(step.key, step.after, step.limit)).toEqual(
                                plain.index.page(step.key, step.after, step.limit)
                            );
                        }
                        if (at % 25 === 0) expect(contents(store)).toEqual(contents(plain.store));
                    });
                    expect(contents(store)).toEqual(contents(plain.store));
                    for (const key of TRICKY_KEYS.slice(0, 3)) {
                        expect(cached.removeAll(key)).toBe(plain.index.removeAll(key));
                    }
                    expect(store.size).toBe(0);
                }
            ),
            { numRuns: 150 }
        );
    });

    it('reads nothing from the store for a key whose header and page it holds', () => {
        const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
        const index = new SortedIdIndex(store, { page_size: 8, cached_nodes: 16 });
        index.add('status:Active', 1n);
        expect(touches(store, () => index.add('status:Active', 2n))).toEqual({
            gets: 0,
            inserts: 2,
            removes: 0
        });
        expect(touches(store, () => index.remove('status:Active', 1n)).gets).toBe(0);
        expect(touches(store, () => index.page('status:Active', null, 10)).gets).toBe(0);
        // A second index over the same store starts cold and reads what the first one wrote.
        const cold = new SortedIdIndex(store, { page_size: 8 });
        expect(cold.page('status:Active', null, 10)).toEqual({ ids: [2n], has_more: false });
    });

    it('holds at most cached_nodes nodes, dropping the key used least recently', () => {
        const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
        const index = new SortedIdIndex(store, { page_size: 8, cached_nodes: 4 });
        index.add('hot', 1n); // header and page of hot
        index.add('a', 1n); // and of a: full
        index.has('hot', 1n); // hot is now the most recently used
        index.add('b', 1n); // drops a, not hot
        expect(touches(store, () => index.has('hot', 1n)).gets).toBe(0);
        expect(touches(store, () => index.has('b', 1n)).gets).toBe(0);
        expect(touches(store, () => index.has('a', 1n)).gets).toBe(2);
        // A key whose pages alone fill the cache still works, reading what does not fit.
        const small = new SortedIdIndex(store, { page_size: 8, cached_nodes: 2 });
        for (let id = 0n; id < 40n; id++) small.add('big', id);
        expect(small.page('big', null, 100).ids).toHaveLength(40);
        expect(touches(store, () => small.has('big', 39n)).gets).toBeLessThanOrEqual(1);
    });

    it('throws for a bad cached_nodes, a caller bug', () => {
        const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
        for (const cached_nodes of [-1, 1.5, MAX_CACHED_NODES + 1]) {
            expect(() => new SortedIdIndex(store, { cached_nodes })).toThrow(RangeError);
        }
    });
});
