/**
 * Placement hash: a port of xxHash64 (Yann Collet's XXH64, as in xxhash_spec.md) in 32-bit halves.
 *
 * Every 64-bit value is a pair of uint32 words (hi, lo) and every operation uses only `Math.imul`,
 * `+`, `>>>`, `<<`, `|`, `^` on 32-bit integers, so V8 (tests, bench, tools) and QuickJS (the
 * canister) compute the same bits. BigInt appears only at the API edge (`hash64`), because BigInt
 * arithmetic is slow in QuickJS and allocates on every step.
 */

import { SLOT_COUNT } from './limits';

/** Number of hash slots in the routing table (16384, as Redis Cluster); a power of two. */
export { SLOT_COUNT };

const SLOT_MASK = SLOT_COUNT - 1;

// The five XXH64 primes split into (hi, lo) words.
const P1_HI = 0x9e3779b1;
const P1_LO = 0x85ebca87;
const P2_HI = 0xc2b2ae3d;
const P2_LO = 0x27d4eb4f;
const P3_HI = 0x165667b1;
const P3_LO = 0x9e3779f9;
const P4_HI = 0x85ebca77;
const P4_LO = 0xc2b2ae63;
const P5_HI = 0x27d4eb2f;
const P5_LO = 0x165667c5;

// Result register of the 64-bit helpers, [hi, lo]: returning two words through module state
// avoids allocating a pair per operation (a typed array, so V8 does not box the stored words).
// Safe because the code is synchronous and never re-entered.
const reg = new Uint32Array(2);

/** (aHi:aLo) * (bHi:bLo) mod 2^64 into (reg[0], reg[1]). */
function mul64(aHi: number, aLo: number, bHi: number, bLo: number): void {
    // High word of aLo*bLo from 16-bit limbs; every partial sum stays below 2^32, exact in doubles.
    const a0 = aLo & 0xffff;
    const a1 = aLo >>> 16;
    const b0 = bLo & 0xffff;
    const b1 = bLo >>> 16;
    const t = a0 * b0;
    const m1 = a1 * b0 + (t >>> 16);
    const m2 = a0 * b1 + (m1 & 0xffff);
    const carryHi = a1 * b1 + (m1 >>> 16) + (m2 >>> 16);
    reg[1] = Math.imul(aLo, bLo) >>> 0;
    reg[0] = (carryHi + Math.imul(aHi, bLo) + Math.imul(aLo, bHi)) >>> 0;
}

/** (aHi:aLo) + (bHi:bLo) mod 2^64 into (reg[0], reg[1]). */
function add64(aHi: number, aLo: number, bHi: number, bLo: number): void {
    const lo = aLo + bLo;
    reg[1] = lo >>> 0;
    reg[0] = (aHi + bHi + (lo > 0xffffffff ? 1 : 0)) >>> 0;
}

/** Rotate left by r bits, 0 < r < 32 (all XXH64 rotations are), into (reg[0], reg[1]). */
function rotl64(hi: number, lo: number, r: number): void {
    reg[0] = ((hi << r) | (lo >>> (32 - r))) >>> 0;
    reg[1] = ((lo << r) | (hi >>> (32 - r))) >>> 0;
}

/** XXH64_round: acc = rotl(acc + input * P2, 31) * P1, into (reg[0], reg[1]). */
function round64(accHi: number, accLo: number, inHi: number, inLo: number): void {
    mul64(inHi, inLo, P2_HI, P2_LO);
    add64(accHi, accLo, reg[0], reg[1]);
    rotl64(reg[0], reg[1], 31);
    mul64(reg[0], reg[1], P1_HI, P1_LO);
}

function read32(bytes: Uint8Array, p: number): number {
    return (bytes[p] | (bytes[p + 1] << 8) | (bytes[p + 2] << 16) | (bytes[p + 3] << 24)) >>> 0;
}

