/**
 * Placement and checksum hash: xxHash64 (Yann Collet's XXH64, as in xxhash_spec.md) in 32-bit
 * halves, written for the canister's JS engine (QuickJS), where every bytecode costs tens of Wasm
 * instructions, an operation that mixes small integers with doubles several hundred, and a call
 * several hundred more. One implementation for slots and loan checksums; its outputs never change.
 *
 * Every 64-bit value is a pair of int32 words (hi, lo), so V8 (tests, bench, tools) and QuickJS
 * compute the same bits. A product by a prime `K = (KH, KL)` modulo 2^64 is
 *   lo = imul(xl, KL), hi = mulhi(xl, KL) + imul(xh, KL) + imul(xl, KH)   (mod 2^32)
 * with the high word of `xl * KL` from 16-bit limbs, every partial sum below 2^32. The stripe
 * loop (4 rounds per 32 bytes, most of a loan's bytes) is written out with no calls besides
 * `Math.imul`; input words are read from an aligned copy through an `Int32Array` (one native copy
 * instead of four byte reads per word). BigInt appears only at the API edge (`hash64`): BigInt
 * arithmetic allocates on every step in QuickJS. Measured in the canister: about 155 K
 * instructions for a 29-byte principal, 550 K for 150 bytes (the port before cost 320 K and 780 K).
 */

import { SLOT_COUNT } from './limits';

/** Number of hash slots in the routing table (16384, as Redis Cluster); a power of two. */
export { SLOT_COUNT };

const SLOT_MASK = SLOT_COUNT - 1;

// The five XXH64 primes as int32 words, and the 16-bit limbs of the words whose high products
// are taken by hand (<prime><H|L><0: low limb, 1: high limb>).
const P1H = 0x9e3779b1 | 0;
const P1L = 0x85ebca87 | 0;
const P2H = 0xc2b2ae3d | 0;
const P2L = 0x27d4eb4f | 0;
const P3H = 0x165667b1 | 0;
const P4H = 0x85ebca77 | 0;
const P5H = 0x27d4eb2f | 0;
const P5L = 0x165667c5 | 0;
const P1L0 = 0xca87;
const P1L1 = 0x85eb;
const P2L0 = 0xeb4f;
const P2L1 = 0x27d4;
const P3L0 = 0x79f9;
const P3L1 = 0x9e37;
const P5L0 = 0x67c5;
const P5L1 = 0x1656;
const P5H0 = 0xeb2f;
const P5H1 = 0x27d4;
const P3L = 0x9e3779f9 | 0;
const P3L_U = 0x9e3779f9;
const P4L_U = 0xc2b2ae63;
const TWO32 = 4294967296;
const imul = Math.imul;

/**
 * Inputs up to this size are copied into `scratch` for aligned word reads; a longer one (no loan or
 * principal is) into a fresh copy of its own.
 */
const SCRATCH_BYTES = 4096;
const scratch = new ArrayBuffer(SCRATCH_BYTES);
const scratchBytes = new Uint8Array(scratch);
const scratchWords = new Int32Array(scratch);
if (new Uint8Array(Int32Array.of(1).buffer)[0] !== 1) {
    // Word reads assume a little-endian engine, as XXH64 reads its input (Wasm, x86, ARM are).
    throw new Error('hash: a big-endian engine; XXH64 word reads need little-endian');
}

// Result registers (int32 words): returning two words through module state avoids allocating a
// pair per call. Safe because the code is synchronous and never re-entered.
let outHi = 0;
let outLo = 0;

/** XXH64_round: rotl(acc + input * P2, 31) * P1, into (outHi, outLo). */
function round(accHi: number, accLo: number, inHi: number, inLo: number): void {
    let a0 = inLo & 0xffff;
    let a1 = inLo >>> 16;
    let t = a0 * P2L0;
    let m1 = a1 * P2L0 + (t >>> 16);
    let m2 = a0 * P2L1 + (m1 & 0xffff);
    const s = (imul(inLo, P2L) >>> 0) + (accLo >>> 0);
    const lo = s | 0;
    const hi =
        (a1 * P2L1 +
            (m1 >>> 16) +
            (m2 >>> 16) +
            imul(inHi, P2L) +
            imul(inLo, P2H) +
            accHi +
            (s >= TWO32 ? 1 : 0)) |
        0;
    const rh = (hi << 31) | (lo >>> 1);
    const rl = (lo << 31) | (hi >>> 1);
    a0 = rl & 0xffff;
    a1 = rl >>> 16;
    t = a0 * P1L0;
    m1 = a1 * P1L0 + (t >>> 16);
    m2 = a0 * P1L1 + (m1 & 0xffff);
    outLo = imul(rl, P1L);
    outHi = (a1 * P1L1 + (m1 >>> 16) + (m2 >>> 16) + imul(rh, P1L) + imul(rl, P1H)) | 0;
}

