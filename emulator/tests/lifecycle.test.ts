import { createHash } from 'node:crypto';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { createTestIc, type TestIc } from '../harness';
import type { FixtureName } from './fixtures/build';
import { counterIdl, type CounterService } from './fixtures/idl';
import {
    EMPTY_ARGS,
    err,
    expectReject,
    fixtureWasms,
    install,
    MIB,
    ok,
    OWNER,
    STRANGER
} from './support';

const SECOND_MS = 1_000;
const SECOND_NS = 1_000_000_000n;
const MILLISECOND_NS = 1_000_000n;
const CHILD_CYCLES = 2_000_000_000_000n;
const CREATE_CANISTER_FEE = 500_000_000_000n;

function sha256(bytes: Uint8Array): Uint8Array {
    return new Uint8Array(createHash('sha256').update(bytes).digest());
}

function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (let at = 0; at < bytes.length; at += size) out.push(bytes.subarray(at, at + size));
    return out;
}

describe('canister lifecycle', () => {
    let ic: TestIc;
    let wasms: Record<FixtureName, Uint8Array>;

    beforeAll(async () => {
        wasms = await fixtureWasms();
        ic = await createTestIc({ subnets: [{ region: 'europe' }] });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('keeps StableBTreeMap entries across two upgrades while the heap counter resets', async () => {
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        for (const key of ['a', 'b', 'c']) await actor.put(key, `value-${key}`);
        for (let i = 0; i < 3; i++) await actor.inc();
        expect(await actor.get()).toBe(3n);

        for (let upgrade = 1; upgrade <= 2; upgrade++) {
            await ic.upgradeCanister({
                canisterId,
                wasm: wasms.counter,
                arg: EMPTY_ARGS,
                sender: OWNER
            });
            expect(await actor.get()).toBe(0n);
            expect(await actor.lookup('b')).toEqual(['value-b']);
            expect(await actor.lookup('pre_upgrade_runs')).toEqual([String(upgrade)]);
            expect(await actor.lookup('post_upgrade_runs')).toEqual([String(upgrade)]);
            await actor.inc();
        }
        // a, b, c plus the two upgrade-hook counters.
        expect(await actor.entry_count()).toBe(5n);
    });

    it('reverts an upgrade whose post_upgrade traps: old code, heap and stable memory stay', async () => {
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        await actor.put('k', 'v');
        await actor.inc();
        await actor.inc();
        await actor.set_post_upgrade_trap(true);
        const upgrade = (): Promise<void> =>
            ic.upgradeCanister({ canisterId, wasm: wasms.counter, arg: EMPTY_ARGS, sender: OWNER });

        await expectReject(upgrade(), 5);
        expect(await actor.get()).toBe(2n);
        expect(await actor.lookup('k')).toEqual(['v']);
        expect(await actor.lookup('pre_upgrade_runs')).toEqual([]);
        expect(await actor.lookup('post_upgrade_runs')).toEqual([]);

        await actor.set_post_upgrade_trap(false);
        await upgrade();
        expect(await actor.get()).toBe(0n);
        expect(await actor.lookup('pre_upgrade_runs')).toEqual(['1']);
    });

    it('wipes stable memory on reinstall', async () => {
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        await actor.put('k', 'v');
        await ic.reinstallCode({ canisterId, wasm: wasms.counter, arg: EMPTY_ARGS, sender: OWNER });
        expect(await actor.entry_count()).toBe(0n);
        expect(await actor.lookup('k')).toEqual([]);
    });

    it('runs an interval timer at exact intervals and a one-shot timer once', async () => {
        const { actor } = await install(ic, wasms, 'counter');
        const start = await actor.start_timers(10n, 25n);
        for (let step = 0; step < 7; step++) {
            await ic.advanceTime(5 * SECOND_MS);
            await ic.tick(3);
        }
        const log = await actor.timer_log();
        // Each firing happens in the first round at or after its deadline: rounds add only
        // nanoseconds to the clock, so it is within 1 ms of `start + k * interval`.
        const lateness = (times: ArrayLike<bigint>, deadlines: bigint[]): bigint[] =>
            Array.from(times, (t, k) => t - start - (deadlines[k] ?? 0n) * SECOND_NS);
        const interval = lateness(log.interval, [10n, 20n, 30n]);
        const once = lateness(log.once, [25n]);
        expect(interval).toHaveLength(3);
        expect(once).toHaveLength(1);
        for (const late of [...interval, ...once]) {
            expect(late).toBeGreaterThanOrEqual(0n);
            expect(late).toBeLessThan(MILLISECOND_NS);
        }
    });

    it('refuses management operations from a principal that is not a controller', async () => {
        const { actor, canisterId } = await install(ic, wasms, 'counter');
        await expectReject(ic.stopCanister({ canisterId, sender: STRANGER }), 5);
        await expectReject(
            ic.upgradeCanister({
                canisterId,
                wasm: wasms.counter,
                arg: EMPTY_ARGS,
                sender: STRANGER
            }),
            5
        );
        expect(await actor.inc()).toBe(1n);
    });

    it('lets a controller canister read canister_status and refuses a non-controller', async () => {
        const { actor: caller, canisterId: callerId } = await install(ic, wasms, 'caller');
        const { canisterId: owned } = await install(ic, wasms, 'counter', {
            controllers: [OWNER, callerId]
        });
        const { actor: foreign, canisterId: foreignId } = await install(ic, wasms, 'counter');
        expect(ok(await caller.status_of(owned))).toBe('running');
        // A canister may read its own status without being its own controller.
        expect(ok(await caller.status_of(callerId))).toBe('running');
        expect(err(await caller.status_of(foreignId)).code).toBe(5);
        expect(err(await caller.stop(foreignId)).code).toBe(5);
        expect(await foreign.inc()).toBe(1n);
    });

    it('creates a child through upload_chunk and install_chunked_code, then upgrades it', async () => {
        const { actor: factory } = await install(ic, wasms, 'factory_child');
        // setupCanister itself may have used the store to install the factory (as PicJS does).
        expect(await factory.clear_chunks()).toBe(true);
        expect(ok(await factory.stored_chunk_count())).toBe(0n);
        const child = wasms.counter;
        const parts = chunks(child, MIB);
        expect(parts.length).toBeGreaterThan(2);
        for (const part of parts) {
            expect(ok(await factory.upload(part))).toEqual(sha256(part));
        }
        expect(ok(await factory.stored_chunk_count())).toBe(BigInt(parts.length));

        const childId = ok(await factory.create_child(sha256(child), CHILD_CYCLES));
        const childActor = ic.createActor<CounterService>(counterIdl, childId);
        expect(await childActor.inc()).toBe(1n);
        expect(await childActor.get()).toBe(1n);
        const balance = await ic.getCyclesBalance(childId);
        expect(balance).toBeGreaterThan(0n);
        // The creation fee (500 B cycles on a 13-node subnet) comes out of the attached cycles.
        expect(balance).toBeLessThanOrEqual(CHILD_CYCLES - CREATE_CANISTER_FEE);

        // The factory, a controller of the child, upgrades it from the same chunks.
        await childActor.put('loan', 'kept');
        expect(ok(await factory.upgrade_child(childId, sha256(child)))).toBe(BigInt(parts.length));
        expect(await childActor.get()).toBe(0n);
        expect(await childActor.lookup('loan')).toEqual(['kept']);
        expect(await childActor.lookup('post_upgrade_runs')).toEqual(['1']);
    });

    it('refuses install_chunked_code when the module hash does not match the chunks', async () => {
        const { actor: factory } = await install(ic, wasms, 'factory_child');
        await factory.clear_chunks();
        for (const part of chunks(wasms.counter, MIB)) ok(await factory.upload(part));
        const wrongHash = sha256(new TextEncoder().encode('not the module'));
        expect(err(await factory.create_child(wrongHash, CHILD_CYCLES)).code).toBeGreaterThan(0);
    });

    it('rejects a chunk over 1 MiB and accepts one of exactly 1 MiB', async () => {
        const { actor: factory } = await install(ic, wasms, 'factory_child');
        await factory.clear_chunks();
        expect(err(await factory.upload(new Uint8Array(MIB + 1))).code).toBeGreaterThan(0);
        expect(ok(await factory.upload(new Uint8Array(MIB)))).toEqual(sha256(new Uint8Array(MIB)));
        expect(ok(await factory.stored_chunk_count())).toBe(1n);
    });

    it('reports the subnets it was created with', async () => {
        const subnets = await ic.getApplicationSubnets();
        expect(subnets).toHaveLength(1);
        expect(subnets[0]?.id).toBeInstanceOf(Principal);
    });
});
