/**
 * The balancer's effects: every call to a shard goes through `callShard`, which asks the shard's
 * breaker first (an open breaker answers `ShardUnavailable` with no call made), makes the call,
 * and feeds the real outcome and latency back into the breaker, the latency average and the
 * counters. The decisions themselves are `src/shared` functions.
 */
import { call, IDL, msgReply, Principal, time } from 'azle';

import { updatePeakEwma } from '../shared/balancing';
import {
    breakerMetrics,
    BreakerState,
    initialBreakerState,
    onResult,
    Transition,
    tryAcquire
} from '../shared/circuit_breaker';
import { SHARD_METHODS, ShardMethod, type ShardLoanPage } from '../shared/shard_api';
import { isBreakerFailure, nsToMs } from '../shared/router_plan';
import {
    concatBytes,
    encodeLoanValue,
    encodePrincipalPageArgs,
    loanViewOf,
    okLoanPrefix,
    type LoanViewPage,
    type PageArgs
} from '../shared/loan_codec';
import {
    ArgsCodec,
    decodeOkLoanPageReply,
    ErrReplyCodec,
    latin1,
    principalFromText,
    startsWithLatin1
} from '../shared/router_codec';
import { Loan, Result, type ApiError, type CircuitBreakerStats } from '../shared/types';
import {
    breakers,
    getConfig,
    getCounters,
    setCounters,
    shardCounters,
    ShardCounters,
    shards
} from './store';

type Res<T> = { Ok: T } | { Err: ApiError };

/** Latency samples older than this weigh half as much after it (Peak-EWMA decay). */
const LATENCY_DECAY_MS = 10_000;

/** Requests sent and not yet answered, per shard: transient, so kept in the heap. */
const inFlight = new Map<number, number>();

export function nowMs(): number {
    return Number(time() / 1_000_000n);
}

export function inFlightOf(shard_id: number): number {
    return inFlight.get(shard_id) ?? 0;
}

/**
 * The shard's breaker; a shard never seen starts Closed. Read from the heap copy of the breakers
 * map (decoded states, `store.ts`), so a call decodes no JSON.
 */
export function breakerOf(shard_id: number): BreakerState {
    // null: an entry that did not decode (a bug, only this module writes the map); start over.
    return breakers.get(shard_id) ?? initialBreakerState(nowMs());
}

function countersOf(shard_id: number): ShardCounters {
    return (
        shardCounters.get(shard_id) ?? {
            requests: 0n,
            failures: 0n,
            transitions: 0n,
            last_transition_at_ms: 0
        }
    );
}

/**
 * Stores a breaker's next state and counts its transitions. A transition (Closed/Open/HalfOpen) is
 * written through to stable memory; a change within a state (the window of outcomes, permits) is
 * deferred to the next flush (`CachedMap.defer`).
 */
function saveBreaker(shard_id: number, state: BreakerState, transitions: Transition[]): void {
    if (transitions.length === 0) {
        breakers.defer(shard_id, state);
        return;
    }
    breakers.insert(shard_id, state);
    const counters = countersOf(shard_id);
    shardCounters.insert(shard_id, {
        ...counters,
        transitions: counters.transitions + BigInt(transitions.length),
        last_transition_at_ms: transitions[transitions.length - 1].at_ms
    });
    const total = getCounters();
    setCounters({
        ...total,
        breaker_transitions: total.breaker_transitions + BigInt(transitions.length)
    });
}

/** Asks the breaker for a permit, counting a refusal. */
export function acquire(shard_id: number): boolean {
    const before = breakerOf(shard_id);
    const result = tryAcquire(before, getConfig().breaker_config, nowMs());
    // A Closed breaker answers its own state object: nothing changed, nothing to store.
    if (result.state !== before || result.transitions.length > 0) {
        saveBreaker(shard_id, result.state, result.transitions);
    }
    if (!result.permitted) {
        const total = getCounters();
        setCounters({ ...total, rejected_by_breaker: total.rejected_by_breaker + 1n });
    }
    return result.permitted;
}

/**
 * Records one call's outcome: the breaker (re-read, since other messages may have changed it
 * while this call was out), the shard's latency average, and the request counters (deferred to
 * the next flush, see `CachedMap`; a breaker transition is written through).
 */
export function recordOutcome(shard_id: number, success: boolean, latency_ms: number): void {
    const now_ms = nowMs();
    const step = onResult(
        breakerOf(shard_id),
        getConfig().breaker_config,
        { success, duration_ms: latency_ms },
        now_ms
    );
    saveBreaker(shard_id, step.state, step.transitions);
    const shard = shards.get(shard_id);
    if (shard !== undefined) {
        const elapsed_ms = Math.max(0, now_ms - shard.last_sample_at_ms);
        shards.defer(shard_id, {
            ...shard,
            ewma_latency_ms: updatePeakEwma(
                shard.ewma_latency_ms,
                latency_ms,
                elapsed_ms,
                LATENCY_DECAY_MS
            ),
            last_sample_at_ms: now_ms
        });
    }
    // A BigInt sum allocates: a success leaves the failure counts as they are.
    const counters = countersOf(shard_id);
    shardCounters.defer(shard_id, {
        ...counters,
        requests: counters.requests + 1n,
        failures: success ? counters.failures : counters.failures + 1n
    });
    const total = getCounters();
    setCounters({
        ...total,
        total_requests: total.total_requests + 1n,
        failed_requests: success ? total.failed_requests : total.failed_requests + 1n
    });
}

