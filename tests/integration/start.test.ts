/**
 * The main job (`npm start`) in-process with a small workload: 2 shards provisioned through the
 * factory, one automatic scale-out with its migration under load, one shard stopped and restarted;
 * every invariant check must hold and the report must have every part the issue lists.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { IDL } from '@dfinity/candid';

import { identityFromPem } from '../../scripts/deploy';
import { operatorKey, parseArgs } from '../../scripts/start';
import {
    coverage,
    DEFAULT_MAIN_JOB,
    okOutcome,
    READ_OK,
    runMainJob,
    scaleOutLimit
} from '../../scripts/lib/main_job';
import { formatReport, reportJson, type Report } from '../../scripts/lib/report';
import { Workload } from '../../scripts/lib/workload';
import { slotOf } from '../../src/shared/hash';
import { SLOT_COUNT } from '../../src/shared/limits';
import { idlFactory as routerIdl } from '../../src/declarations/router/router.did.js';
import { addShard } from '../../src/shared/slot_map';
import type { RoutingTable } from '../../src/shared/types';
import { principalOf } from './support';

const LOANS = 120;

describe('npm start (the main job), small workload', () => {
    let report: Report;

    beforeAll(async () => {
        report = await runMainJob({
            ...DEFAULT_MAIN_JOB,
            loans: LOANS,
            farmers: 30,
            investors: 12,
            shards: 2,
            seed: 7,
            faults: true,
            countInstructions: true
        });
    }, 600_000);

    afterAll(() => {
        if (report !== undefined && !report.ok) console.log(formatReport(report));
    });

    it('passes every invariant check', () => {
        const failed = report.checks.filter((c) => !c.ok);
        expect(failed).toEqual([]);
        expect(report.checks.map((c) => c.name)).toEqual([
            'every write acknowledged',
            'reads during the run match the acknowledged content',
            'every slot owned exactly once',
            'every acknowledged loan read back with identical content',
            "the busiest farmers' loans through the router",
            'totals equal',
            'automatic scale-out with a live migration under load',
            'stopped shard: its breaker opened and closed again'
        ]);
        expect(report.ok).toBe(true);
    });

    it('wrote every loan through the router, with updates and reads', () => {
        expect(report.workload.loans).toBe(LOANS);
        expect(report.workload.updates).toBeGreaterThan(0);
        expect(report.workload.reads).toBeGreaterThan(0);
    });

    it('lists every shard: 2 provisioned (asia, europe) and 1 from the scale-out', () => {
        expect(report.shards.map((s) => s.region)).toEqual(['asia', 'europe', 'asia']);
        expect(report.shards.reduce((sum, s) => sum + s.slots, 0)).toBe(SLOT_COUNT);
        // The calibration loan of the per-operation figures is stored too.
        expect(report.shards.reduce((sum, s) => sum + s.loans, 0)).toBe(LOANS + 1);
        for (const s of report.shards) {
            expect(s.breaker).toBe('Closed');
            expect(BigInt(s.cycles)).toBeGreaterThan(0n);
            expect(s.storage_bytes).toBeGreaterThan(0);
        }
    });

    it('scaled out once, migrating under load, and the epoch moved on', () => {
        expect(report.scale_outs).toBe(1);
        const scaleOut = report.migrations.filter((m) => m.reason === 'scale_out');
        expect(scaleOut).toHaveLength(1);
        expect(scaleOut[0].phase).toBe('Done');
        expect(scaleOut[0].rounds).toBeGreaterThan(0);
        expect(report.routing_epoch.router).toBe(report.routing_epoch.factory);
        expect(BigInt(report.routing_epoch.factory)).toBeGreaterThan(1n);
    });

    it('stopped a shard: its breaker opened, calls were refused, then it closed', () => {
        const events = report.faults.events.filter(
            (e) => e.shard_id === report.faults.stopped_shard
        );
        const states = events.map((e) => e.state);
        expect(states).toContain('Open');
        expect(states[states.length - 1]).toBe('Closed');
        expect(Number(report.balancer.rejected_by_breaker)).toBeGreaterThan(0);
        expect(report.workload.retried_writes).toBeGreaterThan(0);
    });

    it('reports balancer, cache and per-operation figures', () => {
        expect(Number(report.balancer.total_requests)).toBeGreaterThan(LOANS);
        expect(Number(report.cache.hits) + Number(report.cache.misses)).toBeGreaterThan(0);
        const ops = new Map(report.operations.map((o) => [o.operation, o]));
        const create = ops.get('create_loan (router → shard)')!;
        expect(create.rounds).toBe(1);
        expect(create.instructions).toBeGreaterThan(0);
        const miss = ops.get('farmer dashboard, cache miss (update)')!;
        const hit = ops.get('farmer dashboard, cache hit (update)')!;
        expect(hit.messages).toBe(1);
        expect(hit.instructions).toBeLessThan(miss.instructions);
        expect(report.methods.length).toBeGreaterThan(0);
    });

    it('prints the report and writes it as JSON', () => {
        const text = formatReport(report);
        for (const part of [
            'Shards',
            'Routing epoch',
            'Migrations',
            'Balancer',
            'Cache',
            'Per operation'
        ]) {
            expect(text).toContain(part);
        }
        expect(text).toContain('All checks passed.');
        const json = JSON.parse(reportJson(report)) as Report;
        expect(json.ok).toBe(true);
        expect(json.shards).toHaveLength(3);
    });
});

describe('main job helpers', () => {
    it('tells an Ok dashboard or analytics reply from an error without decoding it', () => {
        const service = routerIdl({ IDL });
        const retTypes = (name: string): IDL.Type[] =>
            (service._fields.find(([n]) => n === name)![1] as IDL.FuncClass).retTypes;
        const farmer = principalOf('farmer');
        const dashboard = {
            farmer,
            loans: [],
            total_loans: 3n,
            active_loans: 1n,
            total_borrowed: 10n,
            total_repaid: 2n,
            outstanding_balance: 8n,
            by_status: [{ status: { Active: null }, count: 1n }],
            complete: true,
            failed_shards: [],
            generated_at: 5n
        };
        const ok = new Uint8Array(
            IDL.encode(retTypes('get_farmer_dashboard_advanced'), [{ Ok: dashboard }])
        );
        const err = new Uint8Array(
            IDL.encode(retTypes('get_farmer_dashboard_advanced'), [
                { Err: { ShardUnavailable: { shard_id: 2, reason: 'breaker open' } } }
            ])
        );
        const outcome = okOutcome('get_farmer_dashboard_advanced');
        expect(outcome(ok)).toBe(READ_OK);
        expect(outcome(err)).toBeUndefined();
        // Another method's Ok reply (another type table) is left to IDL.decode.
        expect(okOutcome('get_system_analytics')(ok)).toBeUndefined();
        expect(outcome(ok.subarray(0, 8))).toBeUndefined();
    });

    it('parses the flags and refuses bad ones', () => {
        const args = parseArgs([
            '--loans',
            '500',
            '--shards',
            '3',
            '--no-faults',
            '--json',
            'r.json'
        ]);
        expect(args.job).toMatchObject({ loans: 500, shards: 3, faults: false });
        expect(args.json).toBe('r.json');
        expect(args.serve).toBeNull();
        expect(parseArgs(['--serve', '--port', '0', '--workload']).serve).toEqual({
            port: 0,
            state: null,
            workload: true
        });
        expect(() => parseArgs(['--loans', '0'])).toThrow(/--loans/);
        expect(() => parseArgs(['--loans', 'x'])).toThrow(/--loans/);
        expect(() => parseArgs(['--bogus'])).toThrow(/unknown option/);
        expect(() => parseArgs(['--shards', '1'])).toThrow(/faults need at least 2 shards/);
        expect(() => parseArgs(['--workload'])).toThrow(/--serve/);
        // The default is the scale; a flag overrides one figure only.
        expect(parseArgs(['--loans', '700']).job).toMatchObject({
            loans: 700,
            farmers: 2_000,
            investors: 300
        });
        expect(() => parseArgs(['--full-scale'])).toThrow(/unknown option/);
    });

    it("makes the served network's operator key once, readable only by its owner", () => {
        const dir = mkdtempSync(join(tmpdir(), 'operator-'));
        const first = operatorKey(dir);
        expect(statSync(first.pemFile).mode & 0o777).toBe(0o600);
        const again = operatorKey(dir);
        expect(again.principal.toText()).toBe(first.principal.toText());
        const pem = readFileSync(first.pemFile, 'utf8');
        expect(identityFromPem(pem).getPrincipal().toText()).toBe(first.principal.toText());
        expect(operatorKey(mkdtempSync(join(tmpdir(), 'operator-'))).principal.toText()).not.toBe(
            first.principal.toText()
        );
    });

    it('finds unowned and doubly owned slots in a routing table', () => {
        const shards = [1, 2].map((shard_id) => ({
            shard_id,
            canister_id: principalOf(`s${shard_id}`),
            region: 'asia'
        }));
        const table = (ranges: [number, number, number][]): RoutingTable => ({
            epoch: 1n,
            shards,
            ranges: ranges.map(([start, end, shard_id]) => ({ start, end, shard_id }))
        });
        expect(
            coverage(
                table([
                    [0, 8191, 1],
                    [8192, SLOT_COUNT - 1, 2]
                ])
            )
        ).toEqual({
            gaps: 0,
            overlaps: 0,
            bad: 0
        });
        expect(
            coverage(
                table([
                    [0, 8190, 1],
                    [8192, SLOT_COUNT - 1, 2]
                ])
            ).gaps
        ).toBe(1);
        expect(
            coverage(
                table([
                    [0, 8192, 1],
                    [8192, SLOT_COUNT - 1, 2]
                ])
            ).overlaps
        ).toBe(1);
        expect(
            coverage(
                table([
                    [0, 8191, 1],
                    [8192, SLOT_COUNT - 1, 3]
                ])
            ).bad
        ).toBe(1);
    });

    it("plans max_loans_per_shard above the new shard's final load, with a trigger during the run", () => {
        const w = new Workload({ loans: 2_000, farmers: 200, investors: 10, seed: 3 });
        const creates = w.nextBatch(2_000, 0, 0).creates;
        const shards = [1, 2].map((shard_id) => ({
            shard_id,
            canister_id: principalOf(`s${shard_id}`),
            region: 'asia'
        }));
        const table: RoutingTable = {
            epoch: 2n,
            shards,
            ranges: [
                { start: 0, end: 8191, shard_id: 1 },
                { start: 8192, end: SLOT_COUNT - 1, shard_id: 2 }
            ]
        };
        const plan = scaleOutLimit(creates, table, 3);
        // The new shard must stay under the limit it is created with, to the end of the run.
        const owners = new Uint32Array(SLOT_COUNT).fill(1, 0, 8192).fill(2, 8192);
        const after = addShard({ epoch: 2n, owners }, 3);
        if (!after.ok) throw new Error(after.error.kind);
        const newShardLoans = creates.filter(
            (c) => after.value.map.owners[slotOf(c.borrower.toUint8Array())] === 3
        ).length;
        expect(newShardLoans).toBeGreaterThan(0);
        expect(plan.limit).toBeGreaterThan(newShardLoans);
        // The trigger: some old shard passes 80% of the limit before the last loan.
        const threshold = Math.floor((plan.limit * 80) / 100);
        const perShard = [0, 0, 0];
        const at = creates.findIndex((c) => {
            const shard = owners[slotOf(c.borrower.toUint8Array())];
            perShard[shard] += 1;
            return perShard[shard] > threshold;
        });
        expect(plan.trigger_at).toBe((at + 1) / creates.length);
    });
});
