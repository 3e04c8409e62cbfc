/**
 * Encodings of the IC HTTP interface: LEB128, domain separators, the representation-independent
 * hash that gives request ids (and the hashes signed in delegations and query responses), and the
 * DER prefixes of the public keys the interface knows.
 */
import { sha256 } from '@noble/hashes/sha2';
import { concatBytes } from '@noble/hashes/utils';

/** Deepest nesting the representation-independent hash follows (envelopes are shallow). */
const MAX_HASH_DEPTH = 16;

/** Unsigned LEB128 of a natural number. */
export function leb128(n: bigint | number): Uint8Array {
    let v = BigInt(n);
    if (v < 0n) throw new Error('leb128 of a negative number');
    const out: number[] = [];
    for (;;) {
        const b = Number(v & 0x7fn);
        v >>= 7n;
        if (v === 0n) {
            out.push(b);
            return new Uint8Array(out);
        }
        out.push(b | 0x80);
    }
}

/** The domain separator `len(s) ‖ s` used before every signed or hashed IC message. */
export function domainSeparator(s: string): Uint8Array {
    const bytes = new TextEncoder().encode(s);
    return concatBytes(new Uint8Array([bytes.length]), bytes);
}

/** A value of a CBOR-decoded envelope, as @dfinity/cbor returns it. */
export type EnvelopeValue =
    Uint8Array | string | number | bigint | EnvelopeValue[] | { [key: string]: EnvelopeValue };

/**
 * The spec's representation-independent hash of one value: blobs and text hashed as bytes,
 * naturals as LEB128, arrays as the hash of their elements' hashes, maps as `hashOfMap`.
 */
export function hashOfValue(v: unknown, depth = 0): Uint8Array {
    if (depth > MAX_HASH_DEPTH) throw new Error('value nested too deeply');
    if (v instanceof Uint8Array) return sha256(v);
    if (typeof v === 'string') return sha256(new TextEncoder().encode(v));
    if (typeof v === 'number' || typeof v === 'bigint') {
        if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Error('not a natural');
        return sha256(leb128(v));
    }
    if (Array.isArray(v)) return sha256(concatBytes(...v.map((x) => hashOfValue(x, depth + 1))));
    if (v !== null && typeof v === 'object') {
        return hashOfMap(v as Record<string, unknown>, depth + 1);
    }
    throw new Error(`value of type ${typeof v} has no representation-independent hash`);
}

/**
 * Hash of a map: sort the pairs `hash(key) ‖ hash(value)` bytewise, concatenate, sha256. Fields
 * whose value is `undefined` are absent.
 *
 * @example requestId(envelope.content) // the 32-byte request id
 */
export function hashOfMap(map: Record<string, unknown>, depth = 0): Uint8Array {
    const pairs: Uint8Array[] = [];
    for (const [k, v] of Object.entries(map)) {
        if (v === undefined) continue;
        pairs.push(concatBytes(hashOfValue(k, depth), hashOfValue(v, depth)));
    }
    pairs.sort(compareBytes);
    return sha256(concatBytes(...pairs));
}

/** The request id of an envelope's content. */
export function requestId(content: Record<string, unknown>): Uint8Array {
    return hashOfMap(content);
}

/** Bytewise comparison (shorter prefix first). */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
    return a.length - b.length;
}

/** Equality of byte strings. */
export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
    return compareBytes(a, b) === 0;
}

/** Lower-case hex. */
export function toHex(b: Uint8Array): string {
    return Buffer.from(b).toString('hex');
}

/** DER prefixes (SubjectPublicKeyInfo up to the key bytes) of the keys the interface accepts. */
export const DER_PREFIX = {
    ed25519: Uint8Array.from(Buffer.from('302a300506032b6570032100', 'hex')),
    /** ECDSA P-256 (prime256v1), uncompressed 65-byte point. */
    p256: Uint8Array.from(
        Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex')
    ),
    /** ECDSA secp256k1, uncompressed 65-byte point. */
    secp256k1: Uint8Array.from(
        Buffer.from('3056301006072a8648ce3d020106052b8104000a034200', 'hex')
    ),
    /** BLS12-381 G2 public key (the 37-byte prefix agents check, then 96 bytes). */
    bls: Uint8Array.from(
        Buffer.from(
            '308182301d060d2b0601040182dc7c0503010201060c2b0601040182dc7c05030201036100',
            'hex'
        )
    )
} as const;

/** Key lengths after the DER prefix. */
export const KEY_BYTES = { ed25519: 32, p256: 65, secp256k1: 65, bls: 96 } as const;

/** A DER-wrapped key of the given kind. */
export function wrapDer(kind: keyof typeof DER_PREFIX, raw: Uint8Array): Uint8Array {
    if (raw.length !== KEY_BYTES[kind])
        throw new Error(`a ${kind} key has ${KEY_BYTES[kind]} bytes`);
    return concatBytes(DER_PREFIX[kind], raw);
}

/** Splits a DER public key into its kind and raw bytes, or null if the interface does not know it. */
export function unwrapDer(
    der: Uint8Array
): { kind: keyof typeof DER_PREFIX; raw: Uint8Array } | null {
    for (const kind of Object.keys(DER_PREFIX) as (keyof typeof DER_PREFIX)[]) {
        const p = DER_PREFIX[kind];
        if (der.length === p.length + KEY_BYTES[kind] && sameBytes(der.subarray(0, p.length), p)) {
            return { kind, raw: der.subarray(p.length) };
        }
    }
    return null;
}
