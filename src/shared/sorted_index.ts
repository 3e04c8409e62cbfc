/**
 * A sorted, paged secondary index of loan ids (by borrower, investor, status) over a plain
 * key-value store such as Azle's `StableBTreeMap`, which has no range query.
 *
 * Each index key is a two-level tree: a header (sorted page minimums, page numbers, total count)
 * and pages of ascending ids. Every operation reads the header, binary-searches it, and touches a
 * bounded number of pages, so cost never depends on how many other keys the store holds.
 *
 * Layout (`n` is the index key's length in UTF-16 code units, page numbers in base 36):
 * - header: `h<n>:<indexKey>` → `IndexHeader`
 * - page:   `p<n>:<indexKey>#<pageNo>` → `IndexPage`
 * The length prefix makes keys injective for any index-key text (`a#1` vs `a` page 1). Give the
 * index a store of its own: other keys starting with `h<digit>` or `p<digit>` would collide.
 *
 * Ids are `bigint`s, held in typed arrays (`BigUint64Array`), so reading, splitting and writing a page
 * are a few native copies, not a loop over its ids: in the canister's JS engine a loop that makes a
 * `bigint` per id costs about 6,000 instructions per id, so a full page of 256 ids read and written
 * back cost about 3 M per index update. In stable memory a node is compact little-endian bytes
 * (`indexNodeCodec`: 8 bytes per id) that map onto those arrays by one copy.
 */

import { taggedJson } from './stable_keys';

/** The minimal store a StableBTreeMap provides. */
export interface KvStore<V> {
    get(key: string): V | undefined;
    insert(key: string, value: V): void;
    remove(key: string): void;
}

/** Header of one index key: pages in id order, with the smallest id of each. */
export interface IndexHeader {
    kind: 'header';
    /** Ids under this index key, over all pages. */
    count: number;
    /** Page number the next split will use; never reused while the key exists. */
    next_page_no: number;
    /** Smallest id of each page, ascending; same length as `page_nos`. */
    page_mins: BigUint64Array;
    page_nos: Uint32Array;
}

/** One page: 1..=page_size ids, ascending. */
export interface IndexPage {
    kind: 'page';
    ids: BigUint64Array;
}

/** What the index stores: a header or a page (bigints: store it with a codec that keeps them). */
export type IndexNode = IndexHeader | IndexPage;

/** Options of `SortedIdIndex`. */
export interface SortedIdIndexOptions {
    /** Most ids per page, 8..=4096 (default 256). */
    page_size?: number;
    /**
     * Most decoded nodes (headers plus pages) kept in memory, 0..=MAX_CACHED_NODES (default 0: no
     * cache). A cached node is served without a store read; when full, the index keys used least
     * recently are dropped with their pages. Only
     * for an index that is the sole writer of its store (as a canister's index over its own
     * `StableBTreeMap`: the heap and stable memory roll back together on a trap, and an upgrade
     * starts with an empty heap, so the cache never outlives or contradicts the store).
     */
    cached_nodes?: number;
}

/** One page of `SortedIdIndex.page`. `has_more` says whether ids exist after the last one. */
export interface IdPage {
    ids: bigint[];
    has_more: boolean;
}

export const DEFAULT_PAGE_SIZE = 256;
export const MIN_PAGE_SIZE = 8;
export const MAX_PAGE_SIZE = 4096;
/** Largest `limit` of one `page()` call. */
export const MAX_PAGE_LIMIT = 1000;
/** Longest index key, in UTF-16 code units (a principal's text is at most 63). */
export const MAX_INDEX_KEY_CHARS = 1024;
/** Largest id the index accepts: ids are Candid `nat64`. */
export const MAX_INDEXED_ID = (1n << 64n) - 1n;
/** Largest `cached_nodes` (at 256 ids per page, about 8 MiB of pages). */
export const MAX_CACHED_NODES = 4096;

/**
 * Store key of an index key's header.
 *
 * @example headerKey('status:Active') // 'h13:status:Active'
 */
export function headerKey(indexKey: string): string {
    return `h${indexKey.length}:${indexKey}`;
}

/**
 * Store key of one page of an index key.
 *
 * @example pageKey('a#1', 37) // 'p3:a#1#11'
 */
export function pageKey(indexKey: string, pageNo: number): string {
    return `p${indexKey.length}:${indexKey}#${pageNo.toString(36)}`;
}