/** XXH64 of `bytes` with the given seed into (reg[0], reg[1]). Input length is bounded by the array. */
function xxh64(bytes: Uint8Array, seedHi: number, seedLo: number): void {
    const len = bytes.length;
    let p = 0;
    let hHi: number;
    let hLo: number;
    if (len >= 32) {
        add64(seedHi, seedLo, P1_HI, P1_LO);
        add64(reg[0], reg[1], P2_HI, P2_LO);
        let v1Hi = reg[0];
        let v1Lo = reg[1];
        add64(seedHi, seedLo, P2_HI, P2_LO);
        let v2Hi = reg[0];
        let v2Lo = reg[1];
        let v3Hi = seedHi;
        let v3Lo = seedLo;
        // seed - P1 = seed + (2^64 - P1)
        add64(seedHi, seedLo, ~P1_HI >>> 0, ~P1_LO >>> 0);
        add64(reg[0], reg[1], 0, 1);
        let v4Hi = reg[0];
        let v4Lo = reg[1];
        const limit = len - 32;
        while (p <= limit) {
            round64(v1Hi, v1Lo, read32(bytes, p + 4), read32(bytes, p));
            v1Hi = reg[0];
            v1Lo = reg[1];
            round64(v2Hi, v2Lo, read32(bytes, p + 12), read32(bytes, p + 8));
            v2Hi = reg[0];
            v2Lo = reg[1];
            round64(v3Hi, v3Lo, read32(bytes, p + 20), read32(bytes, p + 16));
            v3Hi = reg[0];
            v3Lo = reg[1];
            round64(v4Hi, v4Lo, read32(bytes, p + 28), read32(bytes, p + 24));
            v4Hi = reg[0];
            v4Lo = reg[1];
            p += 32;
        }
        rotl64(v1Hi, v1Lo, 1);
        hHi = reg[0];
        hLo = reg[1];
        rotl64(v2Hi, v2Lo, 7);
        add64(hHi, hLo, reg[0], reg[1]);
        hHi = reg[0];
        hLo = reg[1];
        rotl64(v3Hi, v3Lo, 12);
        add64(hHi, hLo, reg[0], reg[1]);
        hHi = reg[0];
        hLo = reg[1];
        rotl64(v4Hi, v4Lo, 18);
        add64(hHi, hLo, reg[0], reg[1]);
        hHi = reg[0];
        hLo = reg[1];
        const lanes = [v1Hi, v1Lo, v2Hi, v2Lo, v3Hi, v3Lo, v4Hi, v4Lo];
        for (let i = 0; i < 8; i += 2) {
            // XXH64_mergeRound: acc ^= round(0, v); acc = acc * P1 + P4
            round64(0, 0, lanes[i], lanes[i + 1]);
            mul64((hHi ^ reg[0]) >>> 0, (hLo ^ reg[1]) >>> 0, P1_HI, P1_LO);
            add64(reg[0], reg[1], P4_HI, P4_LO);
            hHi = reg[0];
            hLo = reg[1];
        }
    } else {
        add64(seedHi, seedLo, P5_HI, P5_LO);
        hHi = reg[0];
        hLo = reg[1];
    }
    // h += len (the length is below 2^32 for any Uint8Array QuickJS or V8 will hand us)
    add64(hHi, hLo, 0, len >>> 0);
    hHi = reg[0];
    hLo = reg[1];
    while (p + 8 <= len) {
        round64(0, 0, read32(bytes, p + 4), read32(bytes, p));
        rotl64((hHi ^ reg[0]) >>> 0, (hLo ^ reg[1]) >>> 0, 27);
        mul64(reg[0], reg[1], P1_HI, P1_LO);
        add64(reg[0], reg[1], P4_HI, P4_LO);
        hHi = reg[0];
        hLo = reg[1];
        p += 8;
    }
    if (p + 4 <= len) {
        mul64(0, read32(bytes, p), P1_HI, P1_LO);
        rotl64((hHi ^ reg[0]) >>> 0, (hLo ^ reg[1]) >>> 0, 23);
        mul64(reg[0], reg[1], P2_HI, P2_LO);
        add64(reg[0], reg[1], P3_HI, P3_LO);
        hHi = reg[0];
        hLo = reg[1];
        p += 4;
    }
    while (p < len) {
        mul64(0, bytes[p], P5_HI, P5_LO);
        rotl64((hHi ^ reg[0]) >>> 0, (hLo ^ reg[1]) >>> 0, 11);
        mul64(reg[0], reg[1], P1_HI, P1_LO);
        hHi = reg[0];
        hLo = reg[1];
        p += 1;
    }
    avalanche(hHi, hLo);
}

/** XXH64_avalanche: h ^= h >> 33; h *= P2; h ^= h >> 29; h *= P3; h ^= h >> 32. */
function avalanche(hi: number, lo: number): void {
    lo = (lo ^ (hi >>> 1)) >>> 0;
    mul64(hi, lo, P2_HI, P2_LO);
    hi = reg[0];
    lo = (reg[1] ^ ((hi << 3) | (reg[1] >>> 29))) >>> 0;
    hi = (hi ^ (hi >>> 29)) >>> 0;
    mul64(hi, lo, P3_HI, P3_LO);
    reg[1] = (reg[1] ^ reg[0]) >>> 0;
}

/**
 * xxHash64 of `bytes` (any length; principals are 0..29 bytes), as an unsigned 64-bit bigint.
 * `seed` is taken modulo 2^64.
 *
 * @example hash64(new TextEncoder().encode('abc')) === 0x44bc2cf5ad770999n
 */
export function hash64(bytes: Uint8Array, seed: bigint = 0n): bigint {
    const s = BigInt.asUintN(64, seed);
    xxh64(bytes, Number(s >> 32n), Number(s & 0xffffffffn));
    return (BigInt(reg[0]) << 32n) | BigInt(reg[1]);
}

/**
 * xxHash64 (seed 0) of `bytes` written as two uint32 words, `out[at] = hi`, `out[at + 1] = lo`.
 * Allocation-free form of `hash64` for hot loops.
 */
export function hash64Into(bytes: Uint8Array, out: Uint32Array, at = 0): void {
    xxh64(bytes, 0, 0);
    out[at] = reg[0];
    out[at + 1] = reg[1];
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
    return reg[1] & SLOT_MASK;
}
