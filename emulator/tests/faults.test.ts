import type { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import type { CallerService } from './fixtures/idl';
import {
    type ActorControls,
    err,
    expectReject,
    fixtureWasms,
    hasCapability,
    install,
    ok
} from './support';

const DELAY_ROUNDS = 6;

describe('fault injection (emulator only)', () => {
    let ic: TestIc;
    let wasms: Record<FixtureName, Uint8Array>;
    let caller: CallerService & ActorControls;
    let callerId: Principal;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await createTestIc({ subnets: [{ region: 'europe' }] });
        ({ actor: caller, canisterId: callerId } = await install(ic, wasms, 'caller'));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    /** Rounds from the caller's ingress execution to its reply callback, from the trace. */
    async function roundsForOneCall(target: Principal): Promise<number> {
        ic.clearMessageTrace();
        ok(await caller.call_nat(target, 'inc'));
        const trace = ic.getMessageTrace();
        const atCaller = trace.filter((e) => e.canister === callerId.toText());
        const sent = atCaller.find((e) => e.kind === 'ingress');
        const answered = atCaller.find((e) => e.kind === 'response');
        if (sent === undefined || answered === undefined) {
            throw new Error(
                `trace lacks the ingress or the callback: ${JSON.stringify(atCaller, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v))}`
            );
        }
        return answered.round - sent.round;
    }

    it('delays the replies of a slow canister by the configured number of rounds', async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        if (!hasCapability(ic, 'trace', ctx.skip)) return;
        const { actor: counter, canisterId } = await install(ic, wasms, 'counter');
        const normal = await roundsForOneCall(canisterId);
        ic.setCanisterDelay(canisterId, DELAY_ROUNDS);
        const slow = await roundsForOneCall(canisterId);
        expect(slow).toBeGreaterThanOrEqual(normal + DELAY_ROUNDS);
        ic.setCanisterDelay(canisterId, 0);
        expect(await roundsForOneCall(canisterId)).toBe(normal);
        expect(await counter.get()).toBe(3n);
    });

    it("makes a canister's next N messages trap, then serves it normally", async (ctx) => {
        if (!hasCapability(ic, 'faults', ctx.skip)) return;
        const { actor: counter, canisterId } = await install(ic, wasms, 'counter');
        expect(await counter.inc()).toBe(1n);
        ic.injectTraps(canisterId, 2);
        await expectReject(counter.inc(), 5);
        expect(err(await caller.call_nat(canisterId, 'inc')).code).toBe(5);
        expect(await counter.inc()).toBe(2n);
    });
});
