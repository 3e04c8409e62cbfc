import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalIc } from '../src/local_ic';
import { createTestIc, type TestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import type { CounterService } from './fixtures/idl';
import {
    type ActorControls,
    EMPTY_ARGS,
    expectReject,
    fixtureWasms,
    hasCapability,
    install,
    OWNER
} from './support';

/** About 1,600 instructions per round of `burn`: these straddle the 5 B and 40 B limits. */
const QUERY_OVER_LIMIT_ROUNDS = 4_000_000;
const UPDATE_OVER_LIMIT_ROUNDS = 30_000_000;
const UNDER_LIMIT_ROUNDS = 1_000_000;
const SEED = 42;

type TraceEntry = ReturnType<TestIc['getMessageTrace']>[number];

/** Runs the same script of messages on a fresh counting instance; returns its trace. */
async function scriptedRun(wasms: Record<FixtureName, Uint8Array>): Promise<TraceEntry[]> {
    const ic = await createTestIc({ countInstructions: true, seed: SEED });
    try {
        const { actor } = await install(ic, wasms, 'counter');
        await actor.inc();
        await actor.put('key', 'value');
        await actor.inc();
        await ic.advanceTime(1_000);
        await ic.tick(2);
        return ic.getMessageTrace();
    } finally {
        await ic.tearDown();
    }
}

describe('instruction counting mode', () => {
    let ic: TestIc;
    let wasms: Record<FixtureName, Uint8Array>;
    let counter: CounterService & ActorControls;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await createTestIc({ countInstructions: true, seed: SEED });
        ({ actor: counter } = await install(ic, wasms, 'counter'));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('counts a trivial update at about 1.3 M instructions', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        ic.clearMessageTrace();
        await counter.inc();
        // The fixture has canister_inspect_message: skip its trace entry, keep the update's.
        const entry = ic
            .getMessageTrace()
            .find((e) => e.method === 'inc' && e.kind === 'ingress' && e.detail === undefined);
        expect(entry).toBeDefined();
        expect(entry?.instructions).toBeGreaterThan(300_000n);
        expect(entry?.instructions).toBeLessThan(10_000_000n);
    });

    it('answers performance_counter from the instruction count', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        const small = await counter.burn(1_000);
        const large = await counter.burn(UNDER_LIMIT_ROUNDS);
        expect(small).toBeGreaterThan(0n);
        expect(large).toBeGreaterThan(small * 100n);
        expect(large).toBeLessThan(40_000_000_000n);
    });

    it('counts the same instructions for every message in two runs with the same seed', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        const [first, second] = [await scriptedRun(wasms), await scriptedRun(wasms)];
        const counts = (trace: TraceEntry[]): string[] =>
            trace.map((e) => `${e.kind} ${e.method} ${e.instructions}`);
        expect(first.length).toBeGreaterThan(3);
        expect(first.some((e) => e.instructions > 0n)).toBe(true);
        expect(counts(first)).toEqual(counts(second));
    });

    it('rejects a query over the 5 B instruction limit', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        await expectReject(counter.burn_query(QUERY_OVER_LIMIT_ROUNDS), 5);
        expect(await counter.burn_query(UNDER_LIMIT_ROUNDS)).toBeGreaterThan(0n);
    });

    it('rejects an update over the 40 B instruction limit and keeps serving calls', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        const before = await counter.get();
        await expectReject(counter.burn(UPDATE_OVER_LIMIT_ROUNDS), 5);
        expect(await counter.get()).toBe(before);
        expect(await counter.inc()).toBe(before + 1n);
    });

    it('keeps StableBTreeMap entries across two upgrades of an instrumented canister', async (ctx) => {
        if (!hasCapability(ic, 'instructionCounting', ctx.skip)) return;
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        await actor.put('loan-1', 'farmer-a');
        await actor.put('loan-2', 'farmer-b');
        for (let upgrade = 1; upgrade <= 2; upgrade++) {
            await ic.upgradeCanister({
                canisterId,
                wasm: wasms.counter,
                arg: EMPTY_ARGS,
                sender: OWNER
            });
            expect(await actor.lookup('loan-1')).toEqual(['farmer-a']);
            expect(await actor.lookup('loan-2')).toEqual(['farmer-b']);
            expect(await actor.lookup('post_upgrade_runs')).toEqual([String(upgrade)]);
        }
    });
});

describe('switching instruction counting between calls (emulator only)', () => {
    let ic: LocalIc;
    let wasms: Record<FixtureName, Uint8Array>;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await LocalIc.create({ seed: SEED });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('answers performance_counter with a growing estimate when counting is off', async () => {
        const { actor } = await install(ic as unknown as TestIc, wasms, 'counter');
        const small = await actor.burn(1_000);
        const large = await actor.burn(UNDER_LIMIT_ROUNDS);
        expect(small).toBeGreaterThan(0n);
        expect(large).toBeGreaterThan(small);
        expect(ic.getMessageTrace().every((e) => e.instructions === 0n)).toBe(true);
    });

    it('keeps heap, globals and stable memory across switches and counts only while on', async () => {
        const { actor, canisterId } = await install(ic as unknown as TestIc, wasms, 'counter');
        await actor.inc();
        await actor.inc();
        await actor.put('loan-1', 'farmer-a');
        expect(ic.capabilities.instructionCounting).toBe(false);

        ic.setInstructionCounting(true);
        expect(ic.capabilities.instructionCounting).toBe(true);
        ic.clearMessageTrace();
        expect(await actor.get()).toBe(2n);
        expect(await actor.inc()).toBe(3n);
        expect(await actor.lookup('loan-1')).toEqual(['farmer-a']);
        const counted = ic
            .getMessageTrace()
            .find((e) => e.method === 'inc' && e.kind === 'ingress' && e.detail === undefined);
        expect(counted?.instructions).toBeGreaterThan(300_000n);
        // The limits hold again: an update over 40 B instructions is rejected, state unchanged.
        await expectReject(actor.burn(UPDATE_OVER_LIMIT_ROUNDS), 5);
        expect(await actor.get()).toBe(3n);

        ic.setInstructionCounting(false);
        ic.clearMessageTrace();
        expect(await actor.inc()).toBe(4n);
        await actor.put('loan-2', 'farmer-b');
        expect(ic.getMessageTrace().every((e) => e.instructions === 0n)).toBe(true);

        // An upgrade in between still finds its stable data, and counting can come back.
        await ic.upgradeCanister({
            canisterId,
            wasm: wasms.counter,
            arg: EMPTY_ARGS,
            sender: OWNER
        });
        ic.setInstructionCounting(true);
        expect(await actor.lookup('loan-1')).toEqual(['farmer-a']);
        expect(await actor.lookup('loan-2')).toEqual(['farmer-b']);
        // The heap counter starts again after the upgrade (the fixture keeps it on the heap).
        expect(await actor.inc()).toBe(1n);
        ic.setInstructionCounting(false);
    });
});
