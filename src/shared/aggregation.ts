/**
 * Cross-shard aggregation: a k-way merge of sorted shard pages behind an opaque cursor, and counter sums.
 *
 * Protocol: the router asks every shard for "up to `limit` items strictly after key K" (K from the
 * cursor, none on the first page), passes the replies to `mergePages`, and hands `next_cursor` back to
 * the client. Keys must be unique across all shards (tie-break on the loan id) so "after K" is exact.
 * Pure and deterministic, so it runs unchanged inside a canister.
 */

import { MAX_CURSOR_LENGTH_CHARS, MAX_PAGE_SIZE } from './limits';

export { MAX_CURSOR_LENGTH_CHARS, MAX_PAGE_SIZE };

/** Largest number of shard pages one merge accepts. */
export const MAX_SHARDS_PER_MERGE = 1024;
/** Version byte leading every cursor; bump when the layout changes. */
export const CURSOR_VERSION = 1;
/** Longest UTF-8 string a `utf8KeyCodec` key may hold, in bytes. */
export const MAX_KEY_STRING_BYTES = 128;

const CHECKSUM_BYTES = 4;
const MAX_CURSOR_BYTES = Math.floor((MAX_CURSOR_LENGTH_CHARS * 3) / 4);
const U64_MAX = (1n << 64n) - 1n;

/** One shard's answer to "items after K": either a sorted page or the reason it failed. */
export type ShardPage<T> =
    | { shard_id: number; ok: true; items: T[]; has_more: boolean }
    | { shard_id: number; ok: false; error: string };

/** A merged page: at most `limit` items, the cursor for the next page, and which shards were missing. */
export interface MergedPage<T> {
    items: T[];
    /** Null when every shard that answered has nothing after the last emitted item. */
    next_cursor: string | null;
    /** False when any shard failed or sent an invalid page: the page may lack that shard's items. */
    complete: boolean;
    /** Ascending ids of shards that failed or sent an invalid page. */
    failed_shards: number[];
}

/** A caller mistake in `mergePages` arguments, shaped to map onto `InvalidInput { field; reason }`. */
export interface MergeInputError {
    kind: 'InvalidInput';
    field: string;
    reason: string;
}

/** Why a cursor text was rejected. */
export type CursorError =
    | { kind: 'Empty' }
    | { kind: 'TooLong'; length: number; max: number }
    | { kind: 'BadEncoding' }
    | { kind: 'UnsupportedVersion'; version: number }
    | { kind: 'BadChecksum' }
    | { kind: 'BadKey' };

/** Result as a value: `{ ok: true, value }` or `{ ok: false, error }`. */
export type Outcome<V, E> = { ok: true; value: V } | { ok: false; error: E };

/**
 * Serialises a sort key into bytes and back. `read` must reject malformed bytes with `null`, never throw,
 * and codecs must be self-delimiting so they compose (`pairKeyCodec`).
 */
export interface KeyCodec<K> {
    /** Appends the key's bytes to `out`. */
    write(key: K, out: number[]): void;
    /** Reads one key at `offset`; null when the bytes are malformed or too short. */
    read(bytes: Uint8Array, offset: number): { key: K; offset: number } | null;
}

/** Options of `mergePages`. `K` is the sort key; `compare` must be a total order consistent with shards. */
export interface MergeOptions<T, K> {
    limit: number;
    key: (item: T) => K;
    compare: (a: K, b: K) => number;
    codec: KeyCodec<K>;
    /** The key the shards were asked to start after (decoded from the request cursor); null on page one. */
    after: K | null;
}

/** Fixed 8-byte big-endian codec for `nat64` keys such as loan ids or `created_at` nanoseconds. */
export const u64KeyCodec: KeyCodec<bigint> = {
    write(key, out) {
        if (key < 0n || key > U64_MAX) throw new RangeError(`u64 key out of range: ${key}`);
        for (let shift = 56n; shift >= 0n; shift -= 8n) out.push(Number((key >> shift) & 0xffn));
    },
    read(bytes, offset) {
        if (offset + 8 > bytes.length) return null;
        let key = 0n;
        for (let i = 0; i < 8; i++) key = (key << 8n) | BigInt(bytes[offset + i]);
        return { key, offset: offset + 8 };
    }
};

