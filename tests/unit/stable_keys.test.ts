import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { Principal } from '@dfinity/principal';

import {
    asciiBytes,
    asciiText,
    taggedJson,
    u32Key,
    u64Key,
    utf8Text
} from '../../src/shared/stable_keys';

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

    it('writes UTF-8 as TextEncoder does and reads it back, lone surrogates as U+FFFD', () => {
        const native = new TextEncoder();
        fc.assert(
            fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (text) => {
                const bytes = utf8Text.toBytes(text);
                expect(bytes).toEqual(native.encode(text));
                expect(utf8Text.fromBytes(bytes)).toBe(new TextDecoder().decode(bytes));
            }),
            { numRuns: 500 }
        );
        expect(utf8Text.fromBytes(utf8Text.toBytes('h3:a#1'))).toBe('h3:a#1');
    });

    it('converts ASCII both ways in chunks and refuses other characters', () => {
        const long = 'abc,'.repeat(5_000);
        expect(asciiText(asciiBytes(long))).toBe(long);
        expect(() => asciiBytes('é')).toThrow(RangeError);
    });

    it('round-trips JSON values with bigints and principals', () => {
        const value = {
            n: 1,
            big: (1n << 64n) - 1n,
            list: [0n, 'x', null, true],
            who: Principal.fromText('aaaaa-aa'),
            nested: { at: 5n }
        };
        const back = taggedJson.fromBytes(taggedJson.toBytes(value)) as typeof value;
        expect(back.big).toBe(value.big);
        expect(back.list).toEqual(value.list);
        expect(back.nested).toEqual({ at: 5n });
        expect(back.who.toText()).toBe('aaaaa-aa');
        expect(back.n).toBe(1);
    });
});
