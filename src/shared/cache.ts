/**
 * A bounded in-heap cache for the router: bounded by entries and by bytes, TTL per entry, tag
 * invalidation, and either plain LRU or W-TinyLFU eviction (Caffeine's design: a 1% LRU admission
 * window, a segmented LRU main space, and a count-min sketch that decides whether a window victim
 * deserves a main-space slot more than the main space's own victim).
 *
 * Time is a parameter (`now_ms`), never read here, so the cache runs unchanged inside a canister.
 * Remember that on the IC a query's writes are discarded: fill the cache from update calls or timers.
 */

/** Eviction policy: plain least-recently-used, or frequency-aware W-TinyLFU (the default). */
export type CachePolicy = 'lru' | 'w-tinylfu';

/** Upper bound on `max_entries`, so a bad config cannot ask for an unbounded sketch. */
export const MAX_CACHE_ENTRIES = 1_000_000;
/** Upper bound on `max_bytes` (the canister heap is 4 GiB). */
export const MAX_CACHE_BYTES = 4 * 1024 * 1024 * 1024;
/** Most tags one entry may carry (e.g. `user:<principal>`, `shard:<id>`). */
export const MAX_TAGS_PER_ENTRY = 8;
/** Longest tag, in UTF-16 code units. */
export const MAX_TAG_LENGTH = 128;
/** Longest key, in UTF-16 code units. */
export const MAX_KEY_LENGTH = 1024;

/** Static cache configuration. */
export interface CacheConfig {
    max_entries: number;
    max_bytes: number;
    policy: CachePolicy;
}

/** Per-entry options of `put`. `size_bytes` is the caller's estimate of key plus value. */
export interface PutOptions {
    size_bytes: number;
    ttl_ms: number;
    tags?: readonly string[];
}

/** Why a `put` was refused; the cache is unchanged when it is. */
export type PutError =
    | { kind: 'InvalidInput'; field: string; reason: string }
    | { kind: 'TooLarge'; size_bytes: number; max_bytes: number };

/** Counters since creation, current size and bounds: the fields of the Candid `CacheStatistics`. */
export interface CacheStats {
    hits: number;
    misses: number;
    /** Entries removed to respect the entry or byte bound. */
    evictions: number;
    /** Entries removed because their TTL had passed (on read or when chosen for eviction). */
    expirations: number;
    /** Entries removed by `delete`, `invalidateTag` or `clear`. */
    invalidations: number;
    entries: number;
    size_bytes: number;
    max_entries: number;
    max_size_bytes: number;
    /** hits / (hits + misses), 0 before the first read. */
    hit_rate: number;
}

const WINDOW = 0;
const PROBATION = 1;
const PROTECTED = 2;
type QueueId = typeof WINDOW | typeof PROBATION | typeof PROTECTED;

const WINDOW_FRACTION = 0.01;
const PROTECTED_FRACTION = 0.8;

interface Node<V> {
    key: string;
    value: V;
    size_bytes: number;
    expires_at_ms: number;
    tags: readonly string[];
    queue: QueueId;
    prev: Node<V> | null;
    next: Node<V> | null;
    /** The key's sketch hashes, computed once (hashing a key in the canister costs ~0.1 M). */
    hash: KeyHash | null;
}

/** The two 32-bit hashes of a key that index the frequency sketch. */
type KeyHash = readonly [number, number];

function hashOf<V>(node: Node<V>): KeyHash {
    node.hash ??= hashPair(node.key);
    return node.hash;
}

/** Intrusive doubly linked list: head is least recently used, tail most recently used. */
class AccessList<V> {
    head: Node<V> | null = null;
    tail: Node<V> | null = null;
    count = 0;
    bytes = 0;

    pushTail(node: Node<V>): void {
        node.prev = this.tail;
        node.next = null;
        if (this.tail === null) this.head = node;
        else this.tail.next = node;
        this.tail = node;
        this.count++;
        this.bytes += node.size_bytes;
    }

    unlink(node: Node<V>): void {
        if (node.prev === null) this.head = node.next;
        else node.prev.next = node.next;
        if (node.next === null) this.tail = node.prev;
        else node.next.prev = node.prev;
        node.prev = null;
        node.next = null;
        this.count--;
        this.bytes -= node.size_bytes;
    }
}

