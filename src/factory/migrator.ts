/**
 * Runs the migration state machine of `src/shared/migration.ts`: performs each action with calls to
 * the shards, stores the next state after every step, and keeps itself going with timers. A lease in
 * stable memory keeps one driver at a time; a trap or an upgrade mid-step leaves the stored state at
 * the last completed step, and the watchdog (or `postUpgrade`) resumes from there.
 */
import { canisterSelf, Principal, setTimer } from 'azle';

import {
    advance,
    CopyCursor,
    isInFlight,
    MAX_SPANS,
    MIGRATION_BATCH_LOANS,
    MigrationAction,
    MigrationState,
    nextAction,
    seqFloors,
    SpanMove,
    StepOutcome,
    slotTotal,
    startMigration
} from '../shared/migration';
import { finishScaleOut } from '../shared/scaling_policy';
import type { ExportBatch, ImportResult, SpanChecksum } from '../shared/shard_api';
import { assignSpan, fromRanges } from '../shared/slot_map';
import { Loan, type ApiError, type Result } from '../shared/types';
import type { OpaqueValue } from '../shared/factory_codec';
import { callShard, pushRoutingTable } from './ic';
import { currentEpoch, log, nowMs, routingTable } from './registry';
import {
    getConfig,
    getCounters,
    getCurrentMigration,
    getRouter,
    getScalingState,
    getSlotRanges,
    leaseHeld,
    migrations,
    releaseLease,
    setCounters,
    setCurrentMigration,
    setScalingState,
    setSlotRanges,
    shards,
    takeLease
} from './store';
import { describeValue } from '../shared/errors';

/** A driver holds the lease this long past its latest step; a trapped driver is replaced after it. */
export const MIGRATION_LEASE_MS = 20_000;
/** Steps one driver performs before handing over to a fresh timer (bounds one timer's work). */
const MAX_STEPS_PER_DRIVE = 200;
/** Longest wait before retrying a failing step. */
const MAX_RETRY_DELAY_S = 30;

const describe: (error: ApiError) => string = describeValue;

function canisterOf(shard_id: number): string | null {
    return shards.get(shard_id)?.canister_id ?? null;
}

function spanArg(span: SpanMove): { start: number; end: number } {
    return { start: span.start, end: span.end };
}

/**
 * Starts a migration of `spans` unless one is in flight; returns its id. Caller checks the spans.
 */
export function beginMigration(planned: SpanMove[], reason: string, caller: Principal): string {
    const spans = planned.slice(0, MAX_SPANS);
    if (planned.length > spans.length) {
        log(caller, 'migration_truncated', `${planned.length} spans planned, ${MAX_SPANS} now`);
    }
    const counters = getCounters();
    const id = `m-${counters.next_migration}`;
    setCounters({ ...counters, next_migration: counters.next_migration + 1 });
    const state = startMigration({ id, spans, now_ms: nowMs(), reason });
    migrations.insert(id, state);
    setCurrentMigration(isInFlight(state) ? id : null);
    const pairs = new Set(spans.map((s) => `${s.from}→${s.to}`));
    log(
        caller,
        'migration_started',
        `${id} (${reason}): ${spans.length} spans, ${slotTotal(spans)} slots, ${[...pairs].join(', ')}`
    );
    kickMigration(0);
    return id;
}

/** Schedules a driver in `delay_s` seconds. */
export function kickMigration(delay_s: number): void {
    setTimer(delay_s, drive);
}

/** The migration in flight, if any. */
export function currentMigration(): MigrationState | null {
    const id = getCurrentMigration();
    if (id === null) return null;
    const state = migrations.get(id);
    return state !== undefined && isInFlight(state) ? state : null;
}

