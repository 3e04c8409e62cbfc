/** Size of one Wasm / stable-memory page. */
export const PAGE_SIZE_BYTES = 65_536;
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Bound on nested transactions (a composite query nests one per callback level). */
const MAX_NESTING = 64;
/** Stable memory limit per canister on the IC: 500 GiB. */
export const MAX_STABLE_PAGES = (500 * 1024 * 1024 * 1024) / PAGE_SIZE_BYTES;

/**
 * Sparse stable memory: only written 64 KiB pages are held, so two `StableBTreeMap`s that reserve
 * ~80 MiB but write little cost little. Writes inside a transaction keep an undo log of page
 * originals, so a trapped message can be rolled back.
 *
 * @example
 * const sm = new StableMemory();
 * sm.grow(1n); sm.write(0n, Uint8Array.of(1)); sm.read(0n, 1); // Uint8Array [1]
 */
/** Granularity of the undo log: a write saves the 4 KiB chunks it touches, not the 64 KiB page. */
const UNDO_CHUNK_BYTES = 4096;
const CHUNKS_PER_PAGE = PAGE_SIZE_BYTES / UNDO_CHUNK_BYTES;

/**
 * What one open transaction must undo: pages absent when it first wrote them (deleted on
 * rollback) and the original 4 KiB chunks of pages that existed (by chunk index, page × 16 + k).
 */
interface UndoLog {
    created: Set<number>;
    chunks: Map<number, Uint8Array>;
    size_pages: number;
    /** The chunk saved or found saved last (-1: none). */
    lastChunk: number;
}

/** Saves the chunks of `page` that `[inPage, inPage + n)` touches and the log has not saved. */
function saveChunks(log: UndoLog, page: number, p: Uint8Array, inPage: number, n: number): void {
    const last = Math.floor((inPage + n - 1) / UNDO_CHUNK_BYTES);
    for (let k = Math.floor(inPage / UNDO_CHUNK_BYTES); k <= last; k++) {
        const chunk = page * CHUNKS_PER_PAGE + k;
        // Writes come in runs to one chunk (a B-tree node): skip the lookup for the last one.
        if (chunk === log.lastChunk) continue;
        if (!log.chunks.has(chunk)) {
            log.chunks.set(chunk, p.slice(k * UNDO_CHUNK_BYTES, (k + 1) * UNDO_CHUNK_BYTES));
        }
        log.lastChunk = chunk;
    }
}

/** Up to this many bytes a loop copies faster than `set` over a new `subarray`. */
const SMALL_COPY_BYTES = 32;

function copySmall(src: Uint8Array, from: number, dst: Uint8Array, to: number, n: number): void {
    for (let i = 0; i < n; i++) dst[to + i] = src[from + i];
}

export class StableMemory {
    private pages = new Map<number, Uint8Array>();
    private sizePages = 0;
    /** Undo logs of open (nested) transactions, innermost last (see `UndoLog`). */
    private undo: UndoLog[] = [];

    /** Current size in pages. */
    get size_pages(): number {
        return this.sizePages;
    }

    /** Bytes actually held (written pages). */
    get resident_bytes(): number {
        return this.pages.size * PAGE_SIZE_BYTES;
    }

    /** Grows by `delta` pages; returns the old size, or -1 if the limit would be exceeded. */
    grow(delta: bigint): bigint {
        const old = this.sizePages;
        if (delta < 0n || BigInt(old) + delta > BigInt(MAX_STABLE_PAGES)) return -1n;
        this.sizePages = old + Number(delta);
        return BigInt(old);
    }

    /** The offset as a number if `[offset, offset+size)` is in bounds; throws RangeError otherwise. */
    private check(offset: bigint | number, size: number): number {
        // 500 GiB < 2^53, so in-bounds offsets are exact as numbers.
        const off = typeof offset === 'bigint' ? (offset > MAX_SAFE ? -1 : Number(offset)) : offset;
        if (off < 0 || size < 0 || off + size > this.sizePages * PAGE_SIZE_BYTES) {
            throw new RangeError('stable memory access out of bounds');
        }
        return off;
    }

