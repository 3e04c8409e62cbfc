/**
 * Helpers shared by the canister tests: principals with roles, the built Wasm, Result unwrapping.
 */
import { readFile } from 'node:fs/promises';

import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { expect } from 'vitest';

import { artifacts } from '../../scripts/build';
import { slotOf } from '../../src/shared/hash';
import type { ApiError, NewLoan } from '../../src/shared/types';

/** A deterministic principal for role `name` (self-authenticating shape, 29 bytes). */
export function principalOf(name: string): Principal {
    const bytes = new Uint8Array(29);
    for (let i = 0; i < name.length && i < 28; i++) bytes[i] = name.charCodeAt(i);
    bytes[28] = 0x02;
    return Principal.fromUint8Array(bytes);
}

/** A user principal numbered `n`, as farmers and investors in tests. */
export function user(n: number): Principal {
    const bytes = new Uint8Array(29);
    new DataView(bytes.buffer).setUint32(0, n + 1);
    bytes[4] = 0x55;
    bytes[28] = 0x02;
    return Principal.fromUint8Array(bytes);
}

export const ADMIN = principalOf('admin');
export const FACTORY = principalOf('factory');
export const ROUTER = principalOf('router');
export const STRANGER = principalOf('stranger');
export const ANONYMOUS = Principal.anonymous();

/** The gzipped Wasm of a product canister, as built by the global setup. */
export async function wasmOf(name: 'factory' | 'data_shard' | 'router'): Promise<Uint8Array> {
    return new Uint8Array(await readFile(artifacts(name).wasmGz));
}

export function encodeArgs(types: IDL.Type[], values: unknown[]): Uint8Array {
    return new Uint8Array(IDL.encode(types, values));
}

/** The value of an `Ok`, failing the test with the error otherwise. */
export function ok<T>(result: { Ok: T } | { Err: ApiError }): T {
    if ('Err' in result) {
        throw new Error(`expected Ok, got Err ${JSON.stringify(result.Err, bigintJson)}`);
    }
    return result.Ok;
}

/** The error of an `Err`, failing the test otherwise. */
export function err<T>(result: { Ok: T } | { Err: ApiError }): ApiError {
    expect(result).toHaveProperty('Err');
    return (result as { Err: ApiError }).Err;
}

export function bigintJson(_key: string, value: unknown): unknown {
    return typeof value === 'bigint' ? value.toString() : value;
}

/** A valid loan application for `borrower`. */
export function application(borrower: Principal, n = 0): NewLoan {
    return {
        borrower,
        nft_id: BigInt(n),
        collateral_value_btc: 100_000n + BigInt(n),
        amount_requested: 1_000_000n + BigInt(n),
        apr: 1_200n,
        due_date: []
    };
}

/** Users whose slot satisfies `predicate`, for tests that need users on a given shard. */
export function usersWhere(count: number, predicate: (slot: number) => boolean): Principal[] {
    const found: Principal[] = [];
    for (let n = 0; found.length < count && n < 1_000_000; n++) {
        const p = user(n);
        if (predicate(slotOf(p.toUint8Array()))) found.push(p);
    }
    return found;
}