/** First index whose element is greater than `target` (ids after a cursor start there). */
function upperBound(sorted: BigUint64Array, target: bigint): number {
    let low = 0;
    let high = sorted.length;
    while (low < high) {
        const mid = (low + high) >>> 1;
        if (sorted[mid] <= target) low = mid + 1;
        else high = mid;
    }
    return low;
}

/** First index whose element is not less than `target`. */
function lowerBound(sorted: BigUint64Array, target: bigint): number {
    let low = 0;
    let high = sorted.length;
    while (low < high) {
        const mid = (low + high) >>> 1;
        if (sorted[mid] < target) low = mid + 1;
        else high = mid;
    }
    return low;
}

/** The typed arrays the index keeps (ids, page minimums, page numbers). */
type Words = BigUint64Array | Uint32Array;

/** `values` with `value` inserted at `at` (native copies). */
function insertedAt<A extends Words>(values: A, at: number, value: A[number]): A {
    const out = new (values.constructor as new (n: number) => A)(values.length + 1);
    out.set(values.subarray(0, at) as never);
    out[at] = value;
    out.set(values.subarray(at) as never, at + 1);
    return out;
}

/** `values` without the element at `at`. */
function removedAt<A extends Words>(values: A, at: number): A {
    const out = new (values.constructor as new (n: number) => A)(values.length - 1);
    out.set(values.subarray(0, at) as never);
    out.set(values.subarray(at + 1) as never, at);
    return out;
}

/** `a` followed by `b`. */
function joined(a: BigUint64Array, b: BigUint64Array): BigUint64Array {
    const out = new BigUint64Array(a.length + b.length);
    out.set(a);
    out.set(b, a.length);
    return out;
}

/** Page that holds or would hold `encoded`: the last whose minimum is ≤ it, else the first. */
function pageIndexFor(header: IndexHeader, encoded: bigint): number {
    return Math.max(0, upperBound(header.page_mins, encoded) - 1);
}

function checkId(id: bigint, name: string): void {
    if (typeof id !== 'bigint' || id < 0n || id > MAX_INDEXED_ID) {
        throw new RangeError(`${name} must be a bigint in 0..2^64-1`);
    }
}

function checkIndexKey(indexKey: string): void {
    if (typeof indexKey !== 'string' || indexKey.length > MAX_INDEX_KEY_CHARS) {
        throw new RangeError(`indexKey must be a string of at most ${MAX_INDEX_KEY_CHARS} chars`);
    }
}

/**
 * Ascending sets of loan ids per index key, paged with an id cursor, stored in a `KvStore`.
 *
 * Pages split in halves when they exceed `page_size`; a page that shrinks to half a page or less
 * merges with a neighbour when both fit in half a page, so any two adjacent pages hold more than
 * `page_size / 2` ids and the header stays within about `4 × count / page_size` entries.
 *
 * @example
 * const index = new SortedIdIndex(new MemoryKvStore<IndexNode>(indexNodeCodec), { page_size: 64 });
 * index.add('borrower:aaaaa-aa', 7n); // true
 * index.page('borrower:aaaaa-aa', null, 10); // { ids: [7n], has_more: false }
 */
export class SortedIdIndex {
    readonly page_size: number;
    private readonly mergeThreshold: number;
    private readonly cachedNodes: number;
    /** Decoded nodes by index key: its header and the pages read or written since (see options). */
    private readonly cache = new Map<string, CachedKey>();
    private cachedCount = 0;

    /** Throws a RangeError when `page_size` is not an integer in 8..=4096. */
    constructor(
        private readonly store: KvStore<IndexNode>,
        options: SortedIdIndexOptions = {}
    ) {
        const pageSize = options.page_size ?? DEFAULT_PAGE_SIZE;
        if (!Number.isInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE) {
            throw new RangeError(
                `page_size must be an integer in ${MIN_PAGE_SIZE}..${MAX_PAGE_SIZE}`
            );
        }
        this.page_size = pageSize;
        this.mergeThreshold = Math.floor(pageSize / 2);
        const cached = options.cached_nodes ?? 0;
        if (!Number.isInteger(cached) || cached < 0 || cached > MAX_CACHED_NODES) {
            throw new RangeError(`cached_nodes must be an integer in 0..${MAX_CACHED_NODES}`);
        }
        this.cachedNodes = cached;
    }