/** Length-prefixed UTF-8 codec for short string keys (e.g. principal text), at most 128 bytes. */
export const utf8KeyCodec: KeyCodec<string> = {
    write(key, out) {
        const bytes = utf8Encode(key);
        if (bytes.length > MAX_KEY_STRING_BYTES) throw new RangeError('string key too long');
        out.push(bytes.length >> 8, bytes.length & 0xff);
        for (const b of bytes) out.push(b);
    },
    read(bytes, offset) {
        if (offset + 2 > bytes.length) return null;
        const length = (bytes[offset] << 8) | bytes[offset + 1];
        const start = offset + 2;
        if (length > MAX_KEY_STRING_BYTES || start + length > bytes.length) return null;
        const key = utf8Decode(bytes.subarray(start, start + length));
        return key === null ? null : { key, offset: start + length };
    }
};

/**
 * Codec for a tuple key, e.g. `(created_at, id)` for "newest first, then by id".
 *
 * @example const codec = pairKeyCodec(u64KeyCodec, u64KeyCodec); // KeyCodec<[bigint, bigint]>
 */
export function pairKeyCodec<A, B>(first: KeyCodec<A>, second: KeyCodec<B>): KeyCodec<[A, B]> {
    return {
        write(key, out) {
            first.write(key[0], out);
            second.write(key[1], out);
        },
        read(bytes, offset) {
            const a = first.read(bytes, offset);
            if (a === null) return null;
            const b = second.read(bytes, a.offset);
            if (b === null) return null;
            return { key: [a.key, b.key], offset: b.offset };
        }
    };
}

/**
 * Encodes a key as cursor text: base64url (no padding) of `[version, key bytes..., fnv1a32 checksum]`.
 * The checksum catches truncated or hand-edited cursors; it is not a signature.
 *
 * @example encodeCursor(42n, u64KeyCodec) // 'AQAAAAAAAAAq...'
 */
export function encodeCursor<K>(key: K, codec: KeyCodec<K>): string {
    const bytes: number[] = [CURSOR_VERSION];
    codec.write(key, bytes);
    const sum = fnv1a32(bytes, bytes.length);
    bytes.push(sum >>> 24, (sum >>> 16) & 0xff, (sum >>> 8) & 0xff, sum & 0xff);
    if (bytes.length > MAX_CURSOR_BYTES) throw new RangeError('cursor key too large');
    return base64UrlEncode(bytes);
}

/**
 * Decodes cursor text from a client. Never throws for user input: garbage yields a typed error.
 *
 * @example decodeCursor('%%', u64KeyCodec) // { ok: false, error: { kind: 'BadEncoding' } }
 */
export function decodeCursor<K>(text: string, codec: KeyCodec<K>): Outcome<K, CursorError> {
    if (typeof text !== 'string' || text.length === 0) return fail({ kind: 'Empty' });
    if (text.length > MAX_CURSOR_LENGTH_CHARS) {
        return fail({ kind: 'TooLong', length: text.length, max: MAX_CURSOR_LENGTH_CHARS });
    }
    const bytes = base64UrlDecode(text);
    if (bytes === null) return fail({ kind: 'BadEncoding' });
    if (bytes.length < 1 + CHECKSUM_BYTES) return fail({ kind: 'BadEncoding' });
    if (bytes[0] !== CURSOR_VERSION) return fail({ kind: 'UnsupportedVersion', version: bytes[0] });
    const bodyLength = bytes.length - CHECKSUM_BYTES;
    const sum = fnv1a32(bytes, bodyLength);
    const stored =
        ((bytes[bodyLength] << 24) |
            (bytes[bodyLength + 1] << 16) |
            (bytes[bodyLength + 2] << 8) |
            bytes[bodyLength + 3]) >>>
        0;
    if (stored !== sum) return fail({ kind: 'BadChecksum' });
    let decoded: { key: K; offset: number } | null;
    try {
        decoded = codec.read(bytes.subarray(0, bodyLength), 1);
    } catch {
        decoded = null; // a codec that throws on garbage is still a bad key, not a trap
    }
    if (decoded === null || decoded.offset !== bodyLength) return fail({ kind: 'BadKey' });
    return { ok: true, value: decoded.key };
}