/** (hi, lo) * P1 + (addHi, addLo) mod 2^64 into (outHi, outLo); `addLo` is unsigned. */
function mulP1Add(hi: number, lo: number, addHi: number, addLo: number): void {
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const t = a0 * P1L0;
    const m1 = a1 * P1L0 + (t >>> 16);
    const m2 = a0 * P1L1 + (m1 & 0xffff);
    const s = (imul(lo, P1L) >>> 0) + addLo;
    outLo = s | 0;
    outHi =
        (a1 * P1L1 +
            (m1 >>> 16) +
            (m2 >>> 16) +
            imul(hi, P1L) +
            imul(lo, P1H) +
            addHi +
            (s >= TWO32 ? 1 : 0)) |
        0;
}

/** (hi, lo) * P2 + (addHi, addLo) mod 2^64 into (outHi, outLo); `addLo` is unsigned. */
function mulP2Add(hi: number, lo: number, addHi: number, addLo: number): void {
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const t = a0 * P2L0;
    const m1 = a1 * P2L0 + (t >>> 16);
    const m2 = a0 * P2L1 + (m1 & 0xffff);
    const s = (imul(lo, P2L) >>> 0) + addLo;
    outLo = s | 0;
    outHi =
        (a1 * P2L1 +
            (m1 >>> 16) +
            (m2 >>> 16) +
            imul(hi, P2L) +
            imul(lo, P2H) +
            addHi +
            (s >= TWO32 ? 1 : 0)) |
        0;
}

/** (hi, lo) * P3 mod 2^64 into (outHi, outLo). */
function mulP3(hi: number, lo: number): void {
    const a0 = lo & 0xffff;
    const a1 = lo >>> 16;
    const t = a0 * P3L0;
    const m1 = a1 * P3L0 + (t >>> 16);
    const m2 = a0 * P3L1 + (m1 & 0xffff);
    outLo = imul(lo, P3L);
    outHi = (a1 * P3L1 + (m1 >>> 16) + (m2 >>> 16) + imul(hi, P3L) + imul(lo, P3H)) | 0;
}

/** (seedHi:seedLo) + (hi:lo) mod 2^64 into (outHi, outLo). */
function add64(seedHi: number, seedLo: number, hi: number, lo: number): void {
    const s = (seedLo >>> 0) + (lo >>> 0);
    outLo = s | 0;
    outHi = (seedHi + hi + (s >= TWO32 ? 1 : 0)) | 0;
}