/** Runs steps until the migration ends, a step fails, or the step bound is reached. */
export async function drive(): Promise<void> {
    if (leaseHeld('migration', nowMs())) return;
    for (let step = 0; step < MAX_STEPS_PER_DRIVE; step++) {
        const state = currentMigration();
        if (state === null) {
            finish();
            return;
        }
        takeLease('migration', nowMs() + MIGRATION_LEASE_MS);
        const outcome = await perform(nextAction(state), state);
        // A driver that outlived its lease may have been replaced: the newer one owns the state.
        const stored = migrations.get(state.id);
        if (stored === undefined || stepKey(stored) !== stepKey(state)) return;
        const next = advance({ ...state, stop_requested: stored.stop_requested }, outcome, nowMs());
        migrations.insert(next.id, next);
        report(state, next);
        if (outcome.kind === 'Error') {
            releaseLease('migration');
            kickMigration(Math.min(MAX_RETRY_DELAY_S, 2 ** Math.min(next.step_errors, 5)));
            return;
        }
    }
    releaseLease('migration');
    kickMigration(0);
}

/** What only the driver changes: equal keys mean no other driver has stepped meanwhile. */
function stepKey(state: MigrationState): string {
    const { phase, span_index, cursor, updated_at_ms, step_errors } = state;
    return JSON.stringify({ phase, span_index, cursor, updated_at_ms, step_errors });
}

/** Ends the bookkeeping of a finished migration (current id, scale-out flag, lease). */
function finish(): void {
    const id = getCurrentMigration();
    releaseLease('migration');
    if (id === null) return;
    setCurrentMigration(null);
    const state = migrations.get(id);
    if (state?.reason === 'scale_out') {
        setScalingState(finishScaleOut(getScalingState(), getConfig(), nowMs()));
    }
}

function report(before: MigrationState, after: MigrationState): void {
    const self = canisterSelf();
    if (after.phase === 'Failed' || after.phase === 'Aborting') {
        if (before.phase !== after.phase) {
            log(self, 'migration_failed', `${after.id}: ${after.failure ?? 'unknown'}`);
        }
    } else if (after.phase === 'Done') {
        log(
            self,
            'migration_done',
            `${after.id}: ${after.spans.length} spans, ${after.loans_copied} loans copied, ` +
                `${after.loans_caught_up} caught up, ${after.loans_deleted} deleted`
        );
    } else if (after.step_errors === 1 || after.step_errors % 10 === 0) {
        if (after.step_errors > 0 && after.last_error !== null) {
            log(self, 'migration_step_error', `${after.id} ${after.phase}: ${after.last_error}`);
        }
    }
    if (!isInFlight(after)) finish();
}

function errorOutcome(message: string): StepOutcome {
    return { kind: 'Error', message: message.slice(0, 500) };
}

/** Performs one action; every failure becomes an `Error` outcome (retried later). */
async function perform(action: MigrationAction, state: MigrationState): Promise<StepOutcome> {
    if (action.kind === 'None') return errorOutcome(`no action in phase ${state.phase}`);
    const span = action.span;
    const from = canisterOf(span.from);
    const to = canisterOf(span.to);
    if (from === null || to === null) return errorOutcome('a shard of the span is not registered');
    const epoch = currentEpoch();
    switch (action.kind) {
        case 'SetSlotState': {
            const target = action.shard === span.from ? from : to;
            const state_ = { [action.state]: null } as Record<string, null>;
            const r = await callShard<null>(target, 'set_slot_state', [
                spanArg(span),
                state_,
                epoch
            ]);
            return 'Err' in r ? errorOutcome(describe(r.Err)) : { kind: 'Applied' };
        }
        case 'CopyBatch':
            return copyBatch(span, action.cursor, from, to);
        case 'CatchUpBatch':
            return catchUpBatch(from, to);
        case 'Flip':
            return flip(span);
        case 'Verify':
            return verify(span, from, to);
        case 'DeleteBatch': {
            const r = await callShard<{ deleted: number; remaining: bigint }>(
                from,
                'delete_slot_batch',
                [spanArg(span), MIGRATION_BATCH_LOANS]
            );
            if ('Err' in r) return errorOutcome(describe(r.Err));
            return { kind: 'Deleted', deleted: r.Ok.deleted, remaining: Number(r.Ok.remaining) };
        }
    }
}