/**
 * Merges sorted shard pages into one page of at most `limit` items, in O(n log k) with a binary heap.
 *
 * The cut: a shard that answered `has_more` may hold unseen items right after its last returned key L,
 * and those could sort before items other shards returned. So nothing past the smallest such L is
 * emitted; the next page (everything after the last emitted key) picks them up, so pages never have
 * duplicates or gaps whatever the page sizes. A page can therefore be shorter than `limit` while more
 * remain: clients follow `next_cursor`, not the item count. Progress is guaranteed: the smallest
 * remaining item is never past the cut, so a non-empty answer always emits at least one item.
 *
 * Invalid pages (not strictly ascending, an item not after `after`, or `has_more` with no items) are
 * treated as failed shards. Pages longer than `limit` are cut to `limit` items with `has_more` set,
 * which changes no result and bounds the heap work.
 *
 * @example
 * mergePages(pages, { limit: 50, key: (l) => l.id, compare: cmpBigint, codec: u64KeyCodec, after: null })
 */
export function mergePages<T, K>(
    pages: ShardPage<T>[],
    options: MergeOptions<T, K>
): Outcome<MergedPage<T>, MergeInputError> {
    const { limit, key, compare, codec, after } = options;
    if (!Number.isInteger(limit) || limit < 1 || limit > MAX_PAGE_SIZE) {
        return fail(invalid('limit', `must be an integer in 1..${MAX_PAGE_SIZE}`));
    }
    if (pages.length > MAX_SHARDS_PER_MERGE) {
        return fail(invalid('pages', `at most ${MAX_SHARDS_PER_MERGE} shards per merge`));
    }
    const seen = new Set<number>();
    for (const page of pages) {
        if (seen.has(page.shard_id)) {
            return fail(invalid('pages', `duplicate shard_id ${page.shard_id}`));
        }
        seen.add(page.shard_id);
    }

    const failed: number[] = [];
    const lists: { items: T[]; keys: K[]; has_more: boolean }[] = [];
    for (const page of pages) {
        const list = page.ok ? validPage(page, limit, key, compare, after) : null;
        if (list === null) failed.push(page.shard_id);
        else if (list.items.length > 0) lists.push(list);
    }

    let cut: K | null = null;
    for (const list of lists) {
        if (!list.has_more) continue;
        const last = list.keys[list.keys.length - 1];
        if (cut === null || compare(last, cut) < 0) cut = last;
    }

    const heap = new MinHeap<{ list: number; pos: number }>((a, b) =>
        compare(lists[a.list].keys[a.pos], lists[b.list].keys[b.pos])
    );
    for (let i = 0; i < lists.length; i++) heap.push({ list: i, pos: 0 });

    const items: T[] = [];
    let lastKey: K | null = null;
    while (items.length < limit) {
        const top = heap.peek();
        if (top === undefined) break;
        const topKey = lists[top.list].keys[top.pos];
        if (cut !== null && compare(topKey, cut) > 0) break;
        heap.pop();
        items.push(lists[top.list].items[top.pos]);
        lastKey = topKey;
        if (top.pos + 1 < lists[top.list].items.length)
            heap.push({ list: top.list, pos: top.pos + 1 });
    }

    // More remains if any answering shard has unemitted items or said has_more.
    const more = heap.size() > 0 || lists.some((list) => list.has_more);
    const next_cursor = more && lastKey !== null ? encodeCursor(lastKey, codec) : null;
    failed.sort((a, b) => a - b);
    return {
        ok: true,
        value: { items, next_cursor, complete: failed.length === 0, failed_shards: failed }
    };
}

/**
 * Shard-side helper: the page of `sorted` (ascending by `key`) strictly after `after`, at most `limit`.
 * Linear in the items skipped; shards with a B-tree use a range scan instead.
 *
 * @example pageAfter([1n, 2n, 3n], 1n, 1, (x) => x, cmp) // { items: [2n], has_more: true }
 */
export function pageAfter<T, K>(
    sorted: readonly T[],
    after: K | null,
    limit: number,
    key: (item: T) => K,
    compare: (a: K, b: K) => number
): { items: T[]; has_more: boolean } {
    let lo = 0;
    let hi = sorted.length;
    if (after !== null) {
        while (lo < hi) {
            const mid = (lo + hi) >>> 1;
            if (compare(key(sorted[mid]), after) <= 0) lo = mid + 1;
            else hi = mid;
        }
    }
    const end = Math.min(sorted.length, lo + Math.max(0, limit));
    return { items: sorted.slice(lo, end), has_more: end < sorted.length };
}