    /** Copies `size` bytes from stable memory at `offset`; throws RangeError out of bounds. */
    read(offset: bigint | number, size: number): Uint8Array {
        const out = new Uint8Array(size);
        this.readInto(offset, out, 0, size);
        return out;
    }

    /** Copies `size` bytes at `offset` into `dest[destOffset..]` (absent pages read as zeros). */
    readInto(offset: bigint | number, dest: Uint8Array, destOffset: number, size: number): void {
        let pos = this.check(offset, size);
        let done = 0;
        while (done < size) {
            const page = Math.floor(pos / PAGE_SIZE_BYTES);
            const inPage = pos % PAGE_SIZE_BYTES;
            const n = Math.min(size - done, PAGE_SIZE_BYTES - inPage);
            const p = this.pages.get(page);
            if (!p) dest.fill(0, destOffset + done, destOffset + done + n);
            else if (n <= SMALL_COPY_BYTES) copySmall(p, inPage, dest, destOffset + done, n);
            else dest.set(p.subarray(inPage, inPage + n), destOffset + done);
            done += n;
            pos += n;
        }
    }

    /** Writes bytes at `offset`; throws RangeError out of bounds. */
    write(offset: bigint | number, data: Uint8Array): void {
        let pos = this.check(offset, data.length);
        let done = 0;
        const log = this.undo[this.undo.length - 1];
        while (done < data.length) {
            const page = Math.floor(pos / PAGE_SIZE_BYTES);
            const inPage = pos % PAGE_SIZE_BYTES;
            const n = Math.min(data.length - done, PAGE_SIZE_BYTES - inPage);
            let p = this.pages.get(page);
            if (log) {
                if (!p) log.created.add(page);
                else if (!log.created.has(page)) saveChunks(log, page, p, inPage, n);
            }
            if (!p) {
                p = new Uint8Array(PAGE_SIZE_BYTES);
                this.pages.set(page, p);
            }
            if (n <= SMALL_COPY_BYTES) copySmall(data, done, p, inPage, n);
            else p.set(data.subarray(done, done + n), inPage);
            done += n;
            pos += n;
        }
    }

    /** Opens a (possibly nested, at most `MAX_NESTING` deep) transaction. */
    begin(): void {
        if (this.undo.length >= MAX_NESTING)
            throw new Error('stable memory transactions nested too deep');
        this.undo.push({
            created: new Set(),
            chunks: new Map(),
            size_pages: this.sizePages,
            lastChunk: -1
        });
    }

    /** Closes the innermost transaction keeping its writes (the parent can still undo them). */
    commit(): void {
        const log = this.undo.pop();
        const parent = this.undo[this.undo.length - 1];
        if (!log || !parent) return;
        // A page absent when the child first wrote it was absent for the parent too.
        for (const page of log.created) parent.created.add(page);
        for (const [chunk, orig] of log.chunks) {
            const page = Math.floor(chunk / CHUNKS_PER_PAGE);
            if (!parent.created.has(page) && !parent.chunks.has(chunk)) {
                parent.chunks.set(chunk, orig);
            }
        }
    }

    /** Restores every page written and the size since the innermost `begin()`. */
    rollback(): void {
        const log = this.undo.pop();
        if (!log) return;
        for (const [chunk, orig] of log.chunks) {
            const page = Math.floor(chunk / CHUNKS_PER_PAGE);
            this.pages.get(page)!.set(orig, (chunk % CHUNKS_PER_PAGE) * UNDO_CHUNK_BYTES);
        }
        for (const page of log.created) this.pages.delete(page);
        this.sizePages = log.size_pages;
    }

    /** True while a transaction is open. */
    get inTransaction(): boolean {
        return this.undo.length > 0;
    }

    /** Empties the memory (reinstall). */
    clear(): void {
        this.pages.clear();
        this.sizePages = 0;
        this.undo = [];
    }

    /** A deep copy (for atomic upgrades). */
    clone(): StableMemory {
        const c = new StableMemory();
        c.sizePages = this.sizePages;
        for (const [k, v] of this.pages) c.pages.set(k, v.slice());
        return c;
    }

    /** Full contents as one buffer (for `getStableMemory`). */
    dump(): Uint8Array {
        return this.read(0n, this.sizePages * PAGE_SIZE_BYTES);
    }
}
