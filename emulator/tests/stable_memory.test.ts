/**
 * The stable-memory undo log (4 KiB chunks of 64 KiB pages, nested transactions) against a
 * reference that copies the whole memory at every `begin`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { PAGE_SIZE_BYTES, StableMemory } from '../src/stable_memory';

const PAGES = 3;

type Op =
    | { kind: 'write'; offset: number; bytes: Uint8Array }
    | { kind: 'grow' }
    | { kind: 'begin' }
    | { kind: 'commit' }
    | { kind: 'rollback' };

const op: fc.Arbitrary<Op> = fc.oneof(
    {
        weight: 6,
        arbitrary: fc.record({
            kind: fc.constant('write' as const),
            offset: fc.nat(PAGES * PAGE_SIZE_BYTES - 1),
            bytes: fc.uint8Array({ minLength: 1, maxLength: 9_000 })
        })
    },
    {
        // Small writes packed into a few chunks (runs of writes to one chunk, copied by a loop).
        weight: 4,
        arbitrary: fc.record({
            kind: fc.constant('write' as const),
            offset: fc
                .tuple(fc.constantFrom(0, 4096, 8190, PAGE_SIZE_BYTES - 20), fc.nat(40))
                .map(([base, delta]) => base + delta),
            bytes: fc.uint8Array({ minLength: 1, maxLength: 40 })
        })
    },
    { weight: 1, arbitrary: fc.constant({ kind: 'grow' as const }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'begin' as const }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'commit' as const }) },
    { weight: 2, arbitrary: fc.constant({ kind: 'rollback' as const }) }
);

describe('stable memory undo log', () => {
    it('restores exactly what each nested transaction wrote, at any depth', () => {
        fc.assert(
            fc.property(fc.array(op, { maxLength: 40 }), (ops) => {
                const sm = new StableMemory();
                sm.grow(1n);
                // Reference: the full contents saved at each open transaction.
                const saved: Uint8Array[] = [];
                for (const o of ops) {
                    if (o.kind === 'write') {
                        const size = sm.size_pages * PAGE_SIZE_BYTES;
                        const offset = o.offset % size;
                        const bytes = o.bytes.subarray(0, size - offset);
                        sm.write(offset, bytes);
                        // Read back through the small-copy and the large-copy paths.
                        expect(Buffer.compare(sm.read(offset, bytes.length), bytes)).toBe(0);
                        const into = new Uint8Array(bytes.length + 2);
                        sm.readInto(offset, into, 1, bytes.length);
                        expect(Buffer.compare(into.subarray(1, -1), bytes)).toBe(0);
                    } else if (o.kind === 'grow') {
                        if (sm.size_pages < PAGES + 1) sm.grow(1n);
                    } else if (o.kind === 'begin') {
                        saved.push(sm.dump());
                        sm.begin();
                    } else if (o.kind === 'commit') {
                        if (saved.pop() !== undefined) sm.commit();
                    } else {
                        const before = saved.pop();
                        if (before === undefined) continue;
                        sm.rollback();
                        expect(sm.size_pages * PAGE_SIZE_BYTES).toBe(before.length);
                        expect(Buffer.compare(sm.dump(), before)).toBe(0);
                    }
                }
                // Unwinding every open level lands on the state before the outermost begin.
                const first = saved[0];
                while (saved.pop() !== undefined) sm.rollback();
                if (first) expect(Buffer.compare(sm.dump(), first)).toBe(0);
            }),
            { numRuns: 200 }
        );
    });

    it('undoes a nested write to a chunk the outer transaction wrote just before', () => {
        const sm = new StableMemory();
        sm.grow(1n);
        sm.write(100, Uint8Array.of(1));
        sm.begin();
        sm.write(100, Uint8Array.of(2));
        sm.begin();
        sm.write(101, Uint8Array.of(3)); // same chunk: the inner level saves its own copy
        sm.rollback();
        expect([...sm.read(100, 2)]).toEqual([2, 0]);
        sm.begin();
        sm.write(102, Uint8Array.of(4));
        sm.commit();
        sm.rollback();
        expect([...sm.read(100, 3)]).toEqual([1, 0, 0]);
    });

    it('frees pages first written inside a rolled-back transaction', () => {
        const sm = new StableMemory();
        sm.grow(2n);
        sm.write(10, Uint8Array.of(1));
        sm.begin();
        sm.write(PAGE_SIZE_BYTES + 5, Uint8Array.of(2));
        sm.begin();
        sm.write(PAGE_SIZE_BYTES + 6, Uint8Array.of(3));
        sm.commit();
        expect(sm.resident_bytes).toBe(2 * PAGE_SIZE_BYTES);
        sm.rollback();
        expect(sm.resident_bytes).toBe(PAGE_SIZE_BYTES);
        expect([...sm.read(PAGE_SIZE_BYTES + 5, 2)]).toEqual([0, 0]);
        expect([...sm.read(10, 1)]).toEqual([1]);
    });
});