    /**
     * Adds `id` under `indexKey`; false when it was already there. Touches at most 2 gets and 3
     * inserts.
     *
     * @example index.add('status:Active', 42n) // true, then false on a second call
     */
    add(indexKey: string, id: bigint): boolean {
        checkIndexKey(indexKey);
        checkId(id, 'id');
        const encoded = id;
        const header = this.readHeader(indexKey);
        if (header === undefined) {
            this.writeHeader(indexKey, {
                kind: 'header',
                count: 1,
                next_page_no: 1,
                page_mins: BigUint64Array.of(encoded),
                page_nos: Uint32Array.of(0)
            });
            this.writePage(indexKey, 0, BigUint64Array.of(encoded));
            return true;
        }
        const at = pageIndexFor(header, encoded);
        const pageNo = header.page_nos[at];
        const current = this.readPage(indexKey, pageNo).ids;
        const position = lowerBound(current, encoded);
        if (position < current.length && current[position] === encoded) return false;
        let ids = insertedAt(current, position, encoded);
        if (position === 0) header.page_mins[at] = encoded;
        if (ids.length > this.page_size) {
            const half = Math.floor(ids.length / 2);
            const right = ids.slice(half);
            ids = ids.slice(0, half);
            const rightNo = header.next_page_no++;
            this.writePage(indexKey, rightNo, right);
            header.page_mins = insertedAt(header.page_mins, at + 1, right[0]);
            header.page_nos = insertedAt(header.page_nos, at + 1, rightNo);
        }
        this.writePage(indexKey, pageNo, ids);
        header.count++;
        this.writeHeader(indexKey, header);
        return true;
    }

    /**
     * Removes `id` from `indexKey`; false when it was absent. Touches at most 4 gets, 2 inserts
     * and 2 removes; deletes the header with the last id.
     *
     * @example index.remove('status:Active', 42n) // true, then false on a second call
     */
    remove(indexKey: string, id: bigint): boolean {
        checkIndexKey(indexKey);
        checkId(id, 'id');
        const encoded = id;
        const header = this.readHeader(indexKey);
        if (header === undefined || encoded < header.page_mins[0]) return false;
        const at = pageIndexFor(header, encoded);
        const pageNo = header.page_nos[at];
        const current = this.readPage(indexKey, pageNo).ids;
        const position = lowerBound(current, encoded);
        if (position === current.length || current[position] !== encoded) return false;
        const ids = removedAt(current, position);
        header.count--;
        if (header.count === 0) {
            this.store.remove(pageKey(indexKey, pageNo));
            this.store.remove(headerKey(indexKey));
            this.forget(indexKey);
            return true;
        }
        if (ids.length === 0) {
            this.removePage(indexKey, pageNo);
            header.page_mins = removedAt(header.page_mins, at);
            header.page_nos = removedAt(header.page_nos, at);
        } else {
            if (position === 0) header.page_mins[at] = ids[0];
            this.mergeOrWrite(indexKey, header, at, ids);
        }
        this.writeHeader(indexKey, header);
        return true;
    }

    /**
     * Whether `id` is under `indexKey`. Touches at most 2 gets.
     *
     * @example index.has('status:Active', 42n) // true after add('status:Active', 42n)
     */
    has(indexKey: string, id: bigint): boolean {
        checkIndexKey(indexKey);
        checkId(id, 'id');
        const encoded = id;
        const header = this.readHeader(indexKey);
        if (header === undefined || encoded < header.page_mins[0]) return false;
        const ids = this.readPage(indexKey, header.page_nos[pageIndexFor(header, encoded)]).ids;
        const position = lowerBound(ids, encoded);
        return position < ids.length && ids[position] === encoded;
    }

    /**
     * Number of ids under `indexKey` (0 when it has none). Touches 1 get.
     *
     * @example index.count('status:Active') // 1 after one add
     */
    count(indexKey: string): number {
        checkIndexKey(indexKey);
        return this.readHeader(indexKey)?.count ?? 0;
    }

