/**
 * One test interface, two back ends: the local emulator (default) or PocketIC through
 * `@dfinity/pic` when `PIC_URL` (a running PocketIC server) is set.
 *
 * @example
 * const ic = await createTestIc({ subnets: [{ region: 'europe' }] });
 * const { actor } = await ic.setupCanister<Svc>({ idlFactory, wasm, sender, controllers: [sender] });
 */
import { readFile } from 'node:fs/promises';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import {
    PocketIc,
    SubnetStateType,
    type Actor as PicActor,
    type ActorInterface,
    type DeferredActor as PicDeferredActor
} from '@dfinity/pic';
import type { Actor, DeferredActor } from './src/actor';
import type { TraceEntry } from './src/engine';
import { toPrincipal, type PrincipalLike } from './src/ids';
import {
    LocalIc,
    type Capabilities,
    type CanisterStatusResult,
    type CodeOptions,
    type LocalIcOptions,
    type SetupCanisterOptions,
    type SubnetTopology
} from './src/local_ic';

type AnyService = Record<string, (...args: unknown[]) => Promise<unknown>>;

/** What tests may use: PicJS's names and shapes, plus emulator-only extras behind `capabilities`. */
export interface TestIc {
    readonly backend: 'emulator' | 'pocket-ic';
    readonly capabilities: Capabilities;
    setupCanister<T = AnyService>(
        o: SetupCanisterOptions
    ): Promise<{ canisterId: Principal; actor: Actor<T> }>;
    createActor<T = AnyService>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike
    ): Actor<T>;
    createDeferredActor<T = AnyService>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike
    ): DeferredActor<T>;
    createCanister(o?: {
        sender?: PrincipalLike;
        cycles?: bigint;
        controllers?: PrincipalLike[];
        targetSubnetId?: PrincipalLike;
        targetCanisterId?: PrincipalLike;
    }): Promise<Principal>;
    installCode(o: CodeOptions & { targetSubnetId?: PrincipalLike }): Promise<void>;
    upgradeCanister(o: CodeOptions): Promise<void>;
    reinstallCode(o: CodeOptions): Promise<void>;
    startCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }): Promise<void>;
    stopCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }): Promise<void>;
    updateCanisterSettings(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
        controllers?: PrincipalLike[];
        freezingThreshold?: bigint;
    }): Promise<void>;
    canisterStatus(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
    }): Promise<CanisterStatusResult>;
    getControllers(canisterId: PrincipalLike): Promise<Principal[]>;
    updateCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
    }): Promise<Uint8Array>;
    queryCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
    }): Promise<Uint8Array>;
    advanceTime(ms: number): Promise<void>;
    tick(times?: number): Promise<void>;
    getTime(): Promise<number>;
    setTime(time: Date | number): Promise<void>;
    getCyclesBalance(canisterId: PrincipalLike): Promise<bigint>;
    addCycles(canisterId: PrincipalLike, amount: bigint): Promise<bigint>;
    getApplicationSubnets(): Promise<SubnetTopology[]>;
    getCanisterSubnetId(canisterId: PrincipalLike): Promise<Principal | null>;
    getStableMemory(canisterId: PrincipalLike): Promise<Uint8Array>;
    /** Emulator only (`capabilities.faults`): the canister's replies take `rounds` extra rounds. */
    setCanisterDelay(canisterId: PrincipalLike, rounds: number): void;
    /** Emulator only (`capabilities.faults`): the canister's next `n` messages trap. */
    injectTraps(canisterId: PrincipalLike, n: number): void;
    /** Emulator only (`capabilities.trace`). */
    getMessageTrace(): TraceEntry[];
    /** Emulator only (`capabilities.trace`). */
    clearMessageTrace(): void;
    tearDown(): Promise<void>;
}

/** Creates the test back end: PocketIC when `PIC_URL` is set, else the local emulator. */
export async function createTestIc(options: LocalIcOptions = {}): Promise<TestIc> {
    const url = process.env.PIC_URL;
    if (url) return PocketIcTestIc.create(url, options);
    const ic: TestIc = await LocalIc.create(options);
    return ic;
}

