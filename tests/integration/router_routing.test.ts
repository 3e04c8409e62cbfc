import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../../emulator/harness';
import { slotOf } from '../../src/shared/hash';
import type { ExportBatch, ExportCursor } from '../../src/shared/shard_api';
import type { Loan, RoutingTable } from '../../src/shared/types';
import { ADMIN, application, err, FACTORY, ok, usersWhere, wasmOf } from './support';
import {
    deploy,
    routerAs,
    routerInitArg,
    type Deployment,
    type Router
} from './fixtures/router_fixture';
import { routerIdl } from './fixtures/router_fixture';
import { observable } from './capabilities';

/** Slots 7168..=8191 move from shard 1 (owner of 0..=8191) to shard 2. */
const SPAN = { start: 7_168, end: 8_191 };
const inSpan = (slot: number) => slot >= SPAN.start && slot <= SPAN.end;

describe('router with a stale routing table', () => {
    let ic: TestIc;
    /** Another router canister acting as the factory's table service (`get_routing_table`). */
    let source: Router;
    let d: Deployment;
    const before: Loan[] = [];

    beforeAll(async () => {
        ic = await createTestIc({ countInstructions: true });
        const sourceId = await ic.createCanister({ sender: ADMIN, controllers: [ADMIN] });
        await ic.installCode({
            canisterId: sourceId,
            wasm: await wasmOf('router'),
            arg: routerInitArg({ shardCount: 0 }),
            sender: ADMIN
        });
        source = ic.createActor(routerIdl, sourceId);
        source.setPrincipal(FACTORY);
        d = await deploy(ic, { shardCount: 2, factory: sourceId, pushTable: false });
        ok(await source.update_routing_table(d.table));
        ok(await routerAs(ic, d.routerId, ADMIN).refresh_routing_table());
        for (const farmer of usersWhere(6, inSpan)) {
            before.push(ok(await d.router.create_loan(application(farmer, 1))));
        }
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('pulls the table from the factory on refresh', async () => {
        expect(await d.router.get_routing_table()).toEqual(d.table);
        expect(
            ok(await routerAs(ic, d.routerId, ADMIN).get_load_balancer_stats()).routing_epoch
        ).toBe(1n);
    });

    it('retries a write to a frozen slot a bounded number of times, then says ReadOnly', async (ctx) => {
        const [low, high] = d.shards;
        ok(await high.actor.set_slot_state(SPAN, { Importing: null }, 2n));
        ok(await low.actor.set_slot_state(SPAN, { Migrating: null }, 2n));
        let cursor: [] | [ExportCursor] = [];
        for (let batches = 0; batches < 100; batches++) {
            const batch: ExportBatch = ok(await low.actor.export_slot_batch(SPAN, cursor, 100));
            ok(await high.actor.import_loans(batch.loans, batch.slot_seqs));
            if (batch.next_cursor.length === 0) break;
            cursor = batch.next_cursor;
        }
        ok(await low.actor.set_slot_state(SPAN, { Frozen: null }, 2n));

        const [farmer] = usersWhere(1, inSpan);
        // The next test builds on the frozen span, so this one runs everywhere; only the count
        // of attempts needs the trace.
        const traced = observable(ic, 'trace', ctx, 'the first call and 3 retries reach the shard');
        if (traced) ic.clearMessageTrace();
        expect(err(await d.router.create_loan(application(farmer, 2)))).toMatchObject({
            ReadOnly: { retriable: true }
        });
        if (traced) {
            const attempts = ic
                .getMessageTrace()
                .filter((t) => t.method === 'create_loan' && t.kind === 'request');
            expect(attempts.length).toBe(4); // the first call and 3 retries
        }
    });

    it('after the slots flip, writes every loan to the new owner: WrongShard → refresh → retry', async () => {
        const [low, high] = d.shards;
        for (let rounds = 0; rounds < 100; rounds++) {
            const dirty = ok(await low.actor.export_dirty_batch(100));
            if (dirty.length === 0) break;
            ok(await high.actor.import_loans(dirty, []));
            ok(await low.actor.ack_dirty(dirty.map((l) => ({ id: l.id, version: l.version }))));
        }
        expect(ok(await high.actor.span_checksum(SPAN))).toEqual(
            ok(await low.actor.span_checksum(SPAN))
        );
        ok(await high.actor.set_slot_state(SPAN, { Owned: null }, 2n));
        ok(await low.actor.set_slot_state(SPAN, { Released: null }, 2n));
        const flipped: RoutingTable = {
            ...d.table,
            epoch: 2n,
            ranges: [
                { start: 0, end: SPAN.start - 1, shard_id: low.shard_id },
                { start: SPAN.start, end: 16_383, shard_id: high.shard_id }
            ]
        };
        ok(await source.update_routing_table(flipped)); // the router still has epoch 1

        const created: Loan[] = [];
        for (const farmer of usersWhere(8, inSpan)) {
            created.push(ok(await d.router.create_loan(application(farmer, 3))));
        }
        expect(await d.router.get_routing_table()).toEqual(flipped);
        // An old loan is updated on its new shard, and every loan is there exactly once.
        const updated = ok(await d.router.update_loan(before[0].id, { SubmitForApproval: null }));
        expect(updated.version).toBe(before[0].version + 1n);
        for (const loan of [...before, ...created]) {
            expect(inSpan(slotOf(loan.borrower.toUint8Array()))).toBe(true);
            expect(ok(await high.actor.get_loan(loan.id)).id).toBe(loan.id);
            expect(ok(await d.router.route_loan_query(loan.id)).toText()).toBe(
                high.canisterId.toText()
            );
        }
        const ids = [...before, ...created].map((l) => l.id);
        expect(new Set(ids).size).toBe(ids.length);
        const span = ok(await high.actor.span_checksum(SPAN));
        expect(span.count).toBe(BigInt(ids.length));
    });
});
