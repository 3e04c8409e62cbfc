import { readFile } from 'node:fs/promises';
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import {
    createActor,
    createDeferredActor,
    type Actor,
    type ActorTransport,
    type DeferredActor,
    type ArgEncoders,
    type ReplyDecoders
} from './actor';
import { Engine, type EngineOptions, type TraceEntry } from './engine';
import { CallRejectedError, type Reject } from './errors';
import { canisterIdFromIndex, MANAGEMENT_ID, toPrincipal, type PrincipalLike } from './ids';
import { MANAGEMENT_METHODS } from './management_idl';
import { PAGE_SIZE_BYTES, StableMemory } from './stable_memory';
import { sha256 } from './wasm_binary';

/** Options of `LocalIc.create`. */
export interface LocalIcOptions extends EngineOptions {
    /** Rounds an awaited call may take before the harness gives up (default 10,000). */
    maxRoundsPerCall?: number;
}

/** A subnet as PicJS's `SubnetTopology`, plus the emulator's region tag. */
export interface SubnetTopology {
    id: Principal;
    type: 'Application';
    size: number;
    canisterRanges: { start: Principal; end: Principal }[];
    region: string;
}

/** Which emulator-only features a back end offers (all false on PocketIC). */
export interface Capabilities {
    faults: boolean;
    trace: boolean;
    instructionCounting: boolean;
}

/** Options of `setupCanister` (PicJS's `SetupCanisterOptions`, the fields the emulator uses). */
export interface SetupCanisterOptions {
    idlFactory: IDL.InterfaceFactory;
    wasm: Uint8Array | string;
    arg?: Uint8Array;
    sender?: PrincipalLike;
    controllers?: PrincipalLike[];
    cycles?: bigint;
    targetSubnetId?: PrincipalLike;
    targetCanisterId?: PrincipalLike;
    freezingThreshold?: bigint;
}

/** Options of code changes (PicJS's `UpgradeCanisterOptions` / `ReinstallCodeOptions`). */
export interface CodeOptions {
    canisterId: PrincipalLike;
    wasm: Uint8Array | string;
    arg?: Uint8Array;
    sender?: PrincipalLike;
    upgradeModeOptions?: { skip_pre_upgrade: [] | [boolean]; wasm_memory_persistence?: unknown };
}

/** PicJS's `CanisterStatusResult` (camelCase), for `canisterStatus`. */
export interface CanisterStatusResult {
    status: { running: null } | { stopping: null } | { stopped: null };
    settings: { controllers: Principal[]; freezingThreshold: bigint };
    moduleHash: Uint8Array | null;
    memorySize: bigint;
    cycles: bigint;
}

/** Largest install_code payload before switching to chunked upload (as PicJS 0.23). */
const MAX_INSTALL_CODE_PAYLOAD_SIZE = 1_850_000;
const WASM_CHUNK_SIZE = 1_000_000;
const DEFAULT_CYCLES = 1_000_000_000_000_000_000n;

interface Waiter {
    resolve: (bytes: Uint8Array) => void;
    reject: (e: Error) => void;
    startRound: number;
}

/**
 * The local IC emulator behind a PicJS-shaped API: runs real canister Wasm in-process.
 *
 * @example
 * const ic = await LocalIc.create({ subnets: [{ region: 'europe' }] });
 * const { actor, canisterId } = await ic.setupCanister({ idlFactory, wasm: 'x.wasm' });
 * await actor.inc(); // 1n
 * await ic.tearDown();
 */
export class LocalIc {
    readonly backend = 'emulator' as const;
    private readonly engine: Engine;
    private readonly waiters = new Map<number, Waiter>();
    private driving = false;
    private readonly maxRounds: number;
    private closed = false;
    private readonly transport: ActorTransport;

    private constructor(options: LocalIcOptions) {
        this.engine = new Engine(options);
        this.maxRounds = options.maxRoundsPerCall ?? 10_000;
        this.transport = {
            query: async (s, c, m, a) =>
                this.queryCall({ sender: s, canisterId: c, method: m, arg: a }),
            update: async (s, c, m, a) =>
                this.updateCall({ sender: s, canisterId: c, method: m, arg: a }),
            submit: (s, c, m, a) => {
                const id = this.submit(s, c, m, a);
                return () => this.await(id);
            }
        };
    }

