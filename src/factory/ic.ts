/**
 * The factory's inter-canister calls: the management canister, the Cycles Minting Canister, the
 * data shards and the router. Each returns a `Result` instead of throwing, so callers handle a
 * rejected call as a value.
 *
 * The frequent calls (shard methods, `canister_status`, the routing-table push) go out raw, with
 * arguments and replies encoded and decoded by hand (`src/shared/factory_codec.ts`,
 * `shard_reply_codec.ts`): Azle's generic Candid costs 10–60 M instructions per message in the
 * canister's JS engine, mostly for the error type's table. A reply the hand decoder does not take
 * goes through `IDL.decode`, so every valid reply is read as before.
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
import {
    MessageCodec,
    natFieldsOfRecord,
    NO_ARGS,
    routingTableMessage,
    UNIT_OK
} from '../shared/factory_codec';
import { decodeShardMetricsReply } from '../shared/shard_reply_codec';
import { ApiError, Result, RoutingTable, ShardMetrics, UnitResult } from '../shared/types';

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

/** `canister_status`'s argument, encoded by hand (built on first use). */
let statusArgs: MessageCodec<[{ canister_id: Principal }]> | null = null;

/**
 * A controller's view of a canister: cycles and memory. The reply (a record of ~30 fields) is read
 * for its two `nat` fields by hand (`natFieldsOfRecord`), else with `IDL.decode`.
 */
export function canisterStatus(
    target: Principal
): Promise<Result<{ cycles: bigint; memory_size: bigint }>> {
    statusArgs ??= MessageCodec.of([canister_status_args]);
    return callRaw(
        MANAGEMENT,
        'canister_status',
        statusArgs.encode([{ canister_id: target }]),
        (reply) => {
            const hand = natFieldsOfRecord(reply, ['cycles', 'memory_size']);
            if (hand !== undefined) {
                return { Ok: { cycles: hand.cycles, memory_size: hand.memory_size } };
            }
            const status = IDL.decode([canister_status_result], reply)[0] as unknown as {
                cycles: bigint;
                memory_size: bigint;
            };
            return { Ok: { cycles: status.cycles, memory_size: status.memory_size } };
        }
    );
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

interface ShardCodecs {
    args: MessageCodec<unknown[]>;
    ret: MessageCodec<[unknown]>;
}

/** Hand codecs of a shard method's arguments and reply, built on first use (~30 M each). */
const shardCodecs = new Map<string, ShardCodecs>();

function codecsOf(method: ShardMethod, opaque: IDL.Type | null): ShardCodecs {
    const key = opaque === null ? method : `${method}/opaque`;
    let codecs = shardCodecs.get(key);
    if (codecs === undefined) {
        const sig: MethodSig = SHARD_METHODS[method];
        codecs = { args: MessageCodec.of(sig.args), ret: MessageCodec.of([sig.ret], opaque) };
        shardCodecs.set(key, codecs);
    }
    return codecs;
}

/**
 * Calls a data shard method with the types of `SHARD_METHODS`, arguments and reply encoded and
 * decoded by hand (`MessageCodec`; a reply in another encoding goes through `IDL.decode`). With
 * `opaque` (e.g. `Loan`), values of that type in the reply come back as `OpaqueValue`s (their
 * bytes, to pass on to another shard unread) when read by hand. A rejected call and the shard's own
 * `Err` both come back as `{ Err }`.
 */
export function callShard<T>(
    shard: Principal | string,
    method: ShardMethod,
    args: unknown[],
    opaque: IDL.Type | null = null
): Promise<Result<T>> {
    const codecs = codecsOf(method, opaque);
    return callRaw(shard, method, codecs.args.encode(args), (reply) => {
        const hand = codecs.ret.decode(reply);
        if (hand !== undefined) return hand[0] as Result<T>;
        return IDL.decode([SHARD_METHODS[method].ret], reply)[0] as unknown as Result<T>;
    });
}

/**
 * Calls `method` with its argument already Candid-encoded and reads the reply with `decode`; a
 * rejected call, and a reply `decode` refuses (it throws), come back as `{ Err }`.
 */
async function callRaw<T>(
    callee: Principal | string,
    method: string,
    arg: Uint8Array,
    decode: (reply: Uint8Array) => Result<T>
): Promise<Result<T>> {
    try {
        const reply = await call<Uint8Array, Uint8Array>(callee, method, { raw: true, args: arg });
        return decode(reply);
    } catch (error) {
        return callFailed(callee, error);
    }
}

/** A shard's metrics (`get_shard_metrics`), the reply decoded by hand (`shard_reply_codec`). */
export function shardMetrics(shard: Principal | string): Promise<Result<ShardMetrics>> {
    return callRaw(shard, 'get_shard_metrics', NO_ARGS, decodeShardMetricsReply);
}

function decodeUnitResult(reply: Uint8Array): Result<null> {
    if (sameBytes(reply, UNIT_OK)) return { Ok: null };
    return IDL.decode([UnitResult], reply)[0] as unknown as Result<null>;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
    if (a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
}

/**
 * Pushes the routing table to the router (`update_routing_table(RoutingTable) -> Result`), the
 * argument encoded by hand (`routingTableMessage`).
 */
export function pushRoutingTable(router: string, table: RoutingTable): Promise<Result<null>> {
    return callRaw(
        router,
        'update_routing_table',
        routingTableMessage.encode([table]),
        decodeUnitResult
    );
}