/** XXH64 of `bytes` with the given seed into (outHi, outLo) as int32 words. */
function xxh64(bytes: Uint8Array, seedHi: number, seedLo: number): void {
    const len = bytes.length;
    let words = scratchWords;
    if (len <= SCRATCH_BYTES) {
        scratchBytes.set(bytes);
    } else {
        const copy = new Uint8Array(len + 3);
        copy.set(bytes);
        words = new Int32Array(copy.buffer, 0, (len + 3) >>> 2);
    }
    let p = 0;
    let hh: number;
    let hl: number;
    if (len >= 32) {
        add64(seedHi, seedLo, P1H, P1L);
        add64(outHi, outLo, P2H, P2L);
        let a1h = outHi;
        let a1l = outLo;
        add64(seedHi, seedLo, P2H, P2L);
        let a2h = outHi;
        let a2l = outLo;
        let a3h = seedHi | 0;
        let a3l = seedLo | 0;
        // seed - P1 = seed + (2^64 - P1); P1's low word is not 0, so no carry into ~P1H
        add64(seedHi, seedLo, ~P1H, -P1L | 0);
        let a4h = outHi;
        let a4l = outLo;
        let kh: number;
        let kl: number;
        let a0: number;
        let a1: number;
        let t: number;
        let m1: number;
        let m2: number;
        let s: number;
        let lo: number;
        let hi: number;
        const lastStripe = len - 32;
        // Each lane: acc = rotl(acc + lane * P2, 31) * P1, as `round` with its steps inlined.
        while (p <= lastStripe) {
            const q = p >>> 2;
            kl = words[q];
            kh = words[q + 1];
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P2L0;
            m1 = a1 * P2L0 + (t >>> 16);
            m2 = a0 * P2L1 + (m1 & 0xffff);
            s = (imul(kl, P2L) >>> 0) + (a1l >>> 0);
            lo = s | 0;
            hi =
                (a1 * P2L1 +
                    (m1 >>> 16) +
                    (m2 >>> 16) +
                    imul(kh, P2L) +
                    imul(kl, P2H) +
                    a1h +
                    (s >= TWO32 ? 1 : 0)) |
                0;
            kh = (hi << 31) | (lo >>> 1);
            kl = (lo << 31) | (hi >>> 1);
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P1L0;
            m1 = a1 * P1L0 + (t >>> 16);
            m2 = a0 * P1L1 + (m1 & 0xffff);
            a1l = imul(kl, P1L);
            a1h = (a1 * P1L1 + (m1 >>> 16) + (m2 >>> 16) + imul(kh, P1L) + imul(kl, P1H)) | 0;
            kl = words[q + 2];
            kh = words[q + 3];
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P2L0;
            m1 = a1 * P2L0 + (t >>> 16);
            m2 = a0 * P2L1 + (m1 & 0xffff);
            s = (imul(kl, P2L) >>> 0) + (a2l >>> 0);
            lo = s | 0;
            hi =
                (a1 * P2L1 +
                    (m1 >>> 16) +
                    (m2 >>> 16) +
                    imul(kh, P2L) +
                    imul(kl, P2H) +
                    a2h +
                    (s >= TWO32 ? 1 : 0)) |
                0;
            kh = (hi << 31) | (lo >>> 1);
            kl = (lo << 31) | (hi >>> 1);
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P1L0;
            m1 = a1 * P1L0 + (t >>> 16);
            m2 = a0 * P1L1 + (m1 & 0xffff);
            a2l = imul(kl, P1L);
            a2h = (a1 * P1L1 + (m1 >>> 16) + (m2 >>> 16) + imul(kh, P1L) + imul(kl, P1H)) | 0;
            kl = words[q + 4];
            kh = words[q + 5];
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P2L0;
            m1 = a1 * P2L0 + (t >>> 16);
            m2 = a0 * P2L1 + (m1 & 0xffff);
            s = (imul(kl, P2L) >>> 0) + (a3l >>> 0);
            lo = s | 0;
            hi =
                (a1 * P2L1 +
                    (m1 >>> 16) +
                    (m2 >>> 16) +
                    imul(kh, P2L) +
                    imul(kl, P2H) +
                    a3h +
                    (s >= TWO32 ? 1 : 0)) |
                0;
            kh = (hi << 31) | (lo >>> 1);
            kl = (lo << 31) | (hi >>> 1);
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P1L0;
            m1 = a1 * P1L0 + (t >>> 16);
            m2 = a0 * P1L1 + (m1 & 0xffff);
            a3l = imul(kl, P1L);
            a3h = (a1 * P1L1 + (m1 >>> 16) + (m2 >>> 16) + imul(kh, P1L) + imul(kl, P1H)) | 0;
            kl = words[q + 6];
            kh = words[q + 7];
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P2L0;
            m1 = a1 * P2L0 + (t >>> 16);
            m2 = a0 * P2L1 + (m1 & 0xffff);
            s = (imul(kl, P2L) >>> 0) + (a4l >>> 0);
            lo = s | 0;
            hi =
                (a1 * P2L1 +
                    (m1 >>> 16) +
                    (m2 >>> 16) +
                    imul(kh, P2L) +
                    imul(kl, P2H) +
                    a4h +
                    (s >= TWO32 ? 1 : 0)) |
                0;
            kh = (hi << 31) | (lo >>> 1);
            kl = (lo << 31) | (hi >>> 1);
            a0 = kl & 0xffff;
            a1 = kl >>> 16;
            t = a0 * P1L0;
            m1 = a1 * P1L0 + (t >>> 16);
            m2 = a0 * P1L1 + (m1 & 0xffff);
            a4l = imul(kl, P1L);
            a4h = (a1 * P1L1 + (m1 >>> 16) + (m2 >>> 16) + imul(kh, P1L) + imul(kl, P1H)) | 0;
            p += 32;
        }
        // h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)
        s = (((a1l << 1) | (a1h >>> 31)) >>> 0) + (((a2l << 7) | (a2h >>> 25)) >>> 0);
        hh = ((a1h << 1) | (a1l >>> 31)) + ((a2h << 7) | (a2l >>> 25)) + (s >= TWO32 ? 1 : 0);
        s = (s >>> 0) + (((a3l << 12) | (a3h >>> 20)) >>> 0);
        hh += ((a3h << 12) | (a3l >>> 20)) + (s >= TWO32 ? 1 : 0);
        s = (s >>> 0) + (((a4l << 18) | (a4h >>> 14)) >>> 0);
        hh = (hh + ((a4h << 18) | (a4l >>> 14)) + (s >= TWO32 ? 1 : 0)) | 0;
        hl = s | 0;
        // XXH64_mergeRound for each lane: h = (h ^ round(0, lane)) * P1 + P4
        round(0, 0, a1h, a1l);
        mulP1Add(hh ^ outHi, hl ^ outLo, P4H, P4L_U);
        hh = outHi;
        hl = outLo;
        round(0, 0, a2h, a2l);
        mulP1Add(hh ^ outHi, hl ^ outLo, P4H, P4L_U);
        hh = outHi;
        hl = outLo;
        round(0, 0, a3h, a3l);
        mulP1Add(hh ^ outHi, hl ^ outLo, P4H, P4L_U);
        hh = outHi;
        hl = outLo;
        round(0, 0, a4h, a4l);
        mulP1Add(hh ^ outHi, hl ^ outLo, P4H, P4L_U);
        hh = outHi;
        hl = outLo;
    } else {
        add64(seedHi, seedLo, P5H, P5L);
        hh = outHi;
        hl = outLo;
    }
    // h += len (below 2^32 for any Uint8Array QuickJS or V8 will hand us)
    add64(hh, hl, 0, len);
    hh = outHi;
    hl = outLo;
    while (p + 8 <= len) {
        // h = rotl(h ^ round(0, k), 27) * P1 + P4
        round(0, 0, words[(p >>> 2) + 1], words[p >>> 2]);
        const xh = hh ^ outHi;
        const xl = hl ^ outLo;
        mulP1Add((xh << 27) | (xl >>> 5), (xl << 27) | (xh >>> 5), P4H, P4L_U);
        hh = outHi;
        hl = outLo;
        p += 8;
    }
    if (p + 4 <= len) {
        // h = rotl(h ^ (k32 * P1), 23) * P2 + P3
        mulP1Add(0, words[p >>> 2], 0, 0);
        const xh = hh ^ outHi;
        const xl = hl ^ outLo;
        mulP2Add((xh << 23) | (xl >>> 9), (xl << 23) | (xh >>> 9), P3H, P3L_U);
        hh = outHi;
        hl = outLo;
        p += 4;
    }
    while (p < len) {
        // h = rotl(h ^ (byte * P5), 11) * P1; byte * P5 < 2^40 in its low word's product
        const b = bytes[p];
        const t = b * P5L0 + b * P5L1 * 65536;
        const xh = hh ^ ((((t / TWO32) | 0) + b * P5H0 + ((b * P5H1) << 16)) | 0);
        const xl = hl ^ (t | 0);
        mulP1Add((xh << 11) | (xl >>> 21), (xl << 11) | (xh >>> 21), 0, 0);
        hh = outHi;
        hl = outLo;
        p += 1;
    }
    // XXH64_avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32
    mulP2Add(hh, hl ^ (hh >>> 1), 0, 0);
    mulP3(outHi ^ (outHi >>> 29), outLo ^ ((outHi << 3) | (outLo >>> 29)));
    outLo ^= outHi;
}

