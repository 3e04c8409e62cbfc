import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import type { _SERVICE as ShardService } from '../../src/declarations/data_shard/data_shard.did';
import { idlFactory } from '../../src/declarations/data_shard/data_shard.did.js';
import { createTestIc, type TestIc } from '../../emulator/harness';
import type { Actor } from '../../emulator';
import { hash64, slotOf } from '../../src/shared/hash';
import { encodeLoanValue } from '../../src/shared/loan_codec';
import { decodeLoanId } from '../../src/shared/loan_id';
import { ExportBatch, ExportCursor, ShardInit, ShardLoanPage } from '../../src/shared/shard_api';
import { SLOT_COUNT } from '../../src/shared/limits';
import { Loan, NewLoan, Result, type Result as ResultOf } from '../../src/shared/types';
import {
    ADMIN,
    ANONYMOUS,
    application,
    encodeArgs,
    err,
    FACTORY,
    ok,
    ROUTER,
    STRANGER,
    user,
    usersWhere,
    wasmOf
} from './support';

type Shard = Actor<ShardService>;

const HALF = SLOT_COUNT / 2;

function initArg(shard_id: number, slots: { start: number; end: number }[]): Uint8Array {
    return encodeArgs(
        [IDL.Opt(ShardInit)],
        [
            [
                {
                    shard_id,
                    factory: FACTORY,
                    router: [ROUTER],
                    slots: slots.map((r) => ({ ...r, shard_id })),
                    epoch: 1n,
                    max_loans: 100_000n,
                    storage_capacity_bytes: 1_000_000_000n
                }
            ]
        ]
    );
}