/** Copies PicJS's principal into ours (they are different classes). */
function own(p: PrincipalLike): Principal {
    return toPrincipal(p);
}

/** Attaches `reject_code` (parsed from PicJS's message) to errors, as the emulator's errors carry it. */
function withRejectCode(e: unknown): unknown {
    if (!(e instanceof Error)) return e;
    const m = /Reject code: (\w+)/.exec(e.message);
    if (m?.[1]) {
        const names: Record<string, number> = {
            SysFatal: 1,
            SysTransient: 2,
            DestinationInvalid: 3,
            CanisterReject: 4,
            CanisterError: 5,
            SysUnknown: 6
        };
        const code = Number.isNaN(Number(m[1])) ? names[m[1]] : Number(m[1]);
        Object.assign(e, { reject_code: code });
    }
    return e;
}

/** Replaces PicJS's principals (another class) by ours, deeply, so results compare equal. */
function ownPrincipals(v: unknown, depth = 0): unknown {
    if (depth > 64 || v === null || typeof v !== 'object' || ArrayBuffer.isView(v)) return v;
    if ((v as { _isPrincipal?: boolean })._isPrincipal) return own(v as PrincipalLike);
    if (Array.isArray(v)) return v.map((x) => ownPrincipals(x, depth + 1));
    return Object.fromEntries(
        Object.entries(v as Record<string, unknown>).map(([k, x]) => [
            k,
            ownPrincipals(x, depth + 1)
        ])
    );
}

function wrapActor<A extends object>(actor: A): A {
    return new Proxy(actor, {
        get(target, prop, receiver) {
            const v = Reflect.get(target, prop, receiver) as unknown;
            if (typeof v !== 'function' || prop === 'setPrincipal' || prop === 'setIdentity')
                return v;
            return async (...args: unknown[]) => {
                try {
                    const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(
                        target,
                        args
                    );
                    if (typeof out === 'function') {
                        return async () => {
                            try {
                                return ownPrincipals(await (out as () => Promise<unknown>)());
                            } catch (e) {
                                throw withRejectCode(e);
                            }
                        };
                    }
                    return ownPrincipals(out);
                } catch (e) {
                    throw withRejectCode(e);
                }
            };
        }
    });
}

/** The PocketIC back end (`PIC_URL`): the same interface over `@dfinity/pic`. */
class PocketIcTestIc implements TestIc {
    readonly backend = 'pocket-ic' as const;
    readonly capabilities: Capabilities = {
        faults: false,
        trace: false,
        instructionCounting: false
    };
    private constructor(
        private readonly pic: PocketIc,
        private readonly regions: string[]
    ) {}

    static async create(url: string, options: LocalIcOptions): Promise<PocketIcTestIc> {
        const subnets = options.subnets?.length ? options.subnets : [{}];
        const pic = await PocketIc.create(url, {
            application: subnets.map(() => ({ state: { type: SubnetStateType.New } }))
        });
        return new PocketIcTestIc(
            pic,
            subnets.map((s) => s.region ?? 'default')
        );
    }

    private async bytes(wasm: Uint8Array | string): Promise<Uint8Array> {
        return typeof wasm === 'string' ? new Uint8Array(await readFile(wasm)) : wasm;
    }

