/**
 * Routing: the cached routing table (stable) and its slot map (heap, rebuilt after an upgrade),
 * the refresh from the factory, and the write path with its retries (one refresh on `WrongShard`,
 * a few paced retries on a migration freeze).
 */
import { call, IDL, Principal } from 'azle';

import { callShardForLoan } from '../load_balancer/edge';
import { adoptTableShards } from '../load_balancer/balancer';
import { getConfig, getRoutingTable, setRoutingTable } from '../load_balancer/store';
import { MAX_READ_ONLY_RETRIES } from '../shared/router_api';
import { decodeRoutingTableBytes, principalFromText, principalText } from '../shared/router_codec';
import { validateRoutingTable } from '../shared/router_plan';
import { ownerOf, type SlotMap } from '../shared/slot_map';
import { ApiError, RoutingTable } from '../shared/types';

type Res<T> = { Ok: T } | { Err: ApiError };

let cachedMap: SlotMap | null = null;

/** The slot map of the stored table; null before the first table arrives. */
export function slotMap(): SlotMap | null {
    const table = getRoutingTable();
    if (table === null) return null;
    if (cachedMap === null || cachedMap.epoch !== table.epoch) {
        const checked = validateRoutingTable(table, 0n);
        // Only validated tables are stored, so this cannot fail short of a bug.
        if ('Err' in checked) throw new Error('stored routing table is invalid');
        cachedMap = checked.Ok;
    }
    return cachedMap;
}

/** Validates and stores a newer table, and tells the balancer about its shards. */
export function acceptTable(table: RoutingTable): Res<null> {
    const current = getRoutingTable()?.epoch ?? 0n;
    const checked = validateRoutingTable(table, current);
    if ('Err' in checked) return checked;
    setRoutingTable(table);
    cachedMap = checked.Ok;
    adoptTableShards(table);
    return { Ok: null };
}

/** A shard's id and canister, as the data path needs them. */
export interface Target {
    shard_id: number;
    canister_id: string;
}

/** The shard owning `slot` under the cached table. */
export function ownerOfSlot(slot: number): Res<Target> {
    const map = slotMap();
    const table = getRoutingTable();
    if (map === null || table === null) {
        return { Err: { ShardUnavailable: { shard_id: 0, reason: 'no routing table yet' } } };
    }
    const shard_id = ownerOf(map, slot);
    const address = table.shards.find((s) => s.shard_id === shard_id);
    if (shard_id === undefined || address === undefined) {
        return { Err: { InvalidInput: { field: 'slot', reason: `no owner for slot ${slot}` } } };
    }
    return { Ok: { shard_id, canister_id: principalText(address.canister_id) } };
}

/** Every shard owning at least one slot, in id order: the targets of a fan-out. */
export function ownerShards(): Target[] {
    const table = getRoutingTable();
    if (table === null) return [];
    const owning = new Set(table.ranges.map((r) => r.shard_id));
    return table.shards
        .filter((s) => owning.has(s.shard_id))
        .map((s) => ({ shard_id: s.shard_id, canister_id: principalText(s.canister_id) }))
        .sort((a, b) => a.shard_id - b.shard_id);
}

/** The Candid encoding of no arguments, `()`. */
const NO_ARGS = new Uint8Array(IDL.encode([], []));

/**
 * Asks the factory for its table (`get_routing_table`) and keeps it when newer. The reply is
 * decoded by hand (`decodeRoutingTableBytes`); a malformed one counts as a failed call.
 */
export async function refreshFromFactory(): Promise<Res<null>> {
    const factory = getConfig().factory;
    let table: RoutingTable;
    try {
        const reply = await call<Uint8Array, Uint8Array>(
            principalFromText(factory),
            'get_routing_table',
            {
                raw: true,
                args: NO_ARGS
            }
        );
        table =
            decodeRoutingTableBytes(reply) ??
            (IDL.decode([RoutingTable], reply)[0] as unknown as RoutingTable);
    } catch (error) {
        const e = error as { rejectCode?: number; rejectMessage?: string };
        return {
            Err: {
                CallFailed: {
                    callee: Principal.fromText(factory),
                    reject_code: e.rejectCode ?? 0,
                    message: String(e.rejectMessage ?? error).slice(0, 256)
                }
            }
        };
    }
    const current = getRoutingTable()?.epoch ?? 0n;
    if (table.epoch <= current) return { Ok: null };
    return acceptTable(table);
}

const MANAGEMENT = Principal.fromText('aaaaa-aa');

/** A short pause between retries: `raw_rand` takes a round on the IC (its bytes are unused). */
async function pause(rounds: number): Promise<void> {
    for (let i = 0; i < rounds; i++) {
        try {
            await call(MANAGEMENT, 'raw_rand', { raw: true });
        } catch {
            return; // a failed pause only shortens the wait
        }
    }
}

/**
 * Sends a write for `slot` to its owner. `WrongShard` → refresh the table once and retry once;
 * a retriable `ReadOnly` (migration freeze) → up to MAX_READ_ONLY_RETRIES retries, pausing
 * 1, 2, 4 … rounds. Bounded: at most 2 + MAX_READ_ONLY_RETRIES shard calls. `arg` is the
 * Candid argument as the shard method takes it; the answer is the written loan's value bytes.
 */
export async function routedWrite(
    slot: number,
    method: 'create_loan' | 'update_loan',
    arg: Uint8Array
): Promise<Res<Uint8Array>> {
    let refreshed = false;
    let freezes = 0;
    for (let attempt = 0; attempt < 2 + MAX_READ_ONLY_RETRIES; attempt++) {
        const target = ownerOfSlot(slot);
        if ('Err' in target) return target;
        const reply = await callShardForLoan(
            target.Ok.shard_id,
            target.Ok.canister_id,
            method,
            arg
        );
        if ('Ok' in reply) return reply;
        const error = reply.Err;
        if ('WrongShard' in error && !refreshed) {
            refreshed = true;
            const refresh = await refreshFromFactory();
            if ('Err' in refresh) return reply;
            continue;
        }
        if ('ReadOnly' in error && error.ReadOnly.retriable && freezes < MAX_READ_ONLY_RETRIES) {
            await pause(2 ** freezes);
            freezes += 1;
            continue;
        }
        return reply;
    }
    return {
        Err: { ReadOnly: { reason: `slot ${slot} stayed frozen through retries`, retriable: true } }
    };
}