/**
 * Count-min sketch of 4 rows of saturating 4-bit counters (stored one per byte for simplicity),
 * halved every `10 × capacity` increments so old popularity fades (TinyLFU's reset).
 */
export class FrequencySketch {
    private readonly counters: Uint8Array;
    private readonly mask: number;
    private readonly sampleSize: number;
    private additions = 0;

    /** A sketch sized for a cache of `capacity` entries. */
    constructor(capacity: number) {
        let width = 16;
        while (width < capacity && width < 1 << 24) width *= 2;
        this.mask = width - 1;
        this.counters = new Uint8Array(width * 4);
        this.sampleSize = Math.max(10, 10 * capacity);
    }

    /** Estimated accesses of `key` since the recent halvings, 0..15. */
    frequency(key: string): number {
        return this.frequencyOf(hashPair(key));
    }

    /** `frequency` by the key's hashes. */
    frequencyOf([h1, h2]: KeyHash): number {
        let min = 15;
        for (let row = 0; row < 4; row++) {
            const c = this.counters[this.index(row, h1, h2)];
            if (c < min) min = c;
        }
        return min;
    }

    /** Records one access of `key`. */
    increment(key: string): void {
        this.incrementOf(hashPair(key));
    }

    /** `increment` by the key's hashes. */
    incrementOf([h1, h2]: KeyHash): void {
        let added = false;
        for (let row = 0; row < 4; row++) {
            const i = this.index(row, h1, h2);
            if (this.counters[i] < 15) {
                this.counters[i]++;
                added = true;
            }
        }
        if (added && ++this.additions >= this.sampleSize) this.halve();
    }

    private index(row: number, h1: number, h2: number): number {
        return row * (this.mask + 1) + ((h1 + Math.imul(row, h2)) & this.mask);
    }

    private halve(): void {
        for (let i = 0; i < this.counters.length; i++) this.counters[i] >>= 1;
        this.additions = Math.floor(this.additions / 2);
    }
}

/** Returns a reason when `config` is unusable, else null: check admin input with it before `new`. */
export function validateCacheConfig(config: CacheConfig): string | null {
    if (!Number.isInteger(config.max_entries) || config.max_entries < 1) {
        return 'max_entries must be a positive integer';
    }
    if (config.max_entries > MAX_CACHE_ENTRIES) return `max_entries must be ≤ ${MAX_CACHE_ENTRIES}`;
    if (!Number.isInteger(config.max_bytes) || config.max_bytes < 1) {
        return 'max_bytes must be a positive integer';
    }
    if (config.max_bytes > MAX_CACHE_BYTES) return `max_bytes must be ≤ ${MAX_CACHE_BYTES}`;
    if (config.policy !== 'lru' && config.policy !== 'w-tinylfu') {
        return "policy must be 'lru' or 'w-tinylfu'";
    }
    return null;
}

/**
 * The bounded cache. Every operation is O(1) except `invalidateTag` (linear in the entries carrying
 * the tag) and `clear`; the eviction loop runs at most once per entry it removes.
 *
 * @example
 * const cache = new BoundedCache<string>({ max_entries: 10_000, max_bytes: 64 << 20, policy: 'w-tinylfu' });
 * cache.put('dash:abc', json, { size_bytes: json.length, ttl_ms: 30_000, tags: ['user:abc'] }, now_ms);
 * cache.get('dash:abc', now_ms); // json until 30 s later, or until invalidateTag('user:abc')
 */
export class BoundedCache<V> {
    private readonly nodes = new Map<string, Node<V>>();
    private readonly tagIndex = new Map<string, Set<Node<V>>>();
    private readonly lists: [AccessList<V>, AccessList<V>, AccessList<V>] = [
        new AccessList<V>(),
        new AccessList<V>(),
        new AccessList<V>()
    ];
    private readonly sketch: FrequencySketch | null;
    /** The key and sketch hashes of the last miss (see `get`). */
    private lastMissed: { key: string; hash: KeyHash } | null = null;
    private readonly windowMaxEntries: number;
    private readonly windowMaxBytes: number;
    private readonly protectedMaxEntries: number;
    private readonly protectedMaxBytes: number;
    private totalBytes = 0;
    private hits = 0;
    private misses = 0;
    private evictions = 0;
    private expirations = 0;
    private invalidations = 0;

