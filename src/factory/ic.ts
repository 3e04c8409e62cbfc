/**
 * The factory's inter-canister calls: the management canister, the Cycles Minting Canister, the
 * data shards and the router. Each returns a `Result` instead of throwing, so callers handle a
 * rejected call as a value.
 */
import { call, canisterSelf, IDL, Principal } from 'azle';
import {
    canister_status_args,
    canister_status_result,
    clear_chunk_store_args,
    create_canister_args,
    create_canister_result,
    deposit_cycles_args,
    install_chunked_code_args,
    upload_chunk_args,
    upload_chunk_result
} from 'azle/canisters/management/idl';

import { Infer, nat, opt, principal, record, text, variant, vec } from '../shared/candid';
import { MethodSig, SHARD_METHODS, ShardInit, ShardMethod } from '../shared/shard_api';
import { ApiError, Result, RoutingTable, UnitResult } from '../shared/types';

const MANAGEMENT = 'aaaaa-aa';

/** The CMC's `create_canister` (subnet selection), defined here to keep the Wasm small. */
const CmcSettings = record({ controllers: opt(vec(principal)) });
const CmcCreateArg = record({
    subnet_selection: opt(variant({ Subnet: record({ subnet: principal }) })),
    settings: opt(CmcSettings),
    subnet_type: opt(text)
});
const CmcCreateResult = variant({
    Ok: principal,
    Err: variant({ Refunded: record({ create_error: text, refund_amount: nat }) })
});

/** A rejected or failed call as the factory's error value. */
export function callFailed(callee: Principal | string, error: unknown): { Err: ApiError } {
    const e = error as { type?: string; rejectCode?: number; rejectMessage?: string };
    const id = typeof callee === 'string' ? Principal.fromText(callee) : callee;
    return {
        Err: {
            CallFailed: {
                callee: id,
                reject_code: e.rejectCode ?? 0,
                message: (e.rejectMessage ?? `${e.type ?? 'error'}: ${String(error)}`).slice(0, 500)
            }
        }
    };
}

async function guarded<T>(callee: Principal | string, body: () => Promise<T>): Promise<Result<T>> {
    try {
        return { Ok: await body() };
    } catch (error) {
        return callFailed(callee, error);
    }
}

/**
 * Stores one chunk in a chunk store: the factory's own, or (`store`) a canister it controls, e.g. a
 * new shard on another subnet. Returns the chunk's hash.
 */
export function uploadChunk(
    chunk: Uint8Array,
    store: Principal = canisterSelf()
): Promise<Result<Uint8Array>> {
    return guarded(MANAGEMENT, async () => {
        const reply = await call<unknown[], { hash: Uint8Array }>(MANAGEMENT, 'upload_chunk', {
            paramIdlTypes: [upload_chunk_args],
            returnIdlType: upload_chunk_result,
            args: [{ canister_id: store, chunk }]
        });
        return Uint8Array.from(reply.hash);
    });
}

export function clearChunkStore(store: Principal = canisterSelf()): Promise<Result<null>> {
    return guarded(MANAGEMENT, async () => {
        await call(MANAGEMENT, 'clear_chunk_store', {
            paramIdlTypes: [clear_chunk_store_args],
            args: [{ canister_id: store }]
        });
        return null;
    });
}

/**
 * Creates a canister controlled by `controllers`, paying `cycles`. With `cmc` and `subnet`, the
 * CMC places it on that subnet (the IC's way to pick a subnet); otherwise the management canister
 * creates it on the factory's own subnet.
 */