function unavailable(shard_id: number, reason: string): { Err: ApiError } {
    return { Err: { ShardUnavailable: { shard_id, reason: reason.slice(0, 256) } } };
}

function rejectText(error: unknown): string {
    const e = error as { rejectCode?: number; rejectMessage?: string; type?: string };
    return `call rejected (code ${e.rejectCode ?? 0}): ${e.rejectMessage ?? e.type ?? String(error)}`;
}

/**
 * Runs `perform` (one call to a shard) through the shard's breaker: an open breaker answers
 * `ShardUnavailable` with no call made; the outcome and latency are recorded. Update context only.
 */
async function guarded<T>(shard_id: number, perform: () => Promise<Res<T>>): Promise<Res<T>> {
    if (!acquire(shard_id)) return unavailable(shard_id, 'circuit breaker open');
    inFlight.set(shard_id, inFlightOf(shard_id) + 1);
    const started_ns = time();
    let reply: Res<T>;
    let rejected = false;
    try {
        reply = await perform();
    } catch (error) {
        rejected = true;
        reply = unavailable(shard_id, rejectText(error));
    }
    inFlight.set(shard_id, Math.max(0, inFlightOf(shard_id) - 1));
    const latency_ms = nsToMs(time() - started_ns);
    const failure = rejected || isBreakerFailure({ rejected: false, reply });
    recordOutcome(shard_id, !failure, latency_ms);
    return reply;
}

/**
 * Calls `method` on a shard through its breaker. Update context only (it records outcomes).
 * Returns the shard's own reply (a `Result`), or `ShardUnavailable` when the breaker is open (no
 * call made) or the call was rejected.
 *
 * @example const r = await callShard<Loan>(3, 'bkyz2-…', 'get_loan', [id]);
 */
export async function callShard<T>(
    shard_id: number,
    canister_id: string,
    method: ShardMethod,
    args: unknown[]
): Promise<Res<T>> {
    const sig = SHARD_METHODS[method];
    return guarded(shard_id, () =>
        call<unknown[], Res<T>>(principalFromText(canister_id), method, {
            paramIdlTypes: sig.args,
            returnIdlType: sig.ret,
            args
        })
    );
}

/** The head of a shard's `Ok` loan reply (shards send stored loan bytes after it). */
const OK_LOAN_PREFIX = okLoanPrefix();
const OK_LOAN_PREFIX_LATIN1 = latin1(OK_LOAN_PREFIX);
/** `Err` replies of `Result<Loan>`, written and read by hand (`IDL.encode` costs ~50 M each). */
const LOAN_ERR = new ErrReplyCodec(OK_LOAN_PREFIX);

/**
 * Calls a shard method answering `Result<Loan>` (`create_loan`, `update_loan`, `get_loan`) with
 * `arg` already Candid-encoded, through the breaker like `callShard`. The `Ok` answer is the loan's
 * Candid value bytes, taken from the reply without decoding it (a reply in another encoding is
 * decoded and re-encoded), so the router can pass them on with `OK_LOAN_PREFIX`.
 */
export async function callShardForLoan(
    shard_id: number,
    canister_id: string,
    method: 'create_loan' | 'update_loan' | 'get_loan',
    arg: Uint8Array
): Promise<Res<Uint8Array>> {
    return guarded(shard_id, async () => {
        const reply = await call<Uint8Array, Uint8Array>(principalFromText(canister_id), method, {
            raw: true,
            args: arg
        });
        if (startsWithLatin1(reply, OK_LOAN_PREFIX_LATIN1)) {
            return { Ok: reply.slice(OK_LOAN_PREFIX.length) };
        }
        const error = LOAN_ERR.decode(reply);
        if (error !== undefined) return { Err: error };
        const decoded = IDL.decode([Result(Loan)], reply)[0] as unknown as Res<Loan>;
        return 'Ok' in decoded ? { Ok: encodeLoanValue(decoded.Ok) } : decoded;
    });
}

/** Replies `Result<Loan>` to the caller: a loan's value bytes after `OK_LOAN_PREFIX`, or the error. */
export function replyLoan(result: Res<Uint8Array>): void {
    msgReply(
        'Ok' in result ? concatBytes([OK_LOAN_PREFIX, result.Ok]) : LOAN_ERR.encode(result.Err)
    );
}