    /**
     * Ids > `afterId` (or from the start when null), ascending, at most `limit` (1..=1000).
     * Reads the header and at most ceil(limit / page_size) + 2 pages, so it may return fewer
     * than `limit` ids while `has_more` is true (never none): walk until `has_more` is false,
     * passing the last id returned as the next `afterId`. Throws a RangeError for a bad limit.
     *
     * @example
     * index.page('status:Active', null, 2) // { ids: [1n, 2n], has_more: true }
     * index.page('status:Active', 2n, 2) // { ids: [3n], has_more: false }
     */
    page(indexKey: string, afterId: bigint | null, limit: number): IdPage {
        checkIndexKey(indexKey);
        if (afterId !== null) checkId(afterId, 'afterId');
        if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_LIMIT) {
            throw new RangeError(`limit must be an integer in 1..${MAX_PAGE_LIMIT}`);
        }
        const header = this.readHeader(indexKey);
        if (header === undefined) return { ids: [], has_more: false };
        const after = afterId;
        const first = after === null ? 0 : pageIndexFor(header, after);
        const lastAllowed = Math.min(
            header.page_nos.length,
            first + Math.ceil(limit / this.page_size) + 2
        );
        const result: bigint[] = [];
        for (let at = first; at < lastAllowed; at++) {
            const ids = this.readPage(indexKey, header.page_nos[at]).ids;
            let position = at === first && after !== null ? upperBound(ids, after) : 0;
            for (; position < ids.length && result.length < limit; position++) {
                result.push(ids[position]);
            }
            if (result.length === limit) {
                return {
                    ids: result,
                    has_more: position < ids.length || at + 1 < header.page_nos.length
                };
            }
        }
        return { ids: result, has_more: lastAllowed < header.page_nos.length };
    }

    /**
     * Removes every id under `indexKey` and returns how many there were. Touches 1 get and one
     * remove per page plus the header.
     *
     * @example index.removeAll('borrower:aaaaa-aa') // 3, then 0
     */
    removeAll(indexKey: string): number {
        checkIndexKey(indexKey);
        const header = this.readHeader(indexKey);
        if (header === undefined) return 0;
        for (const pageNo of header.page_nos) this.store.remove(pageKey(indexKey, pageNo));
        this.store.remove(headerKey(indexKey));
        this.forget(indexKey);
        return header.count;
    }

    /**
     * Keeps adjacent pages above half a page together: merges page `at` (just shrunk) into a
     * neighbour when both fit in `mergeThreshold`, otherwise writes it back.
     */
    private mergeOrWrite(
        indexKey: string,
        header: IndexHeader,
        at: number,
        ids: BigUint64Array
    ): void {
        const pageNo = header.page_nos[at];
        if (ids.length <= this.mergeThreshold && at > 0) {
            const leftNo = header.page_nos[at - 1];
            const left = this.readPage(indexKey, leftNo).ids;
            if (left.length + ids.length <= this.mergeThreshold) {
                this.writePage(indexKey, leftNo, joined(left, ids));
                this.removePage(indexKey, pageNo);
                header.page_mins = removedAt(header.page_mins, at);
                header.page_nos = removedAt(header.page_nos, at);
                return;
            }
        }
        if (ids.length <= this.mergeThreshold && at + 1 < header.page_nos.length) {
            const rightNo = header.page_nos[at + 1];
            const right = this.readPage(indexKey, rightNo).ids;
            if (ids.length + right.length <= this.mergeThreshold) {
                this.writePage(indexKey, pageNo, joined(ids, right));
                this.removePage(indexKey, rightNo);
                header.page_mins = removedAt(header.page_mins, at + 1);
                header.page_nos = removedAt(header.page_nos, at + 1);
                return;
            }
        }
        this.writePage(indexKey, pageNo, ids);
    }

    private readHeader(indexKey: string): IndexHeader | undefined {
        const cached = this.cache.get(indexKey);
        if (cached !== undefined) {
            // Most recently used last (a Map keeps insertion order), so eviction takes the oldest.
            this.cache.delete(indexKey);
            this.cache.set(indexKey, cached);
            return cached.header;
        }
        const node = this.store.get(headerKey(indexKey));
        if (node === undefined) return undefined;
        if (node.kind !== 'header' || node.page_nos.length === 0) {
            throw new Error(`sorted index: bad header for ${JSON.stringify(indexKey)}`);
        }
        this.remember(indexKey, node);
        return node;
    }

    private readPage(indexKey: string, pageNo: number): IndexPage {
        const cached = this.cache.get(indexKey)?.pages.get(pageNo);
        if (cached !== undefined) return { kind: 'page', ids: cached };
        const node = this.store.get(pageKey(indexKey, pageNo));
        if (node === undefined || node.kind !== 'page' || node.ids.length === 0) {
            throw new Error(`sorted index: missing page ${pageNo} of ${JSON.stringify(indexKey)}`);
        }
        this.rememberPage(indexKey, pageNo, node.ids);
        return node;
    }

    /** Writes a header the caller just read or made; the cache then holds this very object. */
    private writeHeader(indexKey: string, header: IndexHeader): void {
        this.store.insert(headerKey(indexKey), header);
        if (this.cache.get(indexKey)?.header !== header) this.remember(indexKey, header);
    }

    /** Writes a page. Page arrays are never changed after they are written or read. */
    private writePage(indexKey: string, pageNo: number, ids: BigUint64Array): void {
        this.store.insert(pageKey(indexKey, pageNo), { kind: 'page', ids });
        this.rememberPage(indexKey, pageNo, ids);
    }

    private removePage(indexKey: string, pageNo: number): void {
        this.store.remove(pageKey(indexKey, pageNo));
        const cached = this.cache.get(indexKey);
        if (cached !== undefined && cached.pages.delete(pageNo)) this.cachedCount--;
    }

    /** Caches `header` as the key's header (dropping what was cached for the key). */
    private remember(indexKey: string, header: IndexHeader): void {
        if (this.cachedNodes === 0) return;
        this.forget(indexKey);
        this.makeRoom(indexKey);
        this.cache.set(indexKey, { header, pages: new Map() });
        this.cachedCount++;
    }

    private rememberPage(indexKey: string, pageNo: number, ids: BigUint64Array): void {
        const cached = this.cache.get(indexKey);
        // A page is cached only under its cached header (a key's header is always read first).
        if (cached === undefined) return;
        if (!cached.pages.has(pageNo)) {
            if (!this.makeRoom(indexKey)) return;
            this.cachedCount++;
        }
        cached.pages.set(pageNo, ids);
    }

    private forget(indexKey: string): void {
        const cached = this.cache.get(indexKey);
        if (cached === undefined) return;
        this.cachedCount -= 1 + cached.pages.size;
        this.cache.delete(indexKey);
    }

    /**
     * Drops the least recently used index keys (never `keep`) until a node fits; false when only
     * `keep`'s own nodes fill the cache. At most one pass over the cached keys.
     */
    private makeRoom(keep: string): boolean {
        for (const indexKey of this.cache.keys()) {
            if (this.cachedCount < this.cachedNodes) return true;
            if (indexKey !== keep) this.forget(indexKey);
        }
        return this.cachedCount < this.cachedNodes;
    }
}

