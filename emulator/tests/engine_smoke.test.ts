/**
 * Smoke test of the emulator engine on a tiny Azle canister built into /tmp/emu-smoke (cached by
 * source hash): install, update/query, rollback, calls across subnets, composite queries, timers,
 * upgrades, inspect_message, stop, and the round counts the README documents.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { beforeAll, describe, expect, it } from 'vitest';
import { CallRejectedError, LocalIc, XNET_LATENCY_ROUNDS } from '../index';
import { FEES } from '../src/engine';
import { StableMemory } from '../src/stable_memory';
import { exposeInternals, sha256, TABLE_EXPORT } from '../src/wasm_binary';
import { buildScratchCanister } from './scratch_build';

const SMOKE_DIR = '/tmp/emu-smoke';

const SOURCE = `import { IDL, query, update, msgCaller, call, setTimer, trap, inspectMessage, time } from 'azle';
export default class {
    counter = 0n;
    ticks = 0;
    @inspectMessage
    inspect(methodName: string): boolean { return methodName !== 'forbidden'; }
    @update([], IDL.Nat64) inc(): bigint { this.counter += 1n; return this.counter; }
    @update([], IDL.Nat64) forbidden(): bigint { return 0n; }
    @query([], IDL.Nat64) get(): bigint { return this.counter; }
    @query([], IDL.Nat64) bumpInQuery(): bigint { this.counter += 1000n; return this.counter; }
    @query([], IDL.Principal) whoami(): any { return msgCaller(); }
    @update([], IDL.Nat64) boom(): bigint { this.counter += 100n; trap('boom'); }
    @update([IDL.Vec(IDL.Principal)], IDL.Vec(IDL.Nat64)) async fanOut(ps: any[]): Promise<bigint[]> {
        return await Promise.all(ps.map((p) => call<undefined, bigint>(p, 'inc', { returnIdlType: IDL.Nat64 })));
    }
    @query([IDL.Principal], IDL.Nat64, { composite: true }) async readOther(p: any): Promise<bigint> {
        return await call<undefined, bigint>(p, 'get', { returnIdlType: IDL.Nat64 });
    }
    @update([IDL.Nat32], IDL.Nat32) arm(seconds: number): number {
        setTimer(seconds, () => { this.ticks += 1; });
        return seconds;
    }
    @query([], IDL.Nat32) getTicks(): number { return this.ticks; }
    @query([], IDL.Nat64) now(): bigint { return time(); }
    @update([IDL.Nat32], IDL.Nat64) growAndTrap(mib: number): bigint {
        const big = new Uint8Array(mib * 1024 * 1024);
        big[big.length - 1] = 1;
        this.counter += 7n;
        trap('after growing by ' + String(big.length));
    }
}
`;

const idlFactory: IDL.InterfaceFactory = ({ IDL: I }) =>
    I.Service({
        inc: I.Func([], [I.Nat64], []),
        forbidden: I.Func([], [I.Nat64], []),
        get: I.Func([], [I.Nat64], ['query']),
        bumpInQuery: I.Func([], [I.Nat64], ['query']),
        whoami: I.Func([], [I.Principal], ['query']),
        boom: I.Func([], [I.Nat64], []),
        fanOut: I.Func([I.Vec(I.Principal)], [I.Vec(I.Nat64)], []),
        readOther: I.Func([I.Principal], [I.Nat64], ['composite_query']),
        arm: I.Func([I.Nat32], [I.Nat32], []),
        getTicks: I.Func([], [I.Nat32], ['query']),
        now: I.Func([], [I.Nat64], ['query']),
        growAndTrap: I.Func([I.Nat32], [I.Nat64], [])
    });

interface Smoke {
    inc(): Promise<bigint>;
    forbidden(): Promise<bigint>;
    get(): Promise<bigint>;
    bumpInQuery(): Promise<bigint>;
    whoami(): Promise<Principal>;
    boom(): Promise<bigint>;
    fanOut(ps: Principal[]): Promise<bigint[]>;
    readOther(p: Principal): Promise<bigint>;
    arm(seconds: number): Promise<number>;
    getTicks(): Promise<number>;
    now(): Promise<bigint>;
    growAndTrap(mib: number): Promise<bigint>;
}

/** Builds the smoke canister unless a build of the same source exists (~5 s). */
function buildSmokeCanister(): Uint8Array {
    return buildScratchCanister(SMOKE_DIR, 'smoke', SOURCE);
}

