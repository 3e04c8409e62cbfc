import { Principal } from '@dfinity/principal';
import { sha256 } from './wasm_binary';

/** The management canister's id, `aaaaa-aa`. */
export const MANAGEMENT_ID = Principal.fromText('aaaaa-aa');

/** Anything that looks like a principal (ours, or @icp-sdk/core's used by @dfinity/pic). */
export interface PrincipalLike {
    toUint8Array(): Uint8Array;
    toText(): string;
}

/** Converts a principal from any @dfinity / @icp-sdk copy into ours. */
export function toPrincipal(p: PrincipalLike | string): Principal {
    if (typeof p === 'string') return Principal.fromText(p);
    return Principal.fromUint8Array(new Uint8Array(p.toUint8Array()));
}

/**
 * A canister id as the IC forms it: the 8-byte big-endian index followed by 0x01 0x01.
 *
 * @example canisterIdFromIndex(0n).toText() // 'rwlgt-iiaaa-aaaaa-aaaaa-cai'
 */
export function canisterIdFromIndex(index: bigint): Principal {
    const b = new Uint8Array(10);
    new DataView(b.buffer).setBigUint64(0, index);
    b[8] = 1;
    b[9] = 1;
    return Principal.fromUint8Array(b);
}

/** The index of a canister id, or null if the principal is not a canister id. */
export function canisterIndex(p: Principal): bigint | null {
    const b = p.toUint8Array();
    if (b.length !== 10 || b[8] !== 1 || b[9] !== 1) return null;
    return new DataView(b.buffer, b.byteOffset).getBigUint64(0);
}

/**
 * A real-looking subnet id: a self-authenticating principal (sha224 of a key, then 0x02) derived
 * from the subnet number, so ids are stable across runs.
 */
export function subnetIdFor(n: number): Principal {
    const digest = sha256(new TextEncoder().encode(`agrilends-emulator-subnet-${n}`)).slice(0, 28);
    const b = new Uint8Array(29);
    b.set(digest);
    b[28] = 2;
    return Principal.fromUint8Array(b);
}

/** Principals compare by bytes. */
export function samePrincipal(a: Principal, b: Principal): boolean {
    return a.toText() === b.toText();
}