/** A cached index key: its decoded header and some of its pages by page number. */
interface CachedKey {
    header: IndexHeader;
    pages: Map<number, BigUint64Array>;
}

/**
 * The byte codec for index nodes (a `StableBTreeMap` value `Serializable`), little-endian and
 * 8-byte aligned so a node's arrays are copied out of (and into) its bytes whole, with no per-id
 * work in JavaScript:
 * - page: `Q`, 7 zero bytes, then each id (u64)
 * - header: `I`, 3 zero bytes, count (u32), next_page_no (u32), pages (u32), each page's minimum
 *   id (u64), each page's number (u32)
 * Nodes written by earlier builds (big-endian, tags `P` and `H`) are still read.
 *
 * @example indexNodeCodec.fromBytes(indexNodeCodec.toBytes({ kind: 'page', ids: BigUint64Array.of(1n) }))
 */
export const indexNodeCodec = {
    toBytes(node: IndexNode): Uint8Array {
        if (node.kind === 'page') {
            const bytes = new Uint8Array(8 + 8 * node.ids.length);
            bytes[0] = PAGE_TAG;
            bytes.set(leBytes(node.ids), 8);
            return bytes;
        }
        const n = node.page_nos.length;
        if (node.page_mins.length !== n) throw new Error('sorted index: header arrays differ');
        const bytes = new Uint8Array(16 + 12 * n);
        const view = new DataView(bytes.buffer);
        bytes[0] = HEADER_TAG;
        view.setUint32(4, node.count, true);
        view.setUint32(8, node.next_page_no, true);
        view.setUint32(12, n, true);
        bytes.set(leBytes(node.page_mins), 16);
        bytes.set(leBytes(node.page_nos), 16 + 8 * n);
        return bytes;
    },
    fromBytes(bytes: Uint8Array): IndexNode {
        if (bytes[0] === PAGE_TAG && bytes.length >= 8 && bytes.length % 8 === 0) {
            return { kind: 'page', ids: new BigUint64Array(copyOut(bytes, 8, bytes.length)) };
        }
        if (bytes[0] === HEADER_TAG && bytes.length >= 16) {
            const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
            const n = view.getUint32(12, true);
            if (bytes.length !== 16 + 12 * n) throw new Error('sorted index: malformed node bytes');
            return {
                kind: 'header',
                count: view.getUint32(4, true),
                next_page_no: view.getUint32(8, true),
                page_mins: new BigUint64Array(copyOut(bytes, 16, 16 + 8 * n)),
                page_nos: new Uint32Array(copyOut(bytes, 16 + 8 * n, bytes.length))
            };
        }
        return legacyNode(bytes);
    }
};
const PAGE_TAG = 0x51;
const HEADER_TAG = 0x49;
const LEGACY_PAGE_TAG = 0x50;
const LEGACY_HEADER_TAG = 0x48;
/** The engines this runs on (Wasm, x86, ARM) are little-endian; the codec's layout assumes it. */
if (new Uint8Array(Uint32Array.of(1).buffer)[0] !== 1) {
    throw new Error('sorted index: a big-endian engine; the node codec needs little-endian');
}