/** A counter record: numbers or bigints, possibly nested one record deep per level (e.g. counts by status). */
export type CounterRecord = { [field: string]: number | bigint | CounterRecord };

const MAX_COUNTER_DEPTH = 4;
const MAX_COUNTER_FIELDS = 256;

/**
 * Sums per-shard counters field by field: numbers add as numbers, bigints as bigints, nested records
 * recursively; a field missing from a record counts as zero. Throws only on caller bugs (a field that
 * is a number in one record and a bigint in another, more than 1024 records, too deep or too wide).
 *
 * @example
 * mergeCounters([{ active: 2, total_amount: 5n }, { active: 1, total_amount: 7n }])
 * // { active: 3, total_amount: 12n }
 */
export function mergeCounters<R extends CounterRecord>(records: readonly R[]): R {
    if (records.length > MAX_SHARDS_PER_MERGE) throw new RangeError('too many counter records');
    const out: CounterRecord = {};
    for (const record of records) addInto(out, record, 0);
    return out as R;
}

function addInto(out: CounterRecord, record: CounterRecord, depth: number): void {
    if (depth >= MAX_COUNTER_DEPTH) throw new RangeError('counter record nested too deep');
    const fields = Object.keys(record);
    if (fields.length > MAX_COUNTER_FIELDS) throw new RangeError('counter record too wide');
    for (const field of fields) {
        const value = record[field];
        const current = out[field];
        if (typeof value === 'number') {
            if (current !== undefined && typeof current !== 'number') throw mismatch(field);
            out[field] = (current ?? 0) + value;
        } else if (typeof value === 'bigint') {
            if (current !== undefined && typeof current !== 'bigint') throw mismatch(field);
            out[field] = (current ?? 0n) + value;
        } else if (typeof value === 'object' && value !== null) {
            if (current !== undefined && typeof current !== 'object') throw mismatch(field);
            const nested = (current as CounterRecord | undefined) ?? {};
            addInto(nested, value, depth + 1);
            out[field] = nested;
        } else {
            throw new TypeError(`counter field ${field} is not a number, bigint or record`);
        }
    }
}

function mismatch(field: string): TypeError {
    return new TypeError(`counter field ${field} has different types across records`);
}

function validPage<T, K>(
    page: { items: T[]; has_more: boolean },
    limit: number,
    key: (item: T) => K,
    compare: (a: K, b: K) => number,
    after: K | null
): { items: T[]; keys: K[]; has_more: boolean } | null {
    if (!Array.isArray(page.items)) return null;
    const cut = page.items.length > limit;
    const items = cut ? page.items.slice(0, limit) : page.items;
    const has_more = page.has_more || cut;
    if (has_more && items.length === 0) return null;
    const keys: K[] = [];
    for (let i = 0; i < items.length; i++) {
        const k = key(items[i]);
        const previous = i === 0 ? after : keys[i - 1];
        if (previous !== null && compare(previous, k) >= 0) return null;
        keys.push(k);
    }
    return { items, keys, has_more };
}

function invalid(field: string, reason: string): MergeInputError {
    return { kind: 'InvalidInput', field, reason };
}

function fail<E>(error: E): { ok: false; error: E } {
    return { ok: false, error };
}

/** Array-backed binary min-heap; small on purpose. */
class MinHeap<V> {
    private readonly data: V[] = [];

    constructor(private readonly less: (a: V, b: V) => number) {}

    size(): number {
        return this.data.length;
    }

    peek(): V | undefined {
        return this.data[0];
    }

    push(value: V): void {
        const data = this.data;
        data.push(value);
        let i = data.length - 1;
        while (i > 0) {
            const parent = (i - 1) >> 1;
            if (this.less(data[i], data[parent]) >= 0) break;
            [data[i], data[parent]] = [data[parent], data[i]];
            i = parent;
        }
    }