    /**
     * Creates an emulated IC. Subnets default to one; each gets a real-looking id and a region.
     *
     * @example const ic = await LocalIc.create({ subnets: [{ region: 'europe' }, { region: 'asia' }] });
     */
    static async create(options: LocalIcOptions = {}): Promise<LocalIc> {
        return new LocalIc(options);
    }

    /** What this back end offers (`instructionCounting` follows `setInstructionCounting`). */
    get capabilities(): Capabilities {
        return { faults: true, trace: true, instructionCounting: this.engine.countInstructions };
    }

    /**
     * Turns instruction counting on or off between calls: every canister moves to the other build
     * of its module with its state as it is (`Engine.setCountInstructions`). A long workload can
     * run uncounted (about twice as fast) and switch counting on for the calls it measures.
     *
     * @example ic.setInstructionCounting(true); await actor.create_loan(a); ic.getMessageTrace();
     */
    setInstructionCounting(on: boolean): void {
        this.engine.setCountInstructions(on);
    }

    /** The underlying synchronous engine (for white-box tests). */
    get raw(): Engine {
        return this.engine;
    }

    private check(): void {
        if (this.closed) throw new Error('LocalIc instance was torn down');
    }

    // ---- calls ---------------------------------------------------------------------------------

    private submit(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array,
        subnet?: Principal
    ): number | Reject {
        this.check();
        const r = this.engine.submitIngress(sender, canisterId, method, arg, subnet);
        if ('reject' in r) return r.reject;
        return r.id;
    }

    private await(id: number | Reject): Promise<Uint8Array> {
        if (typeof id !== 'number') return Promise.reject(new CallRejectedError(id));
        return new Promise((resolve, reject) => {
            this.waiters.set(id, { resolve, reject, startRound: this.engine.round });
            // Already answered (e.g. during a manual tick of a deferred call): no extra round.
            this.settle();
            if (this.waiters.has(id)) this.drive().catch(() => undefined);
        });
    }

    /** One shared driver: concurrent callers join the same rounds (no double ticking). */
    private async drive(): Promise<void> {
        if (this.driving) return;
        this.driving = true;
        try {
            await new Promise((r) => setImmediate(r));
            while (this.waiters.size > 0 && !this.closed) {
                try {
                    this.engine.tick();
                } catch (e) {
                    // An emulator bug must fail the waiting calls, not hang them.
                    for (const w of this.waiters.values()) w.reject(e as Error);
                    this.waiters.clear();
                    throw e;
                }
                this.settle();
                await new Promise((r) => setImmediate(r));
            }
        } finally {
            this.driving = false;
        }
    }

    private settle(): void {
        for (const [id, w] of [...this.waiters]) {
            const s = this.engine.ingressStatus(id);
            if (!s) {
                this.waiters.delete(id);
                w.reject(new Error(`ingress message ${id} is unknown (already read or evicted)`));
            } else if (s.status === 'done') {
                this.waiters.delete(id);
                if ('reply' in s.result) w.resolve(s.result.reply);
                else w.reject(new CallRejectedError(s.result.reject));
            } else if (this.engine.round - w.startRound >= this.maxRounds) {
                this.waiters.delete(id);
                w.reject(new Error(`call ${id} not answered after ${this.maxRounds} rounds`));
            }
        }
    }

