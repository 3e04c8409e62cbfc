import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { hash64, hash64Into, slotOf, SLOT_COUNT } from '../../src/shared/hash';
import { mulberry32 } from '../../bench/prng';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/** xxHash's own sanity buffer (xxhsum.c): byteGen = 2654435761, byte = byteGen >> 24, byteGen *= byteGen. */
function sanityBuffer(length: number): Uint8Array {
    const out = new Uint8Array(length);
    let byteGen = 2654435761;
    for (let i = 0; i < length; i++) {
        out[i] = byteGen >>> 24;
        byteGen = Math.imul(byteGen, byteGen) >>> 0;
    }
    return out;
}

/**
 * Independent XXH64 written straight from the spec in BigInt, to cross-check the 32-bit-halves
 * port on arbitrary inputs (slow, test-only).
 */
function referenceXxh64(input: Uint8Array, seed: bigint): bigint {
    const M = (1n << 64n) - 1n;
    const P1 = 0x9e3779b185ebca87n;
    const P2 = 0xc2b2ae3d27d4eb4fn;
    const P3 = 0x165667b19e3779f9n;
    const P4 = 0x85ebca77c2b2ae63n;
    const P5 = 0x27d4eb2f165667c5n;
    const rotl = (x: bigint, r: bigint): bigint => ((x << r) | (x >> (64n - r))) & M;
    const read = (p: number, n: number): bigint => {
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(input[p + i]);
        return v;
    };
    const round = (acc: bigint, lane: bigint): bigint =>
        (rotl((acc + lane * P2) & M, 31n) * P1) & M;
    const len = input.length;
    let p = 0;
    let h: bigint;
    if (len >= 32) {
        const v = [(seed + P1 + P2) & M, (seed + P2) & M, seed, (seed - P1) & M];
        while (p + 32 <= len) {
            for (let i = 0; i < 4; i++) v[i] = round(v[i], read(p + 8 * i, 8));
            p += 32;
        }
        h = (rotl(v[0], 1n) + rotl(v[1], 7n) + rotl(v[2], 12n) + rotl(v[3], 18n)) & M;
        for (const lane of v) h = (((h ^ round(0n, lane)) * P1 + P4) & M) as bigint;
    } else {
        h = (seed + P5) & M;
    }
    h = (h + BigInt(len)) & M;
    for (; p + 8 <= len; p += 8) h = (rotl(h ^ round(0n, read(p, 8)), 27n) * P1 + P4) & M;
    if (p + 4 <= len) {
        h = (rotl(h ^ ((read(p, 4) * P1) & M), 23n) * P2 + P3) & M;
        p += 4;
    }
    for (; p < len; p++) h = (rotl(h ^ ((BigInt(input[p]) * P5) & M), 11n) * P1) & M;
    h = ((h ^ (h >> 33n)) * P2) & M;
    h = ((h ^ (h >> 29n)) * P3) & M;
    return h ^ (h >> 32n);
}

/** Pearson chi-square statistic of per-slot counts against the uniform expectation. */
function chiSquare(counts: Uint32Array, total: number): number {
    const expected = total / counts.length;
    let chi = 0;
    for (const observed of counts) chi += (observed - expected) ** 2 / expected;
    return chi;
}