    async setupCanister<T = AnyService>(o: SetupCanisterOptions) {
        const canisterId = await this.createCanister(o);
        await this.installCode({
            canisterId,
            wasm: o.wasm,
            arg: o.arg,
            sender: o.sender,
            targetSubnetId: o.targetSubnetId
        });
        return { canisterId, actor: this.createActor<T>(o.idlFactory, canisterId) };
    }
    createActor<T = AnyService>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike
    ): Actor<T> {
        const a = this.pic.createActor<ActorInterface>(
            idlFactory as never,
            canisterId as never
        ) as PicActor;
        return wrapActor(a) as unknown as Actor<T>;
    }
    createDeferredActor<T = AnyService>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike
    ): DeferredActor<T> {
        const a = this.pic.createDeferredActor<ActorInterface>(
            idlFactory as never,
            canisterId as never
        ) as PicDeferredActor;
        return wrapActor(a) as unknown as DeferredActor<T>;
    }
    async createCanister(
        o: {
            sender?: PrincipalLike;
            cycles?: bigint;
            controllers?: PrincipalLike[];
            targetSubnetId?: PrincipalLike;
            targetCanisterId?: PrincipalLike;
        } = {}
    ) {
        return own(await this.pic.createCanister(o as never));
    }
    async installCode(o: CodeOptions & { targetSubnetId?: PrincipalLike }) {
        await this.pic.installCode({ ...o, wasm: await this.bytes(o.wasm) } as never);
    }
    async upgradeCanister(o: CodeOptions) {
        await this.pic.upgradeCanister({ ...o, wasm: await this.bytes(o.wasm) } as never);
    }
    async reinstallCode(o: CodeOptions) {
        await this.pic.reinstallCode({ ...o, wasm: await this.bytes(o.wasm) } as never);
    }
    async startCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }) {
        await this.pic
            .startCanister(o as never)
            .catch((e: unknown) => Promise.reject(withRejectCode(e)));
    }
    async stopCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }) {
        await this.pic
            .stopCanister(o as never)
            .catch((e: unknown) => Promise.reject(withRejectCode(e)));
    }
    async updateCanisterSettings(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
        controllers?: PrincipalLike[];
        freezingThreshold?: bigint;
    }) {
        await this.pic.updateCanisterSettings(o as never);
    }
    async canisterStatus(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
    }): Promise<CanisterStatusResult> {
        const r = await this.pic.canisterStatus(o as never);
        return {
            status: r.status,
            settings: {
                controllers: r.settings.controllers.map(own),
                freezingThreshold: r.settings.freezingThreshold
            },
            moduleHash: r.moduleHash,
            memorySize: r.memorySize,
            cycles: r.cycles
        };
    }
    async getControllers(canisterId: PrincipalLike) {
        return (await this.pic.getControllers(canisterId as never)).map(own);
    }
    async updateCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
    }) {
        return this.pic
            .updateCall(o as never)
            .catch((e: unknown) => Promise.reject(withRejectCode(e)));
    }
    async queryCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
    }) {
        return this.pic
            .queryCall(o as never)
            .catch((e: unknown) => Promise.reject(withRejectCode(e)));
    }
    advanceTime(ms: number) {
        return this.pic.advanceTime(ms);
    }
    tick(times?: number) {
        return this.pic.tick(times);
    }
    getTime() {
        return this.pic.getTime();
    }
    setTime(time: Date | number) {
        return this.pic.setTime(time);
    }
    getCyclesBalance(canisterId: PrincipalLike) {
        return this.pic.getCyclesBalance(canisterId as never);
    }
    addCycles(canisterId: PrincipalLike, amount: bigint) {
        return this.pic.addCycles(canisterId as never, amount);
    }
    async getApplicationSubnets(): Promise<SubnetTopology[]> {
        const subnets = await this.pic.getApplicationSubnets();
        return subnets.map((s, i) => ({
            id: own(s.id),
            type: 'Application' as const,
            size: s.size,
            canisterRanges: s.canisterRanges.map((r) => ({ start: own(r.start), end: own(r.end) })),
            region: this.regions[i] ?? 'default'
        }));
    }
    async getCanisterSubnetId(canisterId: PrincipalLike) {
        const s = await this.pic.getCanisterSubnetId(canisterId as never);
        return s ? own(s) : null;
    }
    getStableMemory(canisterId: PrincipalLike) {
        return this.pic.getStableMemory(canisterId as never);
    }
    setCanisterDelay(): void {
        throw new Error('setCanisterDelay is emulator-only (check capabilities.faults)');
    }
    injectTraps(): void {
        throw new Error('injectTraps is emulator-only (check capabilities.faults)');
    }
    getMessageTrace(): TraceEntry[] {
        throw new Error('getMessageTrace is emulator-only (check capabilities.trace)');
    }
    clearMessageTrace(): void {
        throw new Error('clearMessageTrace is emulator-only (check capabilities.trace)');
    }
    tearDown() {
        return this.pic.tearDown();
    }
}

export { LocalIc };
export type {
    Capabilities,
    LocalIcOptions,
    SetupCanisterOptions,
    SubnetTopology,
    TraceEntry,
    Actor,
    DeferredActor
};