export function createCanister(
    controllers: Principal[],
    cycles: bigint,
    placement: { cmc: string; subnet: string } | null
): Promise<Result<Principal>> {
    if (placement !== null) {
        return guarded(placement.cmc, async () => {
            const reply = await call<unknown[], Infer<typeof CmcCreateResult>>(
                placement.cmc,
                'create_canister',
                {
                    paramIdlTypes: [CmcCreateArg],
                    returnIdlType: CmcCreateResult,
                    args: [
                        {
                            subnet_selection: [
                                { Subnet: { subnet: Principal.fromText(placement.subnet) } }
                            ],
                            settings: [{ controllers: [controllers] }],
                            subnet_type: []
                        }
                    ],
                    cycles
                }
            );
            if ('Err' in reply) {
                const { create_error, refund_amount } = reply.Err.Refunded;
                throw new Error(`CMC: ${create_error} (refunded ${refund_amount} cycles)`);
            }
            return reply.Ok;
        });
    }
    return guarded(MANAGEMENT, async () => {
        const created = await call<unknown[], { canister_id: Principal }>(
            MANAGEMENT,
            'create_canister',
            {
                paramIdlTypes: [create_canister_args],
                returnIdlType: create_canister_result,
                args: [
                    {
                        settings: [
                            {
                                controllers: [controllers],
                                freezing_threshold: [],
                                reserved_cycles_limit: [],
                                log_visibility: [],
                                wasm_memory_limit: [],
                                memory_allocation: [],
                                compute_allocation: []
                            }
                        ],
                        sender_canister_version: []
                    }
                ],
                cycles
            }
        );
        return created.canister_id;
    });
}

/**
 * Installs, reinstalls (an empty canister whose first install failed) or upgrades a shard from a
 * chunk store on its subnet (the factory's by default) with `opt ShardInit`.
 */
export function installShard(
    target: Principal,
    mode: 'install' | 'reinstall' | 'upgrade',
    chunkHashes: Uint8Array[],
    moduleHash: Uint8Array,
    init: ShardInit,
    store: Principal = canisterSelf()
): Promise<Result<null>> {
    return guarded(MANAGEMENT, async () => {
        await call(MANAGEMENT, 'install_chunked_code', {
            paramIdlTypes: [install_chunked_code_args],
            args: [
                {
                    mode:
                        mode === 'upgrade'
                            ? { upgrade: [] }
                            : mode === 'reinstall'
                              ? { reinstall: null }
                              : { install: null },
                    target_canister: target,
                    store_canister: [store],
                    chunk_hashes_list: chunkHashes.map((hash) => ({ hash })),
                    wasm_module_hash: moduleHash,
                    arg: new Uint8Array(IDL.encode([IDL.Opt(ShardInit)], [[init]])),
                    sender_canister_version: []
                }
            ]
        });
        return null;
    });
}

/** A controller's view of a canister: cycles and memory. */
export function canisterStatus(
    target: Principal
): Promise<Result<{ cycles: bigint; memory_size: bigint }>> {
    return guarded(MANAGEMENT, async () => {
        const status = await call<unknown[], { cycles: bigint; memory_size: bigint }>(
            MANAGEMENT,
            'canister_status',
            {
                paramIdlTypes: [canister_status_args],
                returnIdlType: canister_status_result,
                args: [{ canister_id: target }]
            }
        );
        return { cycles: status.cycles, memory_size: status.memory_size };
    });
}

export function depositCycles(target: Principal, cycles: bigint): Promise<Result<null>> {
    return guarded(MANAGEMENT, async () => {
        await call(MANAGEMENT, 'deposit_cycles', {
            paramIdlTypes: [deposit_cycles_args],
            args: [{ canister_id: target }],
            cycles
        });
        return null;
    });
}

/**
 * Calls a data shard method with the types of `SHARD_METHODS`. A rejected call and the shard's own
 * `Err` both come back as `{ Err }`.
 */
export async function callShard<T>(
    shard: Principal | string,
    method: ShardMethod,
    args: unknown[]
): Promise<Result<T>> {
    const sig: MethodSig = SHARD_METHODS[method];
    try {
        return await call<unknown[], Result<T>>(shard, method, {
            paramIdlTypes: sig.args,
            returnIdlType: sig.ret,
            args
        });
    } catch (error) {
        return callFailed(shard, error);
    }
}

/** Pushes the routing table to the router (`update_routing_table(RoutingTable) -> Result`). */
export async function pushRoutingTable(router: string, table: RoutingTable): Promise<Result<null>> {
    try {
        return await call<unknown[], Result<null>>(router, 'update_routing_table', {
            paramIdlTypes: [RoutingTable],
            returnIdlType: UnitResult,
            args: [table]
        });
    } catch (error) {
        return callFailed(router, error);
    }
}