/**
 * xxHash64 of `bytes` (any length; principals are 0..29 bytes), as an unsigned 64-bit bigint.
 * `seed` is taken modulo 2^64.
 *
 * @example hash64(new TextEncoder().encode('abc')) === 0x44bc2cf5ad770999n
 */
export function hash64(bytes: Uint8Array, seed: bigint = 0n): bigint {
    if (seed === 0n) {
        xxh64(bytes, 0, 0);
    } else {
        const s = BigInt.asUintN(64, seed);
        xxh64(bytes, Number(s >> 32n) | 0, Number(s & 0xffffffffn) | 0);
    }
    return (BigInt(outHi >>> 0) << 32n) | BigInt(outLo >>> 0);
}

/**
 * xxHash64 (seed 0) of `bytes` written as two uint32 words, `out[at] = hi`, `out[at + 1] = lo`.
 * Allocation-free form of `hash64` for hot loops.
 */
export function hash64Into(bytes: Uint8Array, out: Uint32Array, at = 0): void {
    xxh64(bytes, 0, 0);
    out[at] = outHi;
    out[at + 1] = outLo;
}

/**
 * The slot of a key: `hash64(bytes) mod 16384`, i.e. the low 14 bits of the hash.
 *
 * Unbiased: 2^64 is a multiple of 2^14, so each slot has exactly 2^50 preimages in the hash range
 * (no modulo bias as with a non-power-of-two modulus), and the XXH64 avalanche step makes the low
 * bits as uniform as the high ones.
 *
 * @example slotOf(principal.toUint8Array()) // 0..16383
 */
export function slotOf(bytes: Uint8Array): number {
    xxh64(bytes, 0, 0);
    return outLo & SLOT_MASK;
}