describe('data shard', () => {
    let ic: TestIc;
    let wasm: Uint8Array;
    let low: Shard; // owns slots [0, 8192)
    let lowId: Principal;
    let spare: Shard; // owns nothing: a migration target

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        wasm = await wasmOf('data_shard');
        ({ actor: low, canisterId: lowId } = await ic.setupCanister<ShardService>({
            idlFactory,
            wasm,
            arg: initArg(1, [{ start: 0, end: HALF - 1 }]),
            sender: ADMIN,
            controllers: [ADMIN]
        }));
        ({ actor: spare } = await ic.setupCanister<ShardService>({
            idlFactory,
            wasm,
            arg: initArg(2, []),
            sender: ADMIN,
            controllers: [ADMIN]
        }));
        low.setPrincipal(ROUTER);
        spare.setPrincipal(FACTORY);
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('assigns ids slot << 48 | seq in the borrower slot and reads them back', async () => {
        const [farmer] = usersWhere(1, (s) => s < HALF);
        const first = ok(await low.create_loan(application(farmer, 1)));
        const second = ok(await low.create_loan(application(farmer, 2)));
        const slot = slotOf(farmer.toUint8Array());
        expect(decodeLoanId(first.id)).toEqual({ ok: true, value: { slot, seq: 1 } });
        expect(decodeLoanId(second.id)).toEqual({ ok: true, value: { slot, seq: 2 } });
        expect(first.status).toEqual({ PendingApplication: null });
        expect(ok(await low.get_loan(second.id))).toEqual(second);
    });

    it('takes an argument in any valid Candid encoding, not only the common one', async () => {
        const [farmer] = usersWhere(1, (s) => s < HALF);
        // An extra trailing argument: valid Candid the hand decoder declines, so IDL.decode runs.
        const arg = encodeArgs([NewLoan, IDL.Nat], [application(farmer, 7), 1n]);
        const reply = await ic.updateCall({
            canisterId: lowId,
            method: 'create_loan',
            arg,
            sender: ROUTER
        });
        const loan = ok(IDL.decode([Result(Loan)], reply)[0] as unknown as ResultOf<Loan>);
        expect(loan.borrower.toText()).toBe(farmer.toText());
        expect(loan.nft_id).toBe(7n);
        expect(ok(await low.get_loan(loan.id))).toEqual(loan);
    });

    it('answers WrongShard for a borrower whose slot it does not own, writing nothing', async () => {
        const [farmer] = usersWhere(1, (s) => s >= HALF);
        const before = ok(await low.get_shard_stats()).loan_count;
        const error = err(await low.create_loan(application(farmer)));
        expect(error).toEqual({ WrongShard: { slot: slotOf(farmer.toUint8Array()), epoch: 1n } });
        expect(ok(await low.get_shard_stats()).loan_count).toBe(before);
    });

    it('pages a borrower by cursor in id order, and indexes investors and statuses', async () => {
        const farmer = usersWhere(3, (s) => s < HALF)[2];
        const investor = user(900_001);
        const ids: bigint[] = [];
        for (let i = 0; i < 7; i++) ids.push(ok(await low.create_loan(application(farmer, i))).id);
        const seen: bigint[] = [];
        let cursor: [] | [bigint] = [];
        for (let pages = 0; pages < 10; pages++) {
            const page: ShardLoanPage = ok(await low.get_loans_by_borrower(farmer, cursor, [3]));
            seen.push(...page.loans.map((l) => l.id));
            if (page.next_cursor.length === 0) break;
            cursor = page.next_cursor;
        }
        expect(seen).toEqual(ids);

        ok(await low.update_loan(ids[0], { SubmitForApproval: null }));
        ok(await low.update_loan(ids[0], { Approve: { amount_approved: 500n } }));
        ok(await low.update_loan(ids[0], { Fund: { investor, amount: 500n } }));
        const funded = ok(await low.get_loans_by_investor(investor, [], []));
        expect(funded.loans.map((l) => l.id)).toEqual([ids[0]]);
        const approved = ok(await low.get_loans_by_status({ Approved: null }, [], [500]));
        expect(approved.loans.map((l) => l.id)).toContain(ids[0]);
        const pending = ok(await low.get_loans_by_status({ PendingApplication: null }, [], [500]));
        expect(pending.loans.map((l) => l.id)).not.toContain(ids[0]);
    });

    it('rejects bad input with InvalidInput or NotFound and changes nothing', async () => {
        const [farmer] = usersWhere(1, (s) => s < HALF);
        const stats = ok(await low.get_shard_stats());
        const bad = { ...application(farmer), amount_requested: 0n };
        expect(err(await low.create_loan(bad))).toMatchObject({
            InvalidInput: { field: 'amount_requested' }
        });
        expect(err(await low.get_loans_by_borrower(farmer, [], [0]))).toMatchObject({
            InvalidInput: { field: 'limit' }
        });
        expect(err(await low.get_loans_by_borrower(farmer, [], [501]))).toMatchObject({
            InvalidInput: { field: 'limit' }
        });
        expect(err(await low.update_loan(1n << 63n, { Activate: null }))).toMatchObject({
            InvalidInput: { field: 'id' }
        });
        const unknown = (BigInt(slotOf(farmer.toUint8Array())) << 48n) | 999_999n;
        expect(err(await low.update_loan(unknown, { Activate: null }))).toMatchObject({
            NotFound: { what: 'loan' }
        });
        expect(ok(await low.get_shard_stats())).toEqual(stats);
    });

    it('lets only the factory and router write, and only them or controllers read', async () => {
        const [farmer] = usersWhere(1, (s) => s < HALF);
        const shard = ic.createActor<ShardService>(idlFactory, lowId);
        for (const caller of [ANONYMOUS, STRANGER, farmer]) {
            shard.setPrincipal(caller);
            expect(await shard.create_loan(application(farmer))).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await shard.get_loans_by_borrower(farmer, [], [])).toEqual({
                Err: { NotAuthorized: null }
            });
            expect(await shard.set_read_only(true)).toEqual({ Err: { NotAuthorized: null } });
        }
        shard.setPrincipal(ADMIN); // a controller may read
        expect('Ok' in (await shard.get_shard_metrics())).toBe(true);
        shard.setPrincipal(ROUTER); // the router may not run the migration surface
        expect(await shard.set_slot_state({ start: 0, end: 0 }, { Released: null }, 2n)).toEqual({
            Err: { NotAuthorized: null }
        });
        expect(await shard.export_slot_batch({ start: 0, end: 0 }, [], 10)).toEqual({
            Err: { NotAuthorized: null }
        });
    });

    it('moves a span to another shard with equal checksums, catching up writes made meanwhile', async () => {
        const target = usersWhere(4, (s) => s < HALF)[3];
        const slot = slotOf(target.toUint8Array());
        const span = { start: Math.max(0, slot - 3), end: slot };
        for (let i = 0; i < 5; i++) ok(await low.create_loan(application(target, i)));
        const source = ic.createActor<ShardService>(idlFactory, lowId);
        source.setPrincipal(FACTORY);

        ok(await spare.set_slot_state(span, { Importing: null }, 2n));
        ok(await source.set_slot_state(span, { Migrating: null }, 2n));
        let cursor: [] | [ExportCursor] = [];
        for (let batches = 0; batches < 100; batches++) {
            const batch: ExportBatch = ok(await source.export_slot_batch(span, cursor, 2));
            ok(await spare.import_loans(batch.loans, batch.slot_seqs));
            if (batch.next_cursor.length === 0) break;
            cursor = batch.next_cursor;
        }
        // A write during the copy: caught up through the dirty set.
        const written = ok(await low.create_loan(application(target, 99)));
        ok(await source.set_slot_state(span, { Frozen: null }, 2n));
        expect(err(await low.create_loan(application(target, 100)))).toMatchObject({
            ReadOnly: { retriable: true }
        });
        for (let rounds = 0; rounds < 100; rounds++) {
            const dirty = ok(await source.export_dirty_batch(100));
            if (dirty.length === 0) break;
            ok(await spare.import_loans(dirty, []));
            ok(await source.ack_dirty(dirty.map((l) => ({ id: l.id, version: l.version }))));
        }
        expect(ok(await spare.span_checksum(span))).toEqual(ok(await source.span_checksum(span)));

        ok(await spare.set_slot_state(span, { Owned: null }, 3n));
        ok(await source.set_slot_state(span, { Released: null }, 3n));
        expect(err(await low.create_loan(application(target, 101)))).toEqual({
            WrongShard: { slot, epoch: 3n }
        });
        expect(ok(await spare.get_loan(written.id))).toEqual(written);
        // The sequence counter moved with the slot: the next id continues after the copied ones.
        const next = ok(await spare.create_loan(application(target, 102)));
        expect(next.id).toBe(written.id + 1n);

        for (let batches = 0; batches < 100; batches++) {
            const { remaining } = ok(await source.delete_slot_batch(span, 2));
            if (remaining === 0n) break;
        }
        expect(ok(await source.span_checksum(span))).toEqual({ count: 0n, checksum: 0n });
        expect(err(await low.get_loan(written.id))).toMatchObject({ NotFound: {} });
        const moved = ok(await spare.get_loans_by_borrower(target, [], []));
        expect(moved.loans.map((l) => l.id)).toContain(written.id);
    });

    it('refuses an illegal slot transition and changes no slot of the span', async () => {
        expect(
            err(await spare.set_slot_state({ start: 5, end: 6 }, { Released: null }, 3n))
        ).toMatchObject({ InvalidInput: { field: 'state' } });
        expect(
            err(await spare.set_slot_state({ start: 7, end: 6 }, { Importing: null }, 3n))
        ).toMatchObject({ InvalidInput: { field: 'span' } });
    });

    it("keeps each slot checksum the sum of its loans' hashes through writes and an upgrade", async () => {
        const [farmer] = usersWhere(1, (s) => s < HALF && s % 7 === 3);
        const slot = slotOf(farmer.toUint8Array());
        const span = { start: slot, end: slot };
        const investor = user(900_002);
        const factory = ic.createActor<ShardService>(idlFactory, lowId);
        factory.setPrincipal(FACTORY);
        /** Count and checksum recomputed outside the shard from the loans it exports. */
        const expected = async (): Promise<{ count: bigint; checksum: bigint }> => {
            const batch: ExportBatch = ok(await factory.export_slot_batch(span, [], 100));
            expect(batch.next_cursor).toEqual([]);
            let checksum = 0n;
            for (const loan of batch.loans) checksum += hash64(encodeLoanValue(loan));
            return { count: BigInt(batch.loans.length), checksum: BigInt.asUintN(64, checksum) };
        };
        const ids: bigint[] = [];
        for (let i = 0; i < 3; i++) ids.push(ok(await low.create_loan(application(farmer, i))).id);
        for (const id of ids) {
            ok(await low.update_loan(id, { SubmitForApproval: null }));
            ok(await low.update_loan(id, { Approve: { amount_approved: 500_000n } }));
        }
        ok(await low.update_loan(ids[0], { Fund: { investor, amount: 200_000n } }));
        expect(ok(await factory.span_checksum(span))).toEqual(await expected());

        // The heap copies are gone after an upgrade: the next writes read stable memory only.
        await ic.upgradeCanister({ canisterId: lowId, wasm, arg: initArg(1, []), sender: ADMIN });
        ok(await low.update_loan(ids[0], { Fund: { investor, amount: 300_000n } }));
        ok(await low.update_loan(ids[0], { Activate: null }));
        ok(await low.update_loan(ids[1], { Fund: { investor, amount: 500_000n } }));
        // A refused write (not funded) changes nothing, the checksum included.
        expect(err(await low.update_loan(ids[2], { Activate: null }))).toMatchObject({
            InvalidInput: { field: 'status' }
        });
        expect(ok(await factory.span_checksum(span))).toEqual(await expected());
        const held = ok(await factory.export_slot_batch(span, [], 100)).loans.map((l) => l.id);
        expect(held).toEqual(expect.arrayContaining(ids));
        const active = ok(await low.get_loans_by_status({ Active: null }, [], []));
        expect(active.loans.map((l) => l.id)).toContain(ids[0]);
        const funded = ok(await low.get_loans_by_investor(investor, [], []));
        expect(funded.loans.map((l) => l.id).sort()).toEqual([ids[0], ids[1]].sort());
    });

    it('keeps every loan, index and counter across an upgrade', async () => {
        const source = ic.createActor<ShardService>(idlFactory, lowId);
        source.setPrincipal(ADMIN);
        const before = ok(await source.get_shard_stats());
        const [farmer] = usersWhere(1, (s) => s < HALF);
        const page = ok(await source.get_loans_by_borrower(farmer, [], []));
        await ic.upgradeCanister({ canisterId: lowId, wasm, arg: initArg(1, []), sender: ADMIN });
        expect(ok(await source.get_shard_stats())).toEqual(before);
        expect(ok(await source.get_loans_by_borrower(farmer, [], []))).toEqual(page);
    });
});