    /** Throws on an invalid config (a bug: validate admin input with `validateCacheConfig`). */
    constructor(readonly config: CacheConfig) {
        const problem = validateCacheConfig(config);
        if (problem !== null) throw new RangeError(problem);
        const tinyLfu = config.policy === 'w-tinylfu';
        this.sketch = tinyLfu ? new FrequencySketch(config.max_entries) : null;
        this.windowMaxEntries = Math.max(1, Math.floor(config.max_entries * WINDOW_FRACTION));
        this.windowMaxBytes = Math.max(1, Math.floor(config.max_bytes * WINDOW_FRACTION));
        const mainEntries = config.max_entries - this.windowMaxEntries;
        const mainBytes = config.max_bytes - this.windowMaxBytes;
        this.protectedMaxEntries = Math.floor(mainEntries * PROTECTED_FRACTION);
        this.protectedMaxBytes = Math.floor(mainBytes * PROTECTED_FRACTION);
    }

    /**
     * The live value for `key`, or undefined (a miss) when absent or expired at `now_ms`.
     * An expired entry is removed on the spot.
     */
    get(key: string, now_ms: number): V | undefined {
        const node = this.nodes.get(key);
        if (this.sketch !== null) {
            let hash: KeyHash;
            if (node !== undefined) hash = hashOf(node);
            else {
                hash = hashPair(key);
                // The usual miss is followed by a put of the same key: it keeps the hash.
                this.lastMissed = { key, hash };
            }
            this.sketch.incrementOf(hash);
        }
        if (node === undefined) {
            this.misses++;
            return undefined;
        }
        if (now_ms >= node.expires_at_ms) {
            this.remove(node);
            this.expirations++;
            this.misses++;
            return undefined;
        }
        this.hits++;
        this.touch(node);
        return node.value;
    }

    /**
     * Stores `value` under `key` for `ttl_ms`, replacing any previous value and its tags, then evicts
     * until both bounds hold again (the new entry itself may be the one W-TinyLFU rejects). Only
     * reads feed the frequency sketch, so the usual get-miss-then-put counts one access.
     */
    put(key: string, value: V, options: PutOptions, now_ms: number): PutResult {
        const error = this.checkPut(key, options, now_ms);
        if (error !== null) return { ok: false, error };
        const tags = [...new Set(options.tags ?? [])];
        const expires_at_ms = now_ms + options.ttl_ms;
        let node = this.nodes.get(key);
        if (node !== undefined) {
            this.unindexTags(node);
            const list = this.lists[node.queue];
            list.unlink(node);
            this.totalBytes -= node.size_bytes;
            node.value = value;
            node.size_bytes = options.size_bytes;
            node.expires_at_ms = expires_at_ms;
            node.tags = tags;
            list.pushTail(node);
            this.totalBytes += node.size_bytes;
            this.touch(node);
        } else {
            node = {
                key,
                value,
                size_bytes: options.size_bytes,
                expires_at_ms,
                tags,
                queue: this.sketch === null ? PROBATION : WINDOW,
                prev: null,
                next: null,
                hash: this.lastMissed?.key === key ? this.lastMissed.hash : null
            };
            this.nodes.set(key, node);
            this.lists[node.queue].pushTail(node);
            this.totalBytes += node.size_bytes;
        }
        this.indexTags(node);
        this.evict(now_ms);
        return { ok: true };
    }

    /** Removes `key`; true when it was present. Counts as an invalidation. */
    delete(key: string): boolean {
        const node = this.nodes.get(key);
        if (node === undefined) return false;
        this.remove(node);
        this.invalidations++;
        return true;
    }

    /** Removes every entry carrying `tag` (e.g. `user:<principal>` after a write); returns how many. */
    invalidateTag(tag: string): number {
        const holders = this.tagIndex.get(tag);
        if (holders === undefined) return 0;
        const victims = [...holders];
        for (const node of victims) this.remove(node);
        this.invalidations += victims.length;
        return victims.length;
    }

    /** Removes every entry (counted as invalidations); statistics counters are kept. */
    clear(): void {
        const count = this.nodes.size;
        for (const node of [...this.nodes.values()]) this.remove(node);
        this.invalidations += count;
    }

