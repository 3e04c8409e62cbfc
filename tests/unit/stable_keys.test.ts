import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { u32Key, u64Key } from '../../src/shared/stable_keys';

function compareBytes(a: Uint8Array, b: Uint8Array): number {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return 0;
}

describe('stable map key codecs', () => {
    it('round-trip and keep numeric order as byte order (u64)', () => {
        const u64 = fc.bigInt(0n, (1n << 64n) - 1n);
        fc.assert(
            fc.property(u64, u64, (a, b) => {
                expect(u64Key.fromBytes(u64Key.toBytes(a))).toBe(a);
                const order = compareBytes(u64Key.toBytes(a), u64Key.toBytes(b));
                expect(Math.sign(order)).toBe(a < b ? -1 : a > b ? 1 : 0);
            })
        );
    });

    it('round-trip and keep numeric order as byte order (u32), also from an offset view', () => {
        const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });
        fc.assert(
            fc.property(u32, u32, (a, b) => {
                const padded = new Uint8Array(7);
                padded.set(u32Key.toBytes(a), 3);
                expect(u32Key.fromBytes(padded.subarray(3))).toBe(a);
                const order = compareBytes(u32Key.toBytes(a), u32Key.toBytes(b));
                expect(Math.sign(order)).toBe(Math.sign(a - b));
            })
        );
    });
});