describe('hash64 (xxHash64 port)', () => {
    it('matches the official XXH64 sanity vectors of xxhsum (seed 0 and seed 2654435761)', () => {
        const prime = 2654435761n;
        const buffer = sanityBuffer(101);
        const vectors: [number, bigint, bigint][] = [
            [0, 0n, 0xef46db3751d8e999n],
            [0, prime, 0xac75fda2929b17efn],
            [1, 0n, 0x4fce394cc88952d8n],
            [1, prime, 0x739840cb819fa723n],
            [14, 0n, 0xcffa8db881bc3a3dn],
            [14, prime, 0x5b9611585efcc9cbn],
            [101, 0n, 0x0eab543384f878adn],
            [101, prime, 0xcaa65939306f1e21n]
        ];
        for (const [length, seed, expected] of vectors) {
            expect(hash64(buffer.subarray(0, length), seed)).toBe(expected);
            // The BigInt transcription used below as an oracle must itself pass the same vectors.
            expect(referenceXxh64(buffer.subarray(0, length), seed)).toBe(expected);
        }
    });

    it('matches the published XXH64 string vectors', () => {
        expect(hash64(utf8(''))).toBe(0xef46db3751d8e999n);
        expect(hash64(utf8('a'))).toBe(0xd24ec4f1a98c6e5bn);
        expect(hash64(utf8('abc'))).toBe(0x44bc2cf5ad770999n);
        expect(hash64(utf8('Nobody inspects the spammish repetition'))).toBe(0xfbcea83c8a378bf1n);
        expect(hash64(utf8('Call me Ishmael.'))).toBe(0x6d04390fc9d61a90n);
        expect(hash64(utf8('Some years ago--never mind how long precisely-'))).toBe(
            0x8f26f2b986afdc52n
        );
    });

    it('pins the principal-shaped test vectors (any engine must reproduce this table)', () => {
        const table: [string, number[], bigint, number][] = [
            ['management canister aaaaa-aa', [], 0xef46db3751d8e999n, 10649],
            ['anonymous 2vxsx-fae', [0x04], 0x64b9da3ed69d6732n, 10034],
            [
                'ledger ryjl3-tyaaa-aaaaa-aaaba-cai',
                [0, 0, 0, 0, 0, 0, 0, 2, 1, 1],
                0xeb7f934af9783379n,
                13177
            ],
            ['canister id 10 bytes', [0, 0, 0, 0, 0, 0, 0, 0, 1, 1], 0x08a34cf6820752ecn, 4844],
            ['29 zero bytes', new Array(29).fill(0), 0xc143871a3eb50079n, 121],
            ['29 0xff bytes', new Array(29).fill(255), 0x1372ce4518c45bdfn, 7135],
            ['bytes 0..28', Array.from({ length: 29 }, (_, i) => i), 0x91b302cb6ee942e4n, 740],
            ['bytes 0..31', Array.from({ length: 32 }, (_, i) => i), 0xcbf59c5116ff32b4n, 12980],
            ['bytes 0..63', Array.from({ length: 64 }, (_, i) => i), 0xf7c67301db6713f0n, 5104]
        ];
        for (const [name, bytes, expectedHash, expectedSlot] of table) {
            const input = new Uint8Array(bytes);
            expect({ name, hash: hash64(input) }).toEqual({ name, hash: expectedHash });
            expect({ name, slot: slotOf(input) }).toEqual({ name, slot: expectedSlot });
        }
    });

    it('agrees with a BigInt transcription of the spec on arbitrary bytes and seeds', () => {
        fc.assert(
            fc.property(
                fc.uint8Array({ minLength: 0, maxLength: 140 }),
                fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
                (bytes, seed) => {
                    expect(hash64(bytes, seed)).toBe(referenceXxh64(bytes, seed));
                }
            ),
            { numRuns: 300 }
        );
    });

    it('agrees with the spec on inputs longer than its 4 KiB copy buffer and on unaligned views', () => {
        const next = mulberry32(99);
        const big = new Uint8Array(9_000);
        for (let i = 0; i < big.length; i++) big[i] = next() & 0xff;
        for (const length of [4_095, 4_096, 4_097, 4_131, 9_000]) {
            expect(hash64(big.subarray(0, length))).toBe(
                referenceXxh64(big.subarray(0, length), 0n)
            );
        }
        // Views at every offset mod 8, of lengths across the stripe, 8-, 4- and 1-byte tails.
        for (let offset = 0; offset < 8; offset++) {
            for (const length of [0, 3, 4, 7, 8, 29, 31, 32, 33, 63, 64, 250]) {
                const view = big.subarray(offset + 1_000, offset + 1_000 + length);
                expect(hash64(view)).toBe(referenceXxh64(view.slice(), 0n));
            }
        }
    });

    it('reduces the seed modulo 2^64', () => {
        const input = utf8('abc');
        expect(hash64(input, (1n << 64n) + 7n)).toBe(hash64(input, 7n));
        expect(hash64(input, -1n)).toBe(hash64(input, (1n << 64n) - 1n));
    });

    it('writes the same words through hash64Into as hash64 returns', () => {
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
                const out = new Uint32Array(3);
                hash64Into(bytes, out, 1);
                expect((BigInt(out[1]) << 32n) | BigInt(out[2])).toBe(hash64(bytes));
                expect(out[0]).toBe(0);
            }),
            { numRuns: 200 }
        );
    });
});

describe('slotOf', () => {
    it('is hash64 modulo 16384', () => {
        expect(SLOT_COUNT).toBe(16384);
        fc.assert(
            fc.property(fc.uint8Array({ maxLength: 29 }), (bytes) => {
                expect(slotOf(bytes)).toBe(Number(hash64(bytes) % BigInt(SLOT_COUNT)));
            }),
            { numRuns: 300 }
        );
    });

    it('spreads seeded random 29-byte principals uniformly over the slots (chi-square)', () => {
        const next = mulberry32(20260101);
        const perSlot = 16;
        const total = SLOT_COUNT * perSlot;
        const counts = new Uint32Array(SLOT_COUNT);
        const key = new Uint8Array(29);
        for (let i = 0; i < total; i++) {
            for (let b = 0; b < 29; b += 4) {
                const word = next();
                for (let k = 0; k < 4 && b + k < 29; k++) key[b + k] = (word >>> (8 * k)) & 0xff;
            }
            counts[slotOf(key)] += 1;
        }
        // df = 16383; the statistic is ~normal with sd sqrt(2 df) ~ 181: accept within 5 sd.
        const df = SLOT_COUNT - 1;
        expect(Math.abs(chiSquare(counts, total) - df)).toBeLessThan(5 * Math.sqrt(2 * df));
    });

    it('spreads low-entropy keys (little-endian counters) uniformly over the slots', () => {
        const perSlot = 8;
        const total = SLOT_COUNT * perSlot;
        const counts = new Uint32Array(SLOT_COUNT);
        const key = new Uint8Array(10);
        for (let i = 0; i < total; i++) {
            key[6] = i & 0xff;
            key[7] = (i >>> 8) & 0xff;
            key[8] = (i >>> 16) & 0xff;
            counts[slotOf(key)] += 1;
        }
        const df = SLOT_COUNT - 1;
        expect(Math.abs(chiSquare(counts, total) - df)).toBeLessThan(5 * Math.sqrt(2 * df));
    });

    it('flips about half of the output bits when one input bit flips (avalanche)', () => {
        const next = mulberry32(7);
        const key = new Uint8Array(29);
        let flipped = 0;
        const trials = 2000;
        for (let t = 0; t < trials; t++) {
            for (let i = 0; i < key.length; i++) key[i] = next() & 0xff;
            const before = hash64(key);
            const bit = next() % (29 * 8);
            key[bit >>> 3] ^= 1 << (bit & 7);
            let diff = before ^ hash64(key);
            while (diff !== 0n) {
                flipped += Number(diff & 1n);
                diff >>= 1n;
            }
        }
        // Mean over 2000 trials of a Binomial(64, 1/2): 32 +- 0.18 (sd); allow a wide margin.
        expect(flipped / trials).toBeGreaterThan(31);
        expect(flipped / trials).toBeLessThan(33);
    });
});
