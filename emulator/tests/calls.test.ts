import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import { type CallerService, counterIdl, type CounterService } from './fixtures/idl';
import {
    type ActorControls,
    EMPTY_ARGS,
    err,
    expectReject,
    fixtureWasms,
    hasCapability,
    install,
    ok,
    OWNER
} from './support';

type Counter = CounterService & ActorControls;

/** A canister id in a range no subnet of the emulator or PocketIC hands out. */
const MISSING_CANISTER = Principal.fromUint8Array(
    new Uint8Array([0x00, 0x00, 0x00, 0x00, 0x0f, 0xff, 0xff, 0xf0, 0x01, 0x01])
);

describe('inter-canister calls', () => {
    let ic: TestIc;
    let wasms: Record<FixtureName, Uint8Array>;
    let caller: CallerService & ActorControls;
    let callerId: Principal;
    const ids: Principal[] = [];
    const counters: Counter[] = [];
    let remoteId: Principal;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await createTestIc({ subnets: [{ region: 'europe' }, { region: 'asia' }] });
        const [home, away] = await ic.getApplicationSubnets();
        if (home === undefined || away === undefined) throw new Error('need two subnets');
        ({ actor: caller, canisterId: callerId } = await install(ic, wasms, 'caller', {
            targetSubnetId: home.id
        }));
        for (let i = 0; i < 3; i++) {
            const { actor, canisterId } = await install(ic, wasms, 'counter', {
                targetSubnetId: home.id
            });
            counters.push(actor);
            ids.push(canisterId);
        }
        ({ canisterId: remoteId } = await install(ic, wasms, 'counter', {
            targetSubnetId: away.id
        }));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    const counterAt = (i: number): Counter => {
        const counter = counters[i];
        if (counter === undefined) throw new Error(`no counter ${i}`);
        return counter;
    };
    const idAt = (i: number): Principal => {
        const id = ids[i];
        if (id === undefined) throw new Error(`no counter ${i}`);
        return id;
    };

    it('fans out to three callees with Promise.all and returns every reply', async () => {
        const before = await Promise.all(counters.map((c) => c.get()));
        const replies = Array.from(await caller.fan_out(ids));
        expect(replies).toEqual(before.map((n) => n + 1n));
        expect(await Promise.all(counters.map((c) => c.get()))).toEqual(replies);
    });

    it('sends all three fan-out requests before the first reply is processed', async (ctx) => {
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
        ic.clearMessageTrace();
        await caller.fan_out(ids);
        const trace = ic.getMessageTrace();
        const texts = ids.map((id) => id.toText());
        const requestIndexes = trace.flatMap((e, i) =>
            texts.includes(e.canister) && e.method === 'inc' ? [i] : []
        );
        const firstCallback = trace.findIndex(
            (e) => e.canister === callerId.toText() && e.kind === 'response'
        );
        expect(requestIndexes).toHaveLength(3);
        expect(firstCallback).toBeGreaterThan(-1);
        expect(Math.max(...requestIndexes)).toBeLessThan(firstCallback);
    });

    it("sees a callee trap as reject code 5 and leaves the callee's state unchanged", async () => {
        const before = await counterAt(0).get();
        const reject = err(await caller.call_nat(idAt(0), 'inc_then_trap'));
        expect(reject.code).toBe(5);
        expect(await counterAt(0).get()).toBe(before);
        expect(await counterAt(0).lookup('trapped')).toEqual([]);
    });

    it('rolls back an update that traps and rejects its ingress with code 5', async () => {
        const before = await counterAt(1).get();
        await expectReject(counterAt(1).inc_then_trap(), 5);
        expect(await counterAt(1).get()).toBe(before);
        expect(await counterAt(1).entry_count()).toBe(0n);
    });

    it('rolls back a trap after the message grew the Wasm memory', async () => {
        const counter = counterAt(1);
        const before = await counter.get();
        await expectReject(counter.grow_then_trap(64), 5);
        expect(await counter.ballast_bytes()).toBe(0n);
        expect(await counter.get()).toBe(before);
        expect(await counter.inc()).toBe(before + 1n);
    });

    it('commits the half before an await, rolls back the trapping continuation, runs cleanup', async () => {
        const counter = counterAt(2);
        const before = await counter.get();
        const cleanupsBefore = await counter.cleanup_runs();
        await expectReject(counter.trap_after_await(idAt(0)), 5);
        expect(await counter.get()).toBe(before + 1n);
        expect(await counter.cleanup_runs()).toBe(cleanupsBefore + 1n);
    });

    it('discards the state changes of a query', async () => {
        const before = await counterAt(0).get();
        expect(await counterAt(0).inc_in_query()).toBe(before + 1n);
        expect(await counterAt(0).inc_in_query()).toBe(before + 1n);
        expect(await counterAt(0).get()).toBe(before);
    });

    it('answers a composite query that reads callees on the same subnet', async () => {
        const expected = await Promise.all(counters.map((c) => c.get()));
        expect(Array.from(ok(await caller.sum_gets(ids)))).toEqual(expected);
    });

    it('rejects a composite query call to a canister on another subnet', async () => {
        const reject = err(await caller.sum_gets([idAt(0), remoteId]));
        // The replica answers the callback with a reject; its code is not pinned by the spec.
        expect([3, 5]).toContain(reject.code);
    });

    it('rejects calls to a stopped canister and serves them again once started', async () => {
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        expect(await actor.inc()).toBe(1n);
        await ic.stopCanister({ canisterId, sender: OWNER });
        await expectReject(actor.inc(), 5);
        expect(err(await caller.call_nat(canisterId, 'inc')).code).toBe(5);
        await ic.startCanister({ canisterId, sender: OWNER });
        expect(await actor.inc()).toBe(2n);
    });

    it('rejects a call to a canister that does not exist with code 3', async () => {
        expect(err(await caller.call_nat(MISSING_CANISTER, 'inc')).code).toBe(3);
    });

    it('rejects a call to a method the callee does not have', async () => {
        const reject = err(await caller.call_nat(idAt(0), 'no_such_method'));
        expect(reject.code).toBe(5);
    });

    it('executes deferred calls in the order they were submitted, whenever they are awaited', async () => {
        const deferred = ic.createDeferredActor<CounterService>(counterIdl, idAt(1));
        deferred.setPrincipal(OWNER);
        const before = await counterAt(1).get();
        const first = await deferred.inc();
        const second = await deferred.inc();
        expect(await second()).toBe(before + 2n);
        expect(await first()).toBe(before + 1n);
    });

    it('adds cycles to a canister and reports its balance', async () => {
        const before = await ic.getCyclesBalance(idAt(2));
        expect(before).toBeGreaterThan(0n);
        await ic.addCycles(idAt(2), 1_000_000n);
        const after = await ic.getCyclesBalance(idAt(2));
        // Execution may burn a little in between; the top-up must still show.
        expect(after).toBeGreaterThan(before);
    });

    it('refuses an ingress message its canister_inspect_message rejects, but not a call', async () => {
        const reject = await expectReject(counterAt(0).refused_by_inspect());
        expect(reject.message).toMatch(/inspect|reject/i);
        expect(ok(await caller.call_nat(idAt(0), 'refused_by_inspect'))).toBe(1n);
    });

    it('rejects ingress to a method the canister does not export with code 5', async () => {
        const call = {
            canisterId: idAt(0),
            method: 'no_such_method',
            arg: EMPTY_ARGS,
            sender: OWNER
        };
        await expectReject(ic.updateCall(call), 5);
        await expectReject(ic.queryCall(call), 5);
    });
});