const OWNER = Principal.fromUint8Array(new Uint8Array([0xad, 0x31, 0x07, 0x02]));

async function rejectOf(p: Promise<unknown>): Promise<CallRejectedError> {
    try {
        await p;
    } catch (e) {
        if (e instanceof CallRejectedError) return e;
        throw e;
    }
    throw new Error('expected a reject');
}

describe('emulator engine smoke', () => {
    let wasm: Uint8Array;
    let ic: LocalIc;

    beforeAll(async () => {
        wasm = buildSmokeCanister();
        ic = await LocalIc.create({ subnets: [{ region: 'europe' }, { region: 'asia' }] });
    });

    async function setup(subnet = 0) {
        const subnets = await ic.getApplicationSubnets();
        const fixture = await ic.setupCanister<Smoke>({
            idlFactory,
            wasm,
            sender: OWNER,
            controllers: [OWNER],
            targetSubnetId: subnets[subnet]?.id
        });
        fixture.actor.setPrincipal(OWNER);
        return fixture;
    }

    it('installs on the chosen subnet with an IC-style id and serves updates and queries', async () => {
        const subnets = await ic.getApplicationSubnets();
        expect(subnets.map((s) => s.region)).toEqual(['europe', 'asia']);
        const { canisterId, actor } = await setup(1);
        expect(canisterId.toText()).toMatch(/-cai$/);
        expect((await ic.getCanisterSubnetId(canisterId))?.toText()).toBe(subnets[1]?.id.toText());
        expect(await actor.inc()).toBe(1n);
        expect(await actor.inc()).toBe(2n);
        expect(await actor.get()).toBe(2n);
        expect((await actor.whoami()).toText()).toBe(OWNER.toText());
        const status = await ic.canisterStatus({ canisterId, sender: OWNER });
        expect(Buffer.from(status.moduleHash!).toString('hex')).toBe(
            Buffer.from(sha256(wasm)).toString('hex')
        );
    });

    it('rolls back a trapping update and discards a query’s writes', async () => {
        const { actor } = await setup();
        await actor.inc();
        const e = await rejectOf(actor.boom());
        expect(e.reject_code).toBe(5);
        expect(e.error_code).toBe('IC0503');
        expect(await actor.bumpInQuery()).toBe(1001n);
        expect(await actor.get()).toBe(1n);
    });

    it('restores the heap size and state after a trap in a message that grew memory', async () => {
        const { canisterId, actor } = await setup();
        await actor.inc();
        const heap_bytes = ic.raw.canister(canisterId).heapBytes;
        const e = await rejectOf(actor.growAndTrap(32));
        expect(e.reject_code).toBe(5);
        expect(ic.raw.canister(canisterId).heapBytes).toBe(heap_bytes);
        expect(await actor.get()).toBe(1n);
        expect(await actor.inc()).toBe(2n);
    });

    it('refuses an ingress call that inspect_message rejects, with code 4', async () => {
        const { actor } = await setup();
        const e = await rejectOf(actor.forbidden());
        expect(e.reject_code).toBe(4);
    });

    it('finishes same-subnet calls in one round and cross-subnet calls in 1 + 2 × latency rounds', async () => {
        const a = await setup(0);
        const b = await setup(0);
        const c = await setup(0);
        const far = await setup(1);
        let start = ic.getRound();
        expect([...(await a.actor.fanOut([b.canisterId]))]).toEqual([1n]);
        expect(ic.getRound() - start).toBe(1);
        start = ic.getRound();
        expect([...(await a.actor.fanOut([b.canisterId, c.canisterId, b.canisterId]))]).toEqual([
            2n,
            1n,
            3n
        ]);
        expect(ic.getRound() - start).toBe(1);
        start = ic.getRound();
        expect([...(await a.actor.fanOut([far.canisterId]))]).toEqual([1n]);
        expect(ic.getRound() - start).toBe(1 + 2 * XNET_LATENCY_ROUNDS);
        start = ic.getRound();
        expect([...(await a.actor.fanOut([far.canisterId, b.canisterId, far.canisterId]))]).toEqual(
            [2n, 4n, 3n]
        );
        expect(ic.getRound() - start).toBe(1 + 2 * XNET_LATENCY_ROUNDS);
    });

    it('runs concurrent Promise.all ingress calls in the same round', async () => {
        const { actor } = await setup();
        const start = ic.getRound();
        const out = await Promise.all([actor.inc(), actor.inc(), actor.inc()]);
        expect([...out].sort()).toEqual([1n, 2n, 3n]);
        expect(ic.getRound() - start).toBe(1);
    });

    it('answers composite queries on the same subnet and rejects them across subnets', async () => {
        const a = await setup(0);
        const b = await setup(0);
        const far = await setup(1);
        await b.actor.inc();
        expect(await a.actor.readOther(b.canisterId)).toBe(1n);
        const e = await rejectOf(a.actor.readOther(far.canisterId));
        expect(e.reject_code).toBe(5);
    });

    it('fires a timer when the clock reaches it, not before', async () => {
        const { actor } = await setup();
        await actor.arm(10);
        await ic.advanceTime(9_999);
        await ic.tick(2);
        expect(await actor.getTicks()).toBe(0);
        await ic.advanceTime(1);
        await ic.tick(2);
        expect(await actor.getTicks()).toBe(1);
        const now_ms = BigInt(await ic.getTime());
        expect((await actor.now()) / 1_000_000n).toBe(now_ms);
    });

    it('resets the heap on upgrade and rejects calls to a stopped canister', async () => {
        const { canisterId, actor } = await setup();
        await actor.inc();
        await ic.upgradeCanister({ canisterId, wasm, sender: OWNER });
        expect(await actor.get()).toBe(0n);
        await ic.stopCanister({ canisterId, sender: OWNER });
        const e = await rejectOf(actor.inc());
        expect(e.reject_code).toBe(5);
        expect(e.error_code).toBe('IC0508');
        await ic.startCanister({ canisterId, sender: OWNER });
        expect(await actor.inc()).toBe(1n);
    });

    it('delays a slow canister’s replies by the configured rounds and injects traps', async () => {
        const a = await setup(0);
        const b = await setup(0);
        ic.setCanisterDelay(b.canisterId, 3);
        let start = ic.getRound();
        expect([...(await a.actor.fanOut([b.canisterId]))]).toEqual([1n]);
        expect(ic.getRound() - start).toBe(1 + 3);
        start = ic.getRound();
        expect(await b.actor.inc()).toBe(2n);
        expect(ic.getRound() - start).toBe(1 + 3);
        ic.setCanisterDelay(b.canisterId, 0);
        ic.injectTraps(b.canisterId, 1);
        expect((await rejectOf(b.actor.inc())).reject_code).toBe(5);
        expect(await b.actor.inc()).toBe(3n);
        const trace = ic
            .getMessageTrace()
            .filter((e) => e.canister === b.canisterId.toText() && e.kind === 'ingress');
        expect(trace.slice(-2).map((e) => e.outcome)).toEqual(['trap', 'reply']);
    });

    it('lets a stopping canister finish its open call context and refuses new calls', async () => {
        const a = await setup(0);
        const b = await setup(0);
        ic.setCanisterDelay(b.canisterId, 4);
        const deferred = ic.createDeferredActor<Smoke>(idlFactory, a.canisterId);
        deferred.setPrincipal(OWNER);
        const run = await deferred.fanOut([b.canisterId]);
        await ic.tick();
        const [, refused] = await Promise.allSettled([
            ic.stopCanister({ canisterId: a.canisterId, sender: OWNER }),
            a.actor.inc()
        ]);
        expect(refused.status).toBe('rejected');
        expect((refused as PromiseRejectedResult).reason.error_code).toBe('IC0509');
        expect([...(await run())]).toEqual([1n]);
        expect(
            (await ic.canisterStatus({ canisterId: a.canisterId, sender: OWNER })).status
        ).toEqual({ stopped: null });
        ic.setCanisterDelay(b.canisterId, 0);
    });

    it('charges ingress and execution, not queries, and refuses calls without cycles', async () => {
        const { canisterId, actor } = await setup();
        await ic.tick(2);
        const before = await ic.getCyclesBalance(canisterId);
        await actor.get();
        expect(await ic.getCyclesBalance(canisterId)).toBe(before);
        await actor.inc();
        const spent = before - (await ic.getCyclesBalance(canisterId));
        expect(spent).toBeGreaterThanOrEqual(FEES.ingress_message + FEES.update_message);
        const broke = await ic.createCanister({ sender: OWNER, controllers: [OWNER], cycles: 0n });
        const refused = await rejectOf(ic.installCode({ canisterId: broke, wasm, sender: OWNER }));
        expect(refused.error_code).toBe('IC0207');
        // Enough to install (one execution fee), then too little for an ingress message.
        const poor = await ic.createCanister({
            sender: OWNER,
            controllers: [OWNER],
            cycles: FEES.update_message + 1_000_000n
        });
        await ic.installCode({ canisterId: poor, wasm, sender: OWNER });
        const e = await rejectOf(ic.createActor<Smoke>(idlFactory, poor).inc());
        expect(e.reject_code).toBe(2);
        expect(e.error_code).toBe('IC0207');
    });

    it('rejects open call contexts with code 4 on uninstall_code', async () => {
        const a = await setup(0);
        const b = await setup(0);
        ic.setCanisterDelay(b.canisterId, 3);
        const deferred = ic.createDeferredActor<Smoke>(idlFactory, a.canisterId);
        deferred.setPrincipal(OWNER);
        const run = await deferred.fanOut([b.canisterId]);
        await ic.tick();
        await ic.updateCall({
            canisterId: Principal.fromText('aaaaa-aa'),
            method: 'uninstall_code',
            arg: new Uint8Array(
                IDL.encode(
                    [
                        IDL.Record({
                            canister_id: IDL.Principal,
                            sender_canister_version: IDL.Opt(IDL.Nat64)
                        })
                    ],
                    [{ canister_id: a.canisterId, sender_canister_version: [] }]
                )
            ),
            sender: OWNER
        });
        const e = await rejectOf(run());
        expect(e.reject_code).toBe(4);
        expect(e.reject_message).toBe('Canister has been uninstalled.');
        await ic.tick(4);
        expect((await rejectOf(a.actor.get())).error_code).toBe('IC0537');
        ic.setCanisterDelay(b.canisterId, 0);
    });

    it('refuses management calls from a non-controller', async () => {
        const { canisterId } = await setup();
        const e = await rejectOf(ic.stopCanister({ canisterId, sender: Principal.anonymous() }));
        expect(e.reject_code).toBe(5);
        expect(e.error_code).toBe('IC0512');
    });
});