    /**
     * Best-effort reclaim for a timer: checks at most `max_checks` entries, least recently used first
     * in each segment, and removes the expired ones (counted as expirations). Returns how many.
     * Expired entries are otherwise reclaimed when read or when eviction reaches them.
     */
    sweepExpired(now_ms: number, max_checks: number): number {
        let budget = Math.max(0, Math.floor(max_checks));
        let removed = 0;
        // Probation first: it holds the least recently used entries of the main space.
        for (const queue of [PROBATION, PROTECTED, WINDOW]) {
            let node = this.lists[queue].head;
            while (node !== null && budget > 0) {
                const next: Node<V> | null = node.next;
                budget--;
                if (now_ms >= node.expires_at_ms) {
                    this.remove(node);
                    this.expirations++;
                    removed++;
                }
                node = next;
            }
        }
        return removed;
    }

    /** Current number of entries, expired-but-unread ones included. */
    size(): number {
        return this.nodes.size;
    }

    /** A snapshot of the statistics. */
    stats(): CacheStats {
        const reads = this.hits + this.misses;
        return {
            hits: this.hits,
            misses: this.misses,
            evictions: this.evictions,
            expirations: this.expirations,
            invalidations: this.invalidations,
            entries: this.nodes.size,
            size_bytes: this.totalBytes,
            max_entries: this.config.max_entries,
            max_size_bytes: this.config.max_bytes,
            hit_rate: reads === 0 ? 0 : this.hits / reads
        };
    }

    private checkPut(key: string, options: PutOptions, now_ms: number): PutError | null {
        const bad = (field: string, reason: string): PutError => ({
            kind: 'InvalidInput',
            field,
            reason
        });
        if (typeof key !== 'string' || key.length > MAX_KEY_LENGTH) {
            return bad('key', `must be a string of at most ${MAX_KEY_LENGTH} characters`);
        }
        if (!Number.isInteger(options.size_bytes) || options.size_bytes < 0) {
            return bad('size_bytes', 'must be a non-negative integer');
        }
        if (options.size_bytes > this.config.max_bytes) {
            return {
                kind: 'TooLarge',
                size_bytes: options.size_bytes,
                max_bytes: this.config.max_bytes
            };
        }
        if (!Number.isFinite(now_ms)) return bad('now_ms', 'must be finite');
        if (!Number.isSafeInteger(options.ttl_ms) || options.ttl_ms < 1) {
            return bad('ttl_ms', 'must be a positive integer');
        }
        const tags = options.tags ?? [];
        if (tags.length > MAX_TAGS_PER_ENTRY) {
            return bad('tags', `at most ${MAX_TAGS_PER_ENTRY} tags per entry`);
        }
        for (const tag of tags) {
            if (typeof tag !== 'string' || tag.length === 0 || tag.length > MAX_TAG_LENGTH) {
                return bad('tags', `each tag must have 1..${MAX_TAG_LENGTH} characters`);
            }
        }
        return null;
    }

    /** Moves a read or rewritten entry to the most recent end of its segment (SLRU promotion). */
    private touch(node: Node<V>): void {
        if (node.queue === PROBATION && this.sketch !== null) {
            this.lists[PROBATION].unlink(node);
            node.queue = PROTECTED;
            this.lists[PROTECTED].pushTail(node);
            this.demoteProtectedOverflow();
            return;
        }
        const list = this.lists[node.queue];
        list.unlink(node);
        list.pushTail(node);
    }

    private demoteProtectedOverflow(): void {
        const protectedList = this.lists[PROTECTED];
        let guard = protectedList.count;
        while (
            guard-- > 0 &&
            protectedList.head !== null &&
            (protectedList.count > this.protectedMaxEntries ||
                protectedList.bytes > this.protectedMaxBytes)
        ) {
            const node = protectedList.head;
            protectedList.unlink(node);
            node.queue = PROBATION;
            this.lists[PROBATION].pushTail(node);
        }
    }

    private overBounds(): boolean {
        return this.nodes.size > this.config.max_entries || this.totalBytes > this.config.max_bytes;
    }

    private evict(now_ms: number): void {
        if (this.sketch === null) {
            let guard = this.nodes.size;
            while (guard-- > 0 && this.overBounds()) {
                const victim = this.lists[PROBATION].head;
                if (victim === null) break;
                this.evictNode(victim, now_ms);
            }
            return;
        }
        this.evictFromMain(this.moveWindowOverflow(), now_ms);
    }