/** Hand encoders of the fan-out's arguments (built at load: a query's heap is discarded). */
const ARGS_CODECS = new Map<ShardMethod, ArgsCodec>([
    ['get_shard_stats', new ArgsCodec(SHARD_METHODS.get_shard_stats.args, [])]
]);

/**
 * Calls `method` on a shard with the reply taken as bytes: through the breaker with `fill` (update
 * context, like `callShard`), else read-only like `peekShard`. `args` are values, or the argument
 * bytes already encoded. `decodeOk` reads an `Ok` reply by hand; any reply it does not take (an
 * `Err`, another valid encoding) is decoded with `IDL.decode` (its `Ok` value passed through
 * `fromDecoded`, when given), so every valid answer is read as before.
 */
export async function callShardRaw<T, D = T>(
    shard_id: number,
    canister_id: string,
    method: ShardMethod,
    args: unknown[] | Uint8Array,
    fill: boolean,
    decodeOk: (reply: Uint8Array) => T | undefined,
    fromDecoded?: (decoded: D) => T
): Promise<Res<T>> {
    const sig = SHARD_METHODS[method];
    const codec = ARGS_CODECS.get(method);
    const perform = async (): Promise<Res<T>> => {
        const reply = await call<Uint8Array, Uint8Array>(principalFromText(canister_id), method, {
            raw: true,
            args:
                args instanceof Uint8Array
                    ? args
                    : codec === undefined
                      ? new Uint8Array(IDL.encode(sig.args, args))
                      : codec.encode(args)
        });
        const ok = decodeOk(reply);
        if (ok !== undefined) return { Ok: ok };
        const decoded = IDL.decode([sig.ret], reply)[0] as unknown as Res<D>;
        if ('Err' in decoded || fromDecoded === undefined) return decoded as unknown as Res<T>;
        return { Ok: fromDecoded(decoded.Ok) };
    };
    if (fill) return guarded(shard_id, perform);
    if (!canExecute(shard_id)) return unavailable(shard_id, 'circuit breaker open');
    try {
        return await perform();
    } catch (error) {
        return unavailable(shard_id, rejectText(error));
    }
}

/**
 * Calls a shard's loan index (`get_loans_by_borrower` / `get_loans_by_investor`) like
 * `callShardRaw`; the `Ok` page's loans are views over the reply's bytes (`LoanView`), which the
 * dashboards read and their replies carry on. A page in another encoding is decoded generically
 * and its loans re-encoded into views.
 */
export async function callShardLoanPage(
    shard_id: number,
    canister_id: string,
    method: 'get_loans_by_borrower' | 'get_loans_by_investor',
    args: PageArgs<Principal>,
    fill: boolean
): Promise<Res<LoanViewPage>> {
    return callShardRaw(
        shard_id,
        canister_id,
        method,
        encodePrincipalPageArgs(args),
        fill,
        decodeOkLoanPageReply,
        (page: ShardLoanPage): LoanViewPage => ({
            loans: page.loans.map(loanViewOf),
            next_cursor: page.next_cursor
        })
    );
}

/** Whether the breaker would let a call through now (no state change: safe in a query). */
export function canExecute(shard_id: number): boolean {
    if (breakers.get(shard_id) === undefined && shards.get(shard_id) === undefined) return false;
    return tryAcquire(breakerOf(shard_id), getConfig().breaker_config, nowMs()).permitted;
}

/**
 * The read-only variant for composite queries: skips a shard whose breaker refuses, records
 * nothing (a query's writes are discarded anyway).
 */
export async function peekShard<T>(
    shard_id: number,
    canister_id: string,
    method: ShardMethod,
    args: unknown[]
): Promise<Res<T>> {
    if (!canExecute(shard_id)) return unavailable(shard_id, 'circuit breaker open');
    const sig = SHARD_METHODS[method];
    try {
        return await call<unknown[], Res<T>>(principalFromText(canister_id), method, {
            paramIdlTypes: sig.args,
            returnIdlType: sig.ret,
            args
        });
    } catch (error) {
        return unavailable(shard_id, rejectText(error));
    }
}

/** The breaker of one shard as `get_load_balancer_stats` reports it. */
export function breakerStats(shard_id: number): CircuitBreakerStats {
    const state = breakerOf(shard_id);
    const m = breakerMetrics(state, getConfig().breaker_config, nowMs());
    const counters = countersOf(shard_id);
    return {
        shard_id,
        state: { [m.state]: null } as CircuitBreakerStats['state'],
        failure_rate_percent: m.failure_rate_percent,
        slow_call_rate_percent: m.slow_call_rate_percent,
        buffered_calls: m.number_of_calls,
        failed_calls: m.number_of_failed_calls,
        slow_calls: m.number_of_slow_calls,
        not_permitted_calls: BigInt(m.number_of_not_permitted_calls),
        transitions: counters.transitions,
        current_wait_ms: BigInt(Math.round(m.current_wait_ms)),
        last_transition_at: BigInt(counters.last_transition_at_ms) * 1_000_000n
    };
}