/** A typed array's bytes (its own memory: the view, not a copy). */
function leBytes(values: Words): Uint8Array {
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** `bytes[from, to)` in a fresh, aligned buffer (one native copy; never aliases the input). */
function copyOut(bytes: Uint8Array, from: number, to: number): ArrayBuffer {
    return bytes.slice(from, to).buffer;
}

/** Nodes written by earlier builds: big-endian, `P` + ids, or `H` + count, next, n, mins, nos. */
function legacyNode(bytes: Uint8Array): IndexNode {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (bytes[0] === LEGACY_PAGE_TAG && (bytes.length - 1) % 8 === 0) {
        const ids = new BigUint64Array((bytes.length - 1) / 8);
        for (let i = 0; i < ids.length; i++) ids[i] = view.getBigUint64(1 + 8 * i);
        return { kind: 'page', ids };
    }
    const n = bytes.length >= 13 ? view.getUint32(9) : -1;
    if (bytes[0] !== LEGACY_HEADER_TAG || bytes.length !== 13 + 12 * n) {
        throw new Error('sorted index: malformed node bytes');
    }
    const page_mins = new BigUint64Array(n);
    const page_nos = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
        page_mins[i] = view.getBigUint64(13 + 8 * i);
        page_nos[i] = view.getUint32(13 + 8 * n + 4 * i);
    }
    return {
        kind: 'header',
        count: view.getUint32(1),
        next_page_no: view.getUint32(5),
        page_mins,
        page_nos
    };
}

/** Store operations counted by `MemoryKvStore`, so tests can assert bounded touches. */
export interface KvStoreStats {
    gets: number;
    inserts: number;
    removes: number;
}

/**
 * A Map-backed `KvStore` for tests. Values round-trip through bytes (JSON with tagged bigints, or
 * `codec`), as a StableBTreeMap serializes them, so aliasing bugs show up in tests. Index nodes hold
 * typed arrays, which JSON does not keep: give a `SortedIdIndex`'s store `indexNodeCodec`.
 *
 * @example
 * const store = new MemoryKvStore<IndexNode>(indexNodeCodec);
 * new SortedIdIndex(store).add('k', 1n);
 * store.size; // 2 (header and one page)
 */
export class MemoryKvStore<V> implements KvStore<V> {
    readonly stats: KvStoreStats = { gets: 0, inserts: 0, removes: 0 };
    private readonly entries = new Map<string, Uint8Array>();

    /** With `codec`, values round-trip through it (as the canister's byte codec) instead of JSON. */
    constructor(
        private readonly codec: {
            toBytes(value: V): Uint8Array;
            fromBytes(bytes: Uint8Array): V;
        } = taggedJson as { toBytes(value: V): Uint8Array; fromBytes(bytes: Uint8Array): V }
    ) {}

    get(key: string): V | undefined {
        this.stats.gets++;
        return this.decode(this.entries.get(key));
    }

    insert(key: string, value: V): void {
        this.stats.inserts++;
        this.entries.set(key, this.codec.toBytes(value));
    }

    private decode(stored: Uint8Array | undefined): V | undefined {
        return stored === undefined ? undefined : this.codec.fromBytes(stored);
    }

    remove(key: string): void {
        this.stats.removes++;
        this.entries.delete(key);
    }

    /** Number of keys stored. */
    get size(): number {
        return this.entries.size;
    }

    /** Stored keys in insertion order; not counted in `stats`. */
    keys(): string[] {
        return [...this.entries.keys()];
    }

    /** Stored value without counting a get, for assertions. */
    peek(key: string): V | undefined {
        return this.decode(this.entries.get(key));
    }
}