    /** Moves the window's least recent entries into probation; they become admission candidates. */
    private moveWindowOverflow(): number {
        const window = this.lists[WINDOW];
        let candidates = 0;
        let guard = window.count;
        while (
            guard-- > 0 &&
            window.head !== null &&
            (window.count > this.windowMaxEntries || window.bytes > this.windowMaxBytes)
        ) {
            const node = window.head;
            window.unlink(node);
            node.queue = PROBATION;
            this.lists[PROBATION].pushTail(node);
            candidates++;
        }
        return candidates;
    }

    /**
     * Caffeine's evictFromMain, simplified: candidates (just moved from the window, at probation's
     * most recent end) duel victims (probation's least recent end); the lower sketch frequency loses,
     * ties go against the candidate so one-hit wonders cannot push out established entries.
     */
    private evictFromMain(candidateCount: number, now_ms: number): void {
        const sketch = this.sketch as FrequencySketch;
        const probation = this.lists[PROBATION];
        let candidates = candidateCount;
        let victim: Node<V> | null = probation.head;
        let candidate: Node<V> | null = candidates > 0 ? probation.tail : null;
        let guard = this.nodes.size;
        while (guard-- > 0 && this.overBounds()) {
            if (candidates <= 0) candidate = null;
            if (victim === null) {
                victim = probation.head ?? this.lists[PROTECTED].head ?? this.lists[WINDOW].head;
                if (victim === null) break;
            }
            if (candidate === null || candidate === victim) {
                if (candidate === victim) {
                    candidate = candidate.prev;
                    candidates--;
                }
                const next = victim.next;
                this.evictNode(victim, now_ms);
                victim = next;
                continue;
            }
            candidates--;
            if (sketch.frequencyOf(hashOf(candidate)) > sketch.frequencyOf(hashOf(victim))) {
                const next = victim.next;
                this.evictNode(victim, now_ms);
                victim = next;
                candidate = candidate.prev;
            } else {
                const previous: Node<V> | null = candidate.prev;
                this.evictNode(candidate, now_ms);
                candidate = previous;
            }
        }
    }

    private evictNode(node: Node<V>, now_ms: number): void {
        this.remove(node);
        if (now_ms >= node.expires_at_ms) this.expirations++;
        else this.evictions++;
    }

    private remove(node: Node<V>): void {
        this.lists[node.queue].unlink(node);
        this.nodes.delete(node.key);
        this.totalBytes -= node.size_bytes;
        this.unindexTags(node);
    }

    private indexTags(node: Node<V>): void {
        for (const tag of node.tags) {
            let holders = this.tagIndex.get(tag);
            if (holders === undefined) {
                holders = new Set();
                this.tagIndex.set(tag, holders);
            }
            holders.add(node);
        }
    }

    private unindexTags(node: Node<V>): void {
        for (const tag of node.tags) {
            const holders = this.tagIndex.get(tag);
            if (holders === undefined) continue;
            holders.delete(node);
            if (holders.size === 0) this.tagIndex.delete(tag);
        }
    }
}

/** Outcome of `put`. */
export type PutResult = { ok: true } | { ok: false; error: PutError };

/** Keys whose sketch hashes are remembered; the memo is emptied when full. */
const MAX_REMEMBERED_HASHES = 4_096;
const rememberedHashes = new Map<string, KeyHash>();

/**
 * `hashOfKey`, remembered: a dashboard's key recurs (a farmer polls their dashboard), and hashing
 * it char by char costs a JS operation per char (about 0.2 M instructions for a key in a canister),
 * where a `Map` finds it in native code. A pure memo: the same key always gets the same hashes.
 */
function hashPair(key: string): KeyHash {
    const known = rememberedHashes.get(key);
    if (known !== undefined) return known;
    const hash = hashOfKey(key);
    if (rememberedHashes.size >= MAX_REMEMBERED_HASHES) rememberedHashes.clear();
    rememberedHashes.set(key, hash);
    return hash;
}

/** Two independent 32-bit hashes of a string: FNV-1a over UTF-16 units, then murmur3's finaliser. */
function hashOfKey(key: string): KeyHash {
    let h = 0x811c9dc5;
    for (let i = 0; i < key.length; i++) {
        h ^= key.charCodeAt(i);
        h = Math.imul(h, 0x01000193);
    }
    const h1 = fmix32(h);
    const h2 = fmix32(h1 ^ 0x9e3779b9) | 1;
    return [h1, h2];
}

function fmix32(x: number): number {
    let h = x;
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
    return h >>> 0;
}
