/**
 * Measuring one operation in the emulator: the messages it caused (with their instruction counts)
 * and the rounds it took, plus the emulator options every deployment of the benchmark shares.
 */
import { readFile } from 'node:fs/promises';

import { Principal } from '@dfinity/principal';

import { LocalIc, type LocalIcOptions, type TraceEntry } from '../../emulator';
import { artifacts } from '../../scripts/build';
import { slotOf } from '../../src/shared/hash';
import type { ApiError } from '../../src/shared/types';
import { user } from '../../tests/integration/support';

/** Large enough that no measured operation (a migration included) wraps the trace ring. */
export const TRACE_CAPACITY = 1_000_000;

/** The gzipped Wasm of the three canisters, read once: a rebuild during a run cannot mix versions. */
export interface Wasms {
    factory: Uint8Array;
    router: Uint8Array;
    shard: Uint8Array;
}

const READ_ATTEMPTS = 120;

export async function loadWasms(): Promise<Wasms> {
    const read = async (name: string): Promise<Uint8Array> => {
        // Another build (e.g. a test run's global setup) may be rewriting the artifact right now.
        for (let attempt = 1; ; attempt++) {
            try {
                return new Uint8Array(await readFile(artifacts(name).wasmGz));
            } catch (e) {
                if ((e as { code?: string }).code !== 'ENOENT' || attempt >= READ_ATTEMPTS) throw e;
                await new Promise((r) => setTimeout(r, 1_000));
            }
        }
    };
    return {
        factory: await read('factory'),
        router: await read('router'),
        shard: await read('data_shard')
    };
}

/** A counting emulator with a fixed clock origin and `raw_rand` seed: every count is reproducible. */
export async function countingIc(seed: number): Promise<LocalIc> {
    const options: LocalIcOptions = {
        countInstructions: true,
        seed,
        traceCapacity: TRACE_CAPACITY
    };
    return await LocalIc.create(options);
}

export interface Measured<T> {
    value: T;
    /** Every message executed while the operation ran, in order. */
    trace: TraceEntry[];
    rounds: number;
    wall_ms: number;
}

/** Runs `op` alone (nothing else in flight) and returns what it cost. */
export async function measure<T>(ic: LocalIc, op: () => Promise<T>): Promise<Measured<T>> {
    ic.clearMessageTrace();
    const round = ic.getRound();
    const started = performance.now();
    const value = await op();
    const wall_ms = performance.now() - started;
    const trace = ic.getMessageTrace();
    if (trace.length >= TRACE_CAPACITY)
        throw new Error('message trace wrapped: raise TRACE_CAPACITY');
    return { value, trace, rounds: ic.getRound() - round, wall_ms };
}

/** The value of an `Ok`; an Error naming `what` and the typed error otherwise. */
export function okOf<T>(what: string, result: { Ok: T } | { Err: ApiError }): T {
    if ('Err' in result) {
        const text = JSON.stringify(result.Err, (_, v) => (typeof v === 'bigint' ? `${v}` : v));
        throw new Error(`${what}: ${text}`);
    }
    return result.Ok;
}

/**
 * `perGroup` distinct users for every group, where `groupOf(slot)` names the group of a slot
 * (or -1 for none), scanning user numbers from `firstUser`. Bounded scan.
 */
export function usersByGroup(
    groups: number,
    perGroup: number,
    groupOf: (slot: number) => number,
    firstUser: number
): Principal[][] {
    const found: Principal[][] = Array.from({ length: groups }, () => []);
    let missing = groups * perGroup;
    const limit = firstUser + 1_000 * groups * perGroup + 100_000;
    for (let n = firstUser; missing > 0 && n < limit; n++) {
        const p = user(n);
        const g = groupOf(slotOf(p.toUint8Array()));
        if (g >= 0 && g < groups && found[g].length < perGroup) {
            found[g].push(p);
            missing -= 1;
        }
    }
    if (missing > 0) throw new Error(`usersByGroup: ${missing} users not found`);
    return found;
}