describe('emulator building blocks', () => {
    /** A module with a table, one mutable i32 global (42) and, optionally, an exported memory. */
    function tinyModule(withExports: boolean): Uint8Array {
        const header = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
        const types = [0x01, 0x04, 0x01, 0x60, 0x00, 0x00];
        const funcs = [0x03, 0x02, 0x01, 0x00];
        const table = [0x04, 0x04, 0x01, 0x70, 0x00, 0x01];
        const memory = [0x05, 0x03, 0x01, 0x00, 0x01];
        const global = [0x06, 0x06, 0x01, 0x7f, 0x01, 0x41, 0x2a, 0x0b];
        const exports = [0x07, 0x07, 0x01, 0x03, 0x6d, 0x65, 0x6d, 0x02, 0x00];
        const code = [0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b];
        return Uint8Array.from([
            ...header,
            ...types,
            ...funcs,
            ...table,
            ...memory,
            ...global,
            ...(withExports ? exports : []),
            ...code
        ]);
    }

    it('exports the table and mutable globals, with or without an export section', () => {
        for (const withExports of [false, true]) {
            const out = exposeInternals(tinyModule(withExports));
            expect(out.hasTable).toBe(true);
            expect(out.globalExports).toEqual(['__emu_global_0']);
            const instance = new WebAssembly.Instance(new WebAssembly.Module(out.bytes), {});
            expect(instance.exports[TABLE_EXPORT]).toBeInstanceOf(WebAssembly.Table);
            const g = instance.exports['__emu_global_0'] as WebAssembly.Global;
            expect(g.value).toBe(42);
            g.value = 7;
            expect(g.value).toBe(7);
            expect('mem' in instance.exports).toBe(withExports);
        }
    });

    it('keeps stable memory sparse, traps out of bounds and rolls writes back', () => {
        const sm = new StableMemory();
        expect(sm.grow(2n)).toBe(0n);
        sm.write(65_530n, Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]));
        expect([...sm.read(65_530n, 8)]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
        expect(sm.resident_bytes).toBe(2 * 65_536);
        expect(() => sm.read(2n * 65_536n - 1n, 2)).toThrow(RangeError);
        sm.begin();
        sm.write(0n, Uint8Array.from([9]));
        sm.grow(1n);
        sm.rollback();
        expect(sm.size_pages).toBe(2);
        expect([...sm.read(0n, 1)]).toEqual([0]);
        expect([...sm.read(65_530n, 2)]).toEqual([1, 2]);
    });
});