    pop(): V | undefined {
        const data = this.data;
        const top = data[0];
        const last = data.pop();
        if (data.length === 0 || last === undefined) return top;
        data[0] = last;
        let i = 0;
        while (true) {
            const left = 2 * i + 1;
            const right = left + 1;
            let smallest = i;
            if (left < data.length && this.less(data[left], data[smallest]) < 0) smallest = left;
            if (right < data.length && this.less(data[right], data[smallest]) < 0) smallest = right;
            if (smallest === i) break;
            [data[i], data[smallest]] = [data[smallest], data[i]];
            i = smallest;
        }
        return top;
    }
}

function fnv1a32(bytes: ArrayLike<number>, length: number): number {
    let hash = 0x811c9dc5;
    for (let i = 0; i < length; i++) {
        hash ^= bytes[i];
        hash = Math.imul(hash, 0x01000193);
    }
    return hash >>> 0;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** base64url without padding; written here because canisters have no btoa/Buffer. */
export function base64UrlEncode(bytes: ArrayLike<number>): string {
    let out = '';
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
        const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
        out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
    }
    const rest = bytes.length - i;
    if (rest === 1) {
        const n = bytes[i] << 16;
        out += B64URL[n >> 18] + B64URL[(n >> 12) & 63];
    } else if (rest === 2) {
        const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
        out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63];
    }
    return out;
}

/** Strict base64url decode: null on a foreign character, a bad length or non-zero padding bits. */
export function base64UrlDecode(text: string): Uint8Array | null {
    if (text.length % 4 === 1) return null;
    const out = new Uint8Array(Math.floor((text.length * 3) / 4));
    let bits = 0;
    let bitCount = 0;
    let o = 0;
    for (let i = 0; i < text.length; i++) {
        const v = sextet(text.charCodeAt(i));
        if (v < 0) return null;
        bits = ((bits << 6) | v) & 0xffffff;
        bitCount += 6;
        if (bitCount >= 8) {
            bitCount -= 8;
            out[o++] = (bits >> bitCount) & 0xff;
        }
    }
    // Leftover bits must be zero so every byte string has exactly one text form.
    if ((bits & ((1 << bitCount) - 1)) !== 0) return null;
    return out;
}

function sextet(c: number): number {
    if (c >= 65 && c <= 90) return c - 65;
    if (c >= 97 && c <= 122) return c - 71;
    if (c >= 48 && c <= 57) return c + 4;
    if (c === 45) return 62;
    if (c === 95) return 63;
    return -1;
}

/** UTF-8 encode (no TextEncoder in the canister); lone surrogates become U+FFFD. */
export function utf8Encode(text: string): number[] {
    const out: number[] = [];
    for (let i = 0; i < text.length; i++) {
        let c = text.charCodeAt(i);
        if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
            const d = text.charCodeAt(i + 1);
            if (d >= 0xdc00 && d <= 0xdfff) {
                c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
                i++;
            }
        }
        if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
        if (c < 0x80) out.push(c);
        else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
        else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
        else {
            out.push(
                0xf0 | (c >> 18),
                0x80 | ((c >> 12) & 63),
                0x80 | ((c >> 6) & 63),
                0x80 | (c & 63)
            );
        }
    }
    return out;
}

/** Strict UTF-8 decode: null on malformed, overlong or surrogate sequences. */
export function utf8Decode(bytes: Uint8Array): string | null {
    let out = '';
    let i = 0;
    while (i < bytes.length) {
        const b = bytes[i];
        let c: number;
        let extra: number;
        let min: number;
        if (b < 0x80) [c, extra, min] = [b, 0, 0];
        else if (b >= 0xc2 && b < 0xe0) [c, extra, min] = [b & 31, 1, 0x80];
        else if (b >= 0xe0 && b < 0xf0) [c, extra, min] = [b & 15, 2, 0x800];
        else if (b >= 0xf0 && b < 0xf5) [c, extra, min] = [b & 7, 3, 0x10000];
        else return null;
        if (i + extra >= bytes.length) return null;
        for (let j = 1; j <= extra; j++) {
            const n = bytes[i + j];
            if (n === undefined || (n & 0xc0) !== 0x80) return null;
            c = (c << 6) | (n & 63);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return null;
        out += String.fromCodePoint(c);
        i += extra + 1;
    }
    return out;
}