    /**
     * Raw update call (PicJS `updateCall`): submits, runs rounds until answered, returns reply bytes.
     * A reject throws `CallRejectedError` (with `reject_code`).
     */
    async updateCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
        targetSubnetId?: PrincipalLike;
    }): Promise<Uint8Array> {
        const id = this.submit(
            o.sender ? toPrincipal(o.sender) : Principal.anonymous(),
            toPrincipal(o.canisterId),
            o.method,
            o.arg ?? new Uint8Array(IDL.encode([], [])),
            o.targetSubnetId ? toPrincipal(o.targetSubnetId) : undefined
        );
        return this.await(id);
    }

    /** Raw query call (PicJS `queryCall`): executes immediately; state changes are discarded. */
    async queryCall(o: {
        canisterId: PrincipalLike;
        method: string;
        arg?: Uint8Array;
        sender?: PrincipalLike;
    }): Promise<Uint8Array> {
        this.check();
        const r = this.engine.query(
            o.sender ? toPrincipal(o.sender) : Principal.anonymous(),
            toPrincipal(o.canisterId),
            o.method,
            o.arg ?? new Uint8Array(IDL.encode([], []))
        );
        if ('reply' in r) return r.reply;
        throw new CallRejectedError(r.reject);
    }

    /** An actor over a canister (sender anonymous until `setPrincipal`). */
    createActor<T = Record<string, (...args: unknown[]) => Promise<unknown>>>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike
    ): Actor<T> {
        return createActor<T>(idlFactory, toPrincipal(canisterId), this.transport);
    }

    /**
     * A deferred actor (as PicJS): methods submit now and resolve to a function awaiting the
     * result. `decoders` and `encoders` (emulator only) decode hot replies by hand before
     * `IDL.decode` and encode hot arguments instead of `IDL.encode`.
     */
    createDeferredActor<T = Record<string, (...args: unknown[]) => Promise<unknown>>>(
        idlFactory: IDL.InterfaceFactory,
        canisterId: PrincipalLike,
        decoders?: ReplyDecoders,
        encoders?: ArgEncoders
    ): DeferredActor<T> {
        return createDeferredActor<T>(
            idlFactory,
            toPrincipal(canisterId),
            this.transport,
            decoders,
            encoders
        );
    }

    private async mgmt(
        method: string,
        args: unknown[],
        sender?: PrincipalLike,
        subnet?: PrincipalLike
    ): Promise<unknown> {
        const sig = MANAGEMENT_METHODS[method];
        const bytes = await this.updateCall({
            canisterId: MANAGEMENT_ID,
            method,
            arg: new Uint8Array(IDL.encode(sig.args, args)),
            sender,
            targetSubnetId: subnet
        });
        const out = IDL.decode(sig.rets, bytes);
        return out[0];
    }

    // ---- canister lifecycle --------------------------------------------------------------------

    /** Creates a canister (provisional, with cycles; default 10^18 as PicJS) and returns its id. */
    async createCanister(
        o: {
            targetCanisterId?: PrincipalLike;
            sender?: PrincipalLike;
            cycles?: bigint;
            controllers?: PrincipalLike[];
            targetSubnetId?: PrincipalLike;
            freezingThreshold?: bigint;
        } = {}
    ): Promise<Principal> {
        const r = (await this.mgmt(
            'provisional_create_canister_with_cycles',
            [
                {
                    amount: [o.cycles ?? DEFAULT_CYCLES],
                    settings: [settingsArg(o)],
                    specified_id: o.targetCanisterId ? [toPrincipal(o.targetCanisterId)] : [],
                    sender_canister_version: []
                }
            ],
            o.sender,
            o.targetSubnetId ??
                (o.targetCanisterId && this.engine.subnetOf(toPrincipal(o.targetCanisterId))?.id) ??
                this.engine.subnets[0].id
        )) as { canister_id: Principal };
        return r.canister_id;
    }

    /** Installs code (chunked above 1.85 MB, as PicJS). */
    async installCode(o: CodeOptions & { targetSubnetId?: PrincipalLike }): Promise<void> {
        await this.changeCode(o, { install: null });
    }

    /** Reinstalls code: heap and stable memory are wiped. */
    async reinstallCode(o: CodeOptions): Promise<void> {
        await this.changeCode(o, { reinstall: null });
    }

    /** Upgrades code: pre_upgrade, new instance over the same stable memory, post_upgrade. */
    async upgradeCanister(o: CodeOptions): Promise<void> {
        const flags = o.upgradeModeOptions
            ? [
                  {
                      skip_pre_upgrade: o.upgradeModeOptions.skip_pre_upgrade,
                      wasm_memory_persistence: []
                  }
              ]
            : [];
        await this.changeCode(o, { upgrade: flags });
    }

    private async changeCode(o: CodeOptions, mode: unknown): Promise<void> {
        const wasm = typeof o.wasm === 'string' ? new Uint8Array(await readFile(o.wasm)) : o.wasm;
        const arg = o.arg ?? new Uint8Array(0);
        const canisterId = toPrincipal(o.canisterId);
        if (wasm.length + arg.length <= MAX_INSTALL_CODE_PAYLOAD_SIZE) {
            await this.mgmt(
                'install_code',
                [
                    {
                        mode,
                        canister_id: canisterId,
                        wasm_module: wasm,
                        arg,
                        sender_canister_version: []
                    }
                ],
                o.sender
            );
            return;
        }
        await this.mgmt('clear_chunk_store', [{ canister_id: canisterId }], o.sender);
        const hashes: { hash: Uint8Array }[] = [];
        for (let off = 0; off < wasm.length; off += WASM_CHUNK_SIZE) {
            const chunk = wasm.subarray(off, off + WASM_CHUNK_SIZE);
            hashes.push(
                (await this.mgmt(
                    'upload_chunk',
                    [{ canister_id: canisterId, chunk }],
                    o.sender
                )) as {
                    hash: Uint8Array;
                }
            );
        }
        await this.mgmt(
            'install_chunked_code',
            [
                {
                    mode,
                    target_canister: canisterId,
                    store_canister: [],
                    chunk_hashes_list: hashes,
                    wasm_module_hash: sha256(wasm),
                    arg,
                    sender_canister_version: []
                }
            ],
            o.sender
        );
    }

    /**
     * Creates a canister, installs code, returns `{ canisterId, actor }` (as PicJS `setupCanister`).
     *
     * @example
     * const { actor } = await ic.setupCanister<Svc>({ idlFactory, wasm, arg, sender, controllers: [sender] });
     */
    async setupCanister<T = Record<string, (...args: unknown[]) => Promise<unknown>>>(
        o: SetupCanisterOptions
    ): Promise<{ canisterId: Principal; actor: Actor<T> }> {
        const canisterId = await this.createCanister(o);
        await this.installCode({ canisterId, wasm: o.wasm, arg: o.arg, sender: o.sender });
        return { canisterId, actor: this.createActor<T>(o.idlFactory, canisterId) };
    }

    /** Starts a canister. */
    async startCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }): Promise<void> {
        await this.mgmt('start_canister', [{ canister_id: toPrincipal(o.canisterId) }], o.sender);
    }

    /** Stops a canister; resolves once it has no open call contexts. */
    async stopCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }): Promise<void> {
        await this.mgmt('stop_canister', [{ canister_id: toPrincipal(o.canisterId) }], o.sender);
    }

    /** Deletes a stopped canister. */
    async deleteCanister(o: { canisterId: PrincipalLike; sender?: PrincipalLike }): Promise<void> {
        await this.mgmt('delete_canister', [{ canister_id: toPrincipal(o.canisterId) }], o.sender);
    }

    /** Updates settings (controllers, freezing threshold). */
    async updateCanisterSettings(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
        controllers?: PrincipalLike[];
        freezingThreshold?: bigint;
    }): Promise<void> {
        await this.mgmt(
            'update_settings',
            [
                {
                    canister_id: toPrincipal(o.canisterId),
                    settings: settingsArg(o),
                    sender_canister_version: []
                }
            ],
            o.sender
        );
    }

    /** `canister_status` through the management canister (PicJS's camelCase shape). */
    async canisterStatus(o: {
        canisterId: PrincipalLike;
        sender?: PrincipalLike;
    }): Promise<CanisterStatusResult> {
        const r = (await this.mgmt(
            'canister_status',
            [{ canister_id: toPrincipal(o.canisterId) }],
            o.sender
        )) as {
            status: CanisterStatusResult['status'];
            settings: { controllers: Principal[]; freezing_threshold: bigint };
            module_hash: [] | [Uint8Array];
            memory_size: bigint;
            cycles: bigint;
        };
        return {
            status: r.status,
            settings: {
                controllers: r.settings.controllers,
                freezingThreshold: r.settings.freezing_threshold
            },
            moduleHash: r.module_hash[0] ?? null,
            memorySize: r.memory_size,
            cycles: r.cycles
        };
    }

    /** Controllers of a canister (read directly, as PocketIC's endpoint). */
    async getControllers(canisterId: PrincipalLike): Promise<Principal[]> {
        return [...this.engine.canister(toPrincipal(canisterId)).controllers];
    }

    /** Cycles balance. */
    async getCyclesBalance(canisterId: PrincipalLike): Promise<bigint> {
        return this.engine.canister(toPrincipal(canisterId)).cycles;
    }

    /** Adds cycles; returns the new balance. */
    async addCycles(canisterId: PrincipalLike, amount: bigint): Promise<bigint> {
        const c = this.engine.canister(toPrincipal(canisterId));
        c.cycles += amount;
        return c.cycles;
    }

    /** Full stable memory contents. */
    async getStableMemory(canisterId: PrincipalLike): Promise<Uint8Array> {
        return this.engine.canister(toPrincipal(canisterId)).stable.dump();
    }

    /** Replaces stable memory (grown to fit, as PocketIC's `setStableMemory`). */
    async setStableMemory(canisterId: PrincipalLike, stableMemory: Uint8Array): Promise<void> {
        const c = this.engine.canister(toPrincipal(canisterId));
        const sm = new StableMemory();
        sm.grow(BigInt(Math.ceil(stableMemory.length / PAGE_SIZE_BYTES)));
        sm.write(0n, stableMemory);
        c.stable = sm;
    }

    // ---- topology and time ---------------------------------------------------------------------

    /** Application subnets (id, type, size, ranges as PicJS, plus `region`). */
    async getApplicationSubnets(): Promise<SubnetTopology[]> {
        return this.engine.subnets.map((s) => ({
            id: s.id,
            type: 'Application',
            size: 13,
            canisterRanges: [
                { start: canisterIdFromIndex(s.rangeStart), end: canisterIdFromIndex(s.rangeEnd) }
            ],
            region: s.region
        }));
    }

    /** All subnets (the emulator has only application subnets). */
    async getTopology(): Promise<SubnetTopology[]> {
        return this.getApplicationSubnets();
    }

    /** The subnet hosting a canister, or null. */
    async getCanisterSubnetId(canisterId: PrincipalLike): Promise<Principal | null> {
        return this.engine.subnetOf(toPrincipal(canisterId))?.id ?? null;
    }

    /** Executes `times` rounds. */
    async tick(times = 1): Promise<void> {
        this.check();
        for (let i = 0; i < Math.max(0, Math.floor(times)); i++) {
            this.engine.tick();
            this.settle();
        }
    }

    /** Current time in milliseconds since the epoch. */
    async getTime(): Promise<number> {
        return Number(this.engine.timeNs / 1_000_000n);
    }

    /** Sets the time (ms or Date); it may not go backwards (IC time is monotonic). */
    async setTime(time: Date | number): Promise<void> {
        const ms = time instanceof Date ? time.getTime() : time;
        const ns = BigInt(Math.floor(ms)) * 1_000_000n;
        if (ns < this.engine.timeNs) throw new Error('the emulator clock cannot go backwards');
        this.engine.timeNs = ns;
    }

    /** Moves the clock forward by `ms` (no round runs; timers fire in the next `tick`). */
    async advanceTime(ms: number): Promise<void> {
        if (ms < 0) throw new Error('advanceTime needs a non-negative duration');
        this.engine.timeNs += BigInt(Math.floor(ms * 1_000_000));
    }

    /** Number of rounds executed so far. */
    getRound(): number {
        return this.engine.round;
    }

    // ---- emulator-only extras ------------------------------------------------------------------

    /** Fault: the canister's replies take `rounds` extra rounds. */
    setCanisterDelay(canisterId: PrincipalLike, rounds: number): void {
        this.engine.setDelay(toPrincipal(canisterId), rounds);
    }

    /** Fault: the canister's next `n` messages trap (and roll back) before running. */
    injectTraps(canisterId: PrincipalLike, n: number): void {
        this.engine.injectTraps(toPrincipal(canisterId), n);
    }

    /** The bounded message trace (oldest first). */
    getMessageTrace(): TraceEntry[] {
        return this.engine.getTrace();
    }

    /** Empties the message trace. */
    clearMessageTrace(): void {
        this.engine.clearTrace();
    }

    /** Ends the instance; pending calls are rejected. */
    async tearDown(): Promise<void> {
        this.closed = true;
        for (const w of this.waiters.values())
            w.reject(new Error('LocalIc instance was torn down'));
        this.waiters.clear();
    }
}

function settingsArg(o: { controllers?: PrincipalLike[]; freezingThreshold?: bigint }) {
    return {
        controllers: o.controllers ? [o.controllers.map(toPrincipal)] : [],
        compute_allocation: [],
        memory_allocation: [],
        freezing_threshold: o.freezingThreshold === undefined ? [] : [o.freezingThreshold],
        reserved_cycles_limit: [],
        log_visibility: [],
        wasm_memory_limit: [],
        wasm_memory_threshold: [],
        environment_variables: []
    };
}