async function copyBatch(
    span: SpanMove,
    cursor: CopyCursor | null,
    from: string,
    to: string
): Promise<StepOutcome> {
    // The loans pass through as the bytes the source wrote (`OpaqueValue`), unread.
    const exported = await callShard<PassedBatch>(
        from,
        'export_slot_batch',
        [
            spanArg(span),
            cursor === null ? [] : [{ slot: cursor.slot, seq: BigInt(cursor.seq) }],
            MIGRATION_BATCH_LOANS
        ],
        Loan
    );
    if ('Err' in exported) return errorOutcome(describe(exported.Err));
    const batch = exported.Ok;
    // A slot that never handed out an id has next_seq 1, which the target starts with anyway.
    const seqs = batch.slot_seqs.filter((s) => s.next_seq > 1n);
    if (batch.loans.length > 0 || seqs.length > 0) {
        const imported = await importInto(to, batch.loans, seqs);
        if ('Err' in imported) return errorOutcome(describe(imported.Err));
    }
    const next = batch.next_cursor[0];
    return {
        kind: 'Copied',
        loans: batch.loans.length,
        next_cursor: next === undefined ? null : { slot: next.slot, seq: Number(next.seq) }
    };
}

/** An export batch whose loans are passed on unread (or decoded, from another encoding). */
type PassedBatch = Omit<ExportBatch, 'loans'> & { loans: (Loan | OpaqueValue)[] };

function importInto(
    to: string,
    loans: (Loan | OpaqueValue)[],
    slot_seqs: { slot: number; next_seq: bigint }[]
): Promise<Result<ImportResult>> {
    return callShard<ImportResult>(to, 'import_loans', [loans, slot_seqs]);
}

async function catchUpBatch(from: string, to: string): Promise<StepOutcome> {
    const dirty = await callShard<Loan[]>(from, 'export_dirty_batch', [MIGRATION_BATCH_LOANS]);
    if ('Err' in dirty) return errorOutcome(describe(dirty.Err));
    const loans = dirty.Ok;
    if (loans.length > 0) {
        const imported = await importInto(to, loans, seqFloors(loans.map((l) => l.id)));
        if ('Err' in imported) return errorOutcome(describe(imported.Err));
    }
    const acked = await callShard<bigint>(from, 'ack_dirty', [
        loans.map((l) => ({ id: l.id, version: l.version }))
    ]);
    if ('Err' in acked) return errorOutcome(describe(acked.Err));
    return { kind: 'CaughtUp', loans: loans.length, remaining: Number(acked.Ok) };
}

async function verify(span: SpanMove, from: string, to: string): Promise<StepOutcome> {
    const [source, target] = await Promise.all([
        callShard<SpanChecksum>(from, 'span_checksum', [spanArg(span)]),
        callShard<SpanChecksum>(to, 'span_checksum', [spanArg(span)])
    ]);
    if ('Err' in source) return errorOutcome(describe(source.Err));
    if ('Err' in target) return errorOutcome(describe(target.Err));
    const equal = source.Ok.count === target.Ok.count && source.Ok.checksum === target.Ok.checksum;
    const detail =
        `span ${span.start}..=${span.end}: source ${source.Ok.count} loans ` +
        `(${source.Ok.checksum}), target ${target.Ok.count} (${target.Ok.checksum})`;
    return { kind: 'Verified', equal, detail };
}

/** Gives the span to its target in the slot map (epoch + 1) and tells the router. */
async function flip(span: SpanMove): Promise<StepOutcome> {
    const stored = getSlotRanges();
    if (stored === null) return errorOutcome('no slot map');
    const change = assignSpan(stored.epoch, stored.ranges, span.start, span.end, span.to);
    if (!change.ok) return errorOutcome(`slot map refused: ${change.error.kind}`);
    if (change.value.moved === 0) return { kind: 'Applied' }; // flipped before a retry
    // Every slot still owned exactly once (a cheap check on the ranges, native fills).
    const valid = fromRanges(change.value.epoch, change.value.ranges);
    if (!valid.ok) return errorOutcome(`slot map refused: ${valid.error.kind}`);
    setSlotRanges(change.value.epoch, change.value.ranges);
    const router = getRouter();
    if (router !== null) {
        const pushed = await pushRoutingTable(router, routingTable());
        if ('Err' in pushed) {
            log(canisterSelf(), 'router_push_failed', describe(pushed.Err));
        }
    }
    return { kind: 'Applied' };
}
