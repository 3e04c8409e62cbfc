import type { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import type { CallerService, CounterService } from './fixtures/idl';
import { type ActorControls, err, expectReject, fixtureWasms, install, MIB, ok } from './support';

/** Room for the Candid header around a blob, so "under the limit" really is. */
const SLACK_BYTES = 1024;

describe('message size limits', () => {
    let ic: TestIc;
    let wasms: Record<FixtureName, Uint8Array>;
    let counter: CounterService & ActorControls;
    let counterId: Principal;
    let remoteId: Principal;
    let caller: CallerService & ActorControls;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await createTestIc({ subnets: [{ region: 'europe' }, { region: 'asia' }] });
        const [home, away] = await ic.getApplicationSubnets();
        if (home === undefined || away === undefined) throw new Error('need two subnets');
        ({ actor: counter, canisterId: counterId } = await install(ic, wasms, 'counter', {
            targetSubnetId: home.id
        }));
        ({ actor: caller } = await install(ic, wasms, 'caller', { targetSubnetId: home.id }));
        ({ canisterId: remoteId } = await install(ic, wasms, 'counter', {
            targetSubnetId: away.id
        }));
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('accepts an ingress payload under 2 MiB and rejects one over it', async () => {
        const under = 2 * MIB - SLACK_BYTES;
        expect(await counter.accept_blob(new Uint8Array(under))).toBe(BigInt(under));
        await expectReject(counter.accept_blob(new Uint8Array(2 * MIB + SLACK_BYTES)));
    });

    it('allows a same-subnet request up to 10 MiB and rejects one over it', async () => {
        const over2MiB = 3 * MIB;
        expect(ok(await caller.send_blob(counterId, over2MiB))).toBe(BigInt(over2MiB));
        // As the replica: call_perform over the limit is a contract violation that traps the caller.
        await expectReject(caller.send_blob(counterId, 10 * MIB + SLACK_BYTES), 5);
    });

    it('allows a cross-subnet request up to 2 MiB and rejects one over it', async () => {
        const under = 2 * MIB - SLACK_BYTES;
        expect(ok(await caller.send_blob(remoteId, under))).toBe(BigInt(under));
        await expectReject(caller.send_blob(remoteId, 2 * MIB + SLACK_BYTES), 5);
        // The same payload is fine for a callee on the caller's own subnet.
        expect(ok(await caller.send_blob(counterId, 2 * MIB + SLACK_BYTES))).toBe(
            BigInt(2 * MIB + SLACK_BYTES)
        );
    });

    it('rejects an update reply over 2 MiB, to ingress and to a calling canister', async () => {
        const under = 2 * MIB - SLACK_BYTES;
        expect((await counter.make_blob(under)).length).toBe(under);
        await expectReject(counter.make_blob(2 * MIB + SLACK_BYTES), 5);
        expect(ok(await caller.fetch_blob(counterId, under))).toBe(BigInt(under));
        expect(err(await caller.fetch_blob(counterId, 2 * MIB + SLACK_BYTES)).code).toBe(5);
    });

    it('allows a query reply over 2 MiB up to 3 MiB and rejects one over it', async () => {
        const between = 3 * MIB - SLACK_BYTES;
        expect((await counter.make_blob_query(between)).length).toBe(between);
        await expectReject(counter.make_blob_query(3 * MIB + SLACK_BYTES), 5);
    });
});
