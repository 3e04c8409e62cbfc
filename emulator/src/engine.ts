import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import {
    Canister,
    SnapshotPool,
    type CallContext,
    type CodeInfo,
    type ExecContext,
    type ExecKind,
    type ExecResult,
    type Host,
    type OutgoingCall,
    type Origin,
    type Response
} from './canister';
import {
    CMC_ID,
    created as cmcCreated,
    creationFailed as cmcCreationFailed,
    planCmcRequest,
    type CmcHost
} from './cmc';
import { compileWithDirtyPages } from './dirty_pages';
import { ErrorCode, RejectCode, reject, type Reject } from './errors';
import { canisterIdFromIndex, canisterIndex, MANAGEMENT_ID, subnetIdFor } from './ids';
import { instrumentForCounting } from './instrument';
import { MANAGEMENT_METHODS } from './management_idl';
import { StableMemory } from './stable_memory';
import { decodeModule, exposeInternals, sha256 } from './wasm_binary';

/** Texts of principals seen so far, by object: `toText` (CRC32 and base32) is hot in routing. */
const PRINCIPAL_TEXTS = new WeakMap<object, string>();
/** The same by bytes, for the fresh principal objects of each call (bounded: cleared when full). */
const TEXTS_BY_BYTES = new Map<string, string>();
const MAX_TEXTS_BY_BYTES = 65_536;

/** `p.toText()`, computed once per principal (principals are immutable). */
export function textOf(p: Principal): string {
    let text = PRINCIPAL_TEXTS.get(p);
    if (text !== undefined) return text;
    const key = String.fromCharCode.apply(null, p.toUint8Array() as unknown as number[]);
    text = TEXTS_BY_BYTES.get(key);
    if (text === undefined) {
        text = p.toText();
        if (TEXTS_BY_BYTES.size >= MAX_TEXTS_BY_BYTES) TEXTS_BY_BYTES.clear();
        TEXTS_BY_BYTES.set(key, text);
    }
    PRINCIPAL_TEXTS.set(p, text);
    return text;
}

const MANAGEMENT_TEXT = MANAGEMENT_ID.toText();
const CMC_TEXT = CMC_ID.toText();

/** Message size and instruction limits of the IC (bytes / instructions). */
export const LIMITS = {
    ingress_payload_bytes: 2 * 1024 * 1024,
    xnet_request_bytes: 2 * 1024 * 1024,
    same_subnet_request_bytes: 10 * 1024 * 1024,
    reply_bytes: 2 * 1024 * 1024,
    query_reply_bytes: 3 * 1024 * 1024,
    chunk_bytes: 1024 * 1024,
    max_chunks: 100,
    update_instructions: 40_000_000_000n,
    query_instructions: 5_000_000_000n,
    install_instructions: 300_000_000_000n,
    inspect_instructions: 200_000_000n,
    max_controllers: 10,
    input_queue_messages: 500,
    composite_query_depth: 16,
    composite_query_calls: 1_000
} as const;

/** Execution and ingress fees charged to canisters (13-node application subnet, cycles). */
export const FEES = {
    update_message: 5_000_000n,
    ten_instructions: 4n,
    ingress_message: 1_200_000n,
    ingress_byte: 2_000n
} as const;
/** Cycles fee of `create_canister`, deducted from the attached cycles (as on a 13-node subnet). */
export const CREATE_CANISTER_FEE = 500_000_000_000n;
/** Cycles a canister gets from `provisional_create_canister_with_cycles` without an amount (as PocketIC). */
export const DEFAULT_PROVISIONAL_CYCLES = 1_000_000_000_000_000n;
/** Canister ids per subnet range (as the IC allocates ranges of 2^20). */
export const CANISTER_RANGE_SIZE = 1n << 20n;
/** Rounds a message takes between two subnets (one way). */
export const XNET_LATENCY_ROUNDS = 2;
/** Compiled modules shared by every engine in the process, by module hash and counting mode. */
const MODULE_CACHE = new Map<string, CodeInfo>();
const MAX_CACHED_MODULES = 64;
/** Messages in flight between subnets (responses are never dropped; requests beyond are rejected). */
export const MAX_IN_FLIGHT = 100_000;
/** Ingress messages submitted and not yet inducted. */
export const MAX_PENDING_INGRESS = 100_000;
/** Ingress messages whose status is kept until read. */
export const MAX_INGRESS_HISTORY = 100_000;
/** Inner iterations per round: same-subnet messages produced in a round are executed in it. */
export const MAX_INNER_ITERATIONS = 100;

/** One subnet. */
export interface SubnetInfo {
    index: number;
    id: Principal;
    region: string;
    rangeStart: bigint;
    rangeEnd: bigint;
    nextIndex: bigint;
}

/** A message in flight or in an input queue. */
type Message =
    | {
          type: 'request';
          to: Principal;
          caller: Principal;
          method: string;
          arg: Uint8Array;
          cycles: bigint;
          origin: Origin;
          /** Subnet the management canister handles the request on. */
          subnet: number;
      }
    | {
          type: 'response';
          to: Principal;
          callbackId: number;
          response: Response;
          refund: bigint;
      };

interface InFlight {
    deliverRound: number;
    msg: Message;
}

/** One entry of the message trace. */
export interface TraceEntry {
    round: number;
    canister: string;
    method: string;
    kind:
        | 'ingress'
        | 'inspect'
        | 'request'
        | 'response'
        | 'timer'
        | 'query'
        | 'install'
        | 'management';
    caller: string;
    instructions: bigint;
    outcome: 'reply' | 'reject' | 'trap' | 'no-response';
    detail?: string;
}

/** Status of an ingress message. */
export type IngressStatus =
    { status: 'pending' } | { status: 'done'; result: { reply: Uint8Array } | { reject: Reject } };

/** Options of the engine. */
export interface EngineOptions {
    subnets?: { region?: string }[];
    countInstructions?: boolean;
    /** Emulate the Cycles Minting Canister at its mainnet id on subnet 0 (`src/cmc.ts`). */
    cmc?: boolean;
    seed?: number;
    initialTimeMs?: number;
    traceCapacity?: number;
    onDebugPrint?: (canisterId: string, text: string) => void;
    // ---- wall-clock hook (src/http: a served network) ----
    /** The clock follows real time: each round starts at max(previous + 1 ns, now). */
    wallClock?: boolean;
    // ---- end wall-clock hook ----
}

interface StopWaiter {
    reply: (r: Response) => void;
}

/**
 * The emulated IC: subnets, canisters, message queues, rounds, the clock, and the management
 * canister. Synchronous; `LocalIc` wraps it in PicJS's async shape.
 */
export class Engine {
    readonly subnets: SubnetInfo[];
    readonly canisters = new Map<string, Canister>();
    /** Instruction-counting mode (`EngineOptions.countInstructions`, `setCountInstructions`). */
    private counting: boolean;
    /** Wall-clock mode (`EngineOptions.wallClock`). */
    readonly wallClock: boolean;
    // ---- persistence hook (src/http/persist.ts) ----
    /** Installed module bytes by module hash (hex), so a network can be saved; unused ones pruned. */
    readonly moduleBytes = new Map<string, Uint8Array>();
    // ---- end persistence hook ----
    round = 0;
    timeNs: bigint;
    private inFlight: InFlight[] = [];
    private readonly queues = new Map<string, Message[]>();
    private readonly mgmtQueues: Message[][];
    private readonly ingress = new Map<number, IngressStatus>();
    private pendingIngress: { id: number; msg: Message }[] = [];
    /** Answers of a slow canister's ingress messages, published `delay` rounds later. */
    private delayedIngress: { round: number; id: number; status: IngressStatus }[] = [];
    private nextIngressId = 1;
    private readonly stopWaiters = new Map<string, StopWaiter[]>();
    private readonly delays = new Map<string, number>();
    private readonly traps = new Map<string, number>();
    private trace: TraceEntry[] = [];
    private readonly traceCapacity: number;
    private randCounter = 0n;
    private readonly seed: number;
    private readonly onDebugPrint?: (canisterId: string, text: string) => void;
    private readonly host: Host;
    // ---- Cycles Minting Canister hook (src/cmc.ts) ----
    private readonly cmcEnabled: boolean;
    private cmcQueue: Extract<Message, { type: 'request' }>[] = [];
    /** CMC work waiting for its management hop on another subnet: run at `round`. */
    private cmcLater: { round: number; run: () => void }[] = [];
    // ---- end CMC hook ----

    constructor(options: EngineOptions = {}) {
        const subnets = options.subnets?.length ? options.subnets : [{}];
        this.subnets = subnets.map((s, i) => ({
            index: i,
            id: subnetIdFor(i),
            region: s.region ?? 'default',
            rangeStart: BigInt(i) * CANISTER_RANGE_SIZE,
            rangeEnd: BigInt(i + 1) * CANISTER_RANGE_SIZE - 1n,
            nextIndex: BigInt(i) * CANISTER_RANGE_SIZE
        }));
        this.mgmtQueues = this.subnets.map(() => []);
        this.counting = options.countInstructions ?? false;
        this.cmcEnabled = options.cmc ?? false;
        this.seed = options.seed ?? 42;
        this.timeNs = BigInt(options.initialTimeMs ?? Date.UTC(2026, 0, 1)) * 1_000_000n;
        this.wallClock = options.wallClock ?? false;
        if (this.wallClock) this.timeNs = BigInt(Date.now()) * 1_000_000n;
        this.traceCapacity = options.traceCapacity ?? 10_000;
        this.onDebugPrint = options.onDebugPrint;
        this.host = {
            timeNs: () => this.timeNs,
            isCanister: (p) => this.canisters.has(textOf(p)),
            requestLimit: (from, to) => this.requestLimit(from, to),
            debugPrint: (c, t) => this.onDebugPrint?.(textOf(c), t),
            subnetId: (i) => this.subnets[i].id,
            snapshots: new SnapshotPool(),
            createCanisterFee: CREATE_CANISTER_FEE,
            countInstructions: this.counting
        };
    }

    /** True while every canister runs its instruction-counting build. */
    get countInstructions(): boolean {
        return this.counting;
    }

    /**
     * Turns instruction counting on or off for every canister, between messages: each installed
     * canister moves to the other build of its module (`ic-wasm instrument`ed or plain) with its
     * heap, globals, stable memory and system state as they are. A long run can go uncounted (the
     * counting build runs about twice as slow) and count only the calls it measures.
     */
    setCountInstructions(on: boolean): void {
        if (on === this.counting) return;
        this.counting = on;
        this.host.countInstructions = on;
        for (const c of this.canisters.values()) {
            if (!c.code) continue;
            const wasm = this.moduleBytes.get(Buffer.from(c.code.moduleHash).toString('hex'));
            if (!wasm) throw new Error(`setCountInstructions: module of ${textOf(c.id)} not kept`);
            c.switchBuild(this.loadCode(wasm));
        }
    }

    // ---- topology -------------------------------------------------------------------------------

    /** The subnet that hosts a canister id (by range), or undefined. */
    subnetOf(p: Principal): SubnetInfo | undefined {
        const idx = canisterIndex(p);
        if (idx === null) return undefined;
        return this.subnets.find((s) => idx >= s.rangeStart && idx <= s.rangeEnd);
    }

    private subnetById(id: Principal): SubnetInfo {
        const s = this.subnets.find((x) => textOf(x.id) === textOf(id));
        if (!s) throw new Error(`no subnet ${textOf(id)}`);
        return s;
    }

    private requestLimit(from: Principal, to: Principal): number {
        const a = this.subnetOf(from);
        const b = textOf(to) === MANAGEMENT_TEXT ? a : this.subnetOf(to);
        return a && b && a.index === b.index
            ? LIMITS.same_subnet_request_bytes
            : LIMITS.xnet_request_bytes;
    }

    /** Looks a canister up or throws. */
    canister(id: Principal): Canister {
        const c = this.canisters.get(textOf(id));
        if (!c) throw new Error(`canister ${textOf(id)} not found`);
        return c;
    }

    /** Creates a canister on a subnet (no code). */
    createCanister(
        subnet: SubnetInfo,
        controllers: Principal[],
        cycles: bigint,
        specified?: Principal
    ): Canister {
        let id = specified;
        // Skip ids taken by canisters created with a specified id.
        for (let i = 0; id === undefined && i < 1_000_000; i++) {
            if (subnet.nextIndex > subnet.rangeEnd)
                throw new Error('subnet canister range exhausted');
            const next = canisterIdFromIndex(subnet.nextIndex++);
            if (!this.canisters.has(textOf(next)) && !this.isCmc(next)) id = next;
        }
        if (id === undefined) throw new Error('no free canister id');
        const c = new Canister(id, subnet.index, controllers, cycles, this.host);
        this.canisters.set(textOf(id), c);
        this.queues.set(textOf(id), []);
        return c;
    }

    // ---- code -----------------------------------------------------------------------------------

    /** Compiles (cached by hash of the installed module) a module for installation. */
    loadCode(wasm: Uint8Array): CodeInfo {
        // As the replica: the module hash is over the bytes as installed (gzipped or not).
        const moduleHash = sha256(wasm);
        const key = `${Buffer.from(moduleHash).toString('hex')}:${this.countInstructions}`;
        // ---- persistence hook: keep the bytes of modules in use (bounded by the canisters) ----
        if (this.moduleBytes.size >= MAX_CACHED_MODULES) {
            const used = new Set(
                [...this.canisters.values()].map((x) =>
                    x.code ? Buffer.from(x.code.moduleHash).toString('hex') : ''
                )
            );
            for (const h of [...this.moduleBytes.keys()])
                if (!used.has(h)) this.moduleBytes.delete(h);
        }
        this.moduleBytes.set(Buffer.from(moduleHash).toString('hex'), wasm);
        // ---- end persistence hook ----
        const cached = MODULE_CACHE.get(key);
        if (cached) return cached;
        const raw = decodeModule(wasm);
        const prepared = this.countInstructions ? instrumentForCounting(raw) : raw;
        const rewritten = exposeInternals(prepared);
        // Dirty-page tracking (src/dirty_pages.ts) rewrites the module after the other rewrites.
        const { module, dirtyPages, heapBase } = compileWithDirtyPages(rewritten.bytes);
        const exportNames = new Set(WebAssembly.Module.exports(module).map((e) => e.name));
        validateExports(exportNames);
        const info: CodeInfo = {
            module,
            moduleHash,
            globalExports: rewritten.globalExports,
            exportNames,
            dirtyPages,
            heapBase
        };
        // Bound the cache: a test run uses a handful of distinct modules.
        if (MODULE_CACHE.size >= MAX_CACHED_MODULES) {
            MODULE_CACHE.delete(MODULE_CACHE.keys().next().value!);
        }
        MODULE_CACHE.set(key, info);
        return info;
    }

    /**
     * Installs code (install / reinstall / upgrade) atomically: any trap restores the previous
     * code, heap, stable memory and system state. Returns a reject or null.
     */
    install(
        c: Canister,
        wasm: Uint8Array,
        arg: Uint8Array,
        mode: 'install' | 'reinstall' | 'upgrade',
        caller: Principal,
        skipPreUpgrade = false
    ): Reject | null {
        const invalidWasm = (e: unknown) =>
            reject(
                RejectCode.CANISTER_ERROR,
                ErrorCode.CanisterInvalidWasm,
                `Error from Canister ${textOf(c.id)}: Canister's Wasm module is not valid: ${(e as Error).message}`
            );
        let code: CodeInfo;
        try {
            code = this.loadCode(wasm);
        } catch (e) {
            return invalidWasm(e);
        }
        if (c.cycles < FEES.update_message) {
            return reject(
                RejectCode.SYS_TRANSIENT,
                ErrorCode.CanisterOutOfCycles,
                `Canister ${textOf(c.id)} is out of cycles: installing code needs at least ${FEES.update_message} cycles`
            );
        }
        if (mode === 'install' && c.hasCode) {
            return reject(
                RejectCode.CANISTER_ERROR,
                ErrorCode.CanisterNonEmpty,
                `Canister ${textOf(c.id)} cannot be installed because the canister is not empty. Try installing with mode='reinstall' instead.`
            );
        }
        if (mode === 'upgrade' && !c.hasCode) {
            return reject(
                RejectCode.DESTINATION_INVALID,
                ErrorCode.CanisterWasmModuleNotFound,
                `Error from Canister ${textOf(c.id)}: Attempted to execute a message, but the canister contains no Wasm module.`
            );
        }
        const old = {
            code: c.code,
            instance: c.instance,
            stable: c.stable,
            timer: c.globalTimerNs,
            cycles: c.cycles,
            certified: c.certifiedData
        };
        const restore = () => {
            c.code = old.code;
            c.instance = old.instance;
            c.stable = old.stable;
            c.globalTimerNs = old.timer;
            c.cycles = old.cycles;
            c.certifiedData = old.certified;
        };
        const ctx = (kind: ExecKind, a: Uint8Array): ExecContext => ({
            kind,
            arg: a,
            caller,
            callContext: null,
            methodName: '',
            rejectCode: 0,
            rejectMessage: '',
            refunded: 0n,
            replyLimit: 0,
            instructionLimit: LIMITS.install_instructions,
            discardState: false,
            ownTransaction: false
        });
        let total = 0n;
        const fail = (phase: string, r: ExecResult): Reject => {
            this.chargeExecution(c, total);
            this.record(c, phase, 'install', caller, r.instructions, 'trap', r.trap!.message);
            const t = this.trapReject(c, r);
            return { ...t, reject_message: `${t.reject_message} (in ${phase})` };
        };
        if (mode === 'upgrade') {
            const sys = c.beginTransaction();
            if (!skipPreUpgrade && c.code!.exportNames.has('canister_pre_upgrade')) {
                const r = c.execute('canister_pre_upgrade', ctx('G', new Uint8Array(0)));
                total += r.instructions;
                if (r.trap) {
                    c.rollback(sys);
                    return fail('canister_pre_upgrade', r);
                }
            }
            // The old heap is restored in memory (for rollback) but the stable writes stay.
            const stableAfterPre = c.stable.clone();
            c.rollback(sys);
            old.instance = c.instance;
            c.stable = stableAfterPre;
            try {
                c.instance = c.instantiate(code);
            } catch (e) {
                restore();
                return invalidWasm(e);
            }
            c.code = code;
            c.globalTimerNs = 0n;
            const entry = code.exportNames.has('canister_post_upgrade')
                ? 'canister_post_upgrade'
                : null;
            if (entry) {
                // pre_upgrade and post_upgrade share one instruction budget.
                const r = c.execute(entry, {
                    ...ctx('I', arg),
                    instructionLimit: LIMITS.install_instructions - total
                });
                total += r.instructions;
                if (r.trap) {
                    restore();
                    return fail(entry, r);
                }
            }
        } else {
            c.stable = new StableMemory();
            c.code = code;
            try {
                c.instance = c.instantiate(code);
            } catch (e) {
                restore();
                return invalidWasm(e);
            }
            c.globalTimerNs = 0n;
            c.certifiedData = new Uint8Array(0);
            if (code.exportNames.has('canister_init')) {
                const r = c.execute('canister_init', ctx('I', arg));
                total += r.instructions;
                if (r.trap) {
                    restore();
                    return fail('canister_init', r);
                }
            }
        }
        c.stable.commit();
        this.chargeExecution(c, total);
        c.version += 1n;
        if (mode !== 'install' || old.code) this.dropCallbacks(c);
        this.record(c, mode, 'install', caller, total, 'reply');
        return null;
    }

    /**
     * Removes the code and state (as `uninstall_code`): every open call context is rejected with
     * "Canister has been uninstalled." (code 4) and responses to its calls are ignored.
     */
    uninstall(c: Canister): void {
        for (const cc of [...c.callContexts.values()]) {
            if (!cc.replied) {
                this.answer(
                    cc.origin,
                    {
                        reject: {
                            code: RejectCode.CANISTER_REJECT,
                            message: 'Canister has been uninstalled.'
                        }
                    },
                    cc.cyclesAvailable,
                    c.subnetIndex,
                    ErrorCode.CanisterRejectedMessage
                );
            }
            c.closeContext(cc);
        }
        c.callbacks.clear();
        c.code = null;
        c.instance = null;
        c.stable = new StableMemory();
        c.globalTimerNs = 0n;
        c.certifiedData = new Uint8Array(0);
        c.version += 1n;
        c.generation += 1;
    }

    /** After a code change, pending callbacks can no longer run: their contexts are rejected. */
    private dropCallbacks(c: Canister): void {
        c.generation += 1;
    }

    // ---- ingress and queries ----------------------------------------------------------------

    /**
     * Submits an ingress update call: validates it (size, inspect_message) now and inducts it at
     * the start of the next round. Returns a message id, or a reject for synchronous refusal.
     */
    submitIngress(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array,
        effectiveSubnet?: Principal
    ): { id: number } | { reject: Reject } {
        if (arg.length + method.length > LIMITS.ingress_payload_bytes) {
            return {
                reject: reject(
                    RejectCode.SYS_FATAL,
                    'HTTP413',
                    `Request is too large: message byte size ${arg.length} is larger than the max allowed ${LIMITS.ingress_payload_bytes}`
                )
            };
        }
        if (this.pendingIngress.length >= MAX_PENDING_INGRESS) {
            return {
                reject: reject(
                    RejectCode.SYS_TRANSIENT,
                    ErrorCode.IngressHistoryFull,
                    `Too many ingress messages waiting for the next round (${MAX_PENDING_INGRESS})`
                )
            };
        }
        const isMgmt = textOf(canisterId) === MANAGEMENT_TEXT;
        let subnet = 0;
        if (isMgmt) {
            if (
                method === 'create_canister' ||
                method === 'raw_rand' ||
                method === 'deposit_cycles'
            ) {
                return {
                    reject: reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Only canisters can call ic00 method ${method}`
                    )
                };
            }
            subnet = effectiveSubnet
                ? this.subnetById(effectiveSubnet).index
                : this.effectiveSubnet(method, arg);
        } else {
            const c = this.canisters.get(textOf(canisterId));
            if (c) {
                subnet = c.subnetIndex;
                const r = this.inspect(c, sender, method, arg);
                if (r) return { reject: r };
            }
        }
        const id = this.nextIngressId++;
        if (this.ingress.size >= MAX_INGRESS_HISTORY) {
            // Forget the oldest answered message nobody collected (bounded history, as the replica's).
            for (const [k, v] of this.ingress) {
                if (v.status === 'done') {
                    this.ingress.delete(k);
                    break;
                }
            }
        }
        this.ingress.set(id, { status: 'pending' });
        this.pendingIngress.push({
            id,
            msg: {
                type: 'request',
                to: canisterId,
                caller: sender,
                method,
                arg,
                cycles: 0n,
                origin: { kind: 'ingress', messageId: id },
                subnet
            }
        });
        return { id };
    }

    private inspect(
        c: Canister,
        sender: Principal,
        method: string,
        arg: Uint8Array
    ): Reject | null {
        if (!c.code || !c.code.exportNames.has('canister_inspect_message')) return null;
        if (c.status !== 'running') return null;
        const r = c.execute('canister_inspect_message', {
            ...this.baseCtx('F', arg, sender, null, LIMITS.inspect_instructions),
            methodName: method,
            discardState: true
        });
        this.record(
            c,
            method,
            'inspect',
            sender,
            r.instructions,
            r.trap ? 'trap' : r.accepted ? 'reply' : 'reject'
        );
        if (r.trap) return this.trapReject(c, r);
        if (!r.accepted) {
            return reject(
                RejectCode.CANISTER_REJECT,
                ErrorCode.CanisterRejectedMessage,
                `Error from Canister ${textOf(c.id)}: Canister rejected the message`
            );
        }
        return null;
    }

    /** Status of an ingress message (undefined if unknown); a finished one is forgotten once read. */
    ingressStatus(id: number): IngressStatus | undefined {
        const s = this.ingress.get(id);
        if (!s) return undefined;
        if (s.status === 'done') this.ingress.delete(id);
        return s;
    }

    private effectiveSubnet(method: string, arg: Uint8Array): number {
        const m = MANAGEMENT_METHODS[method];
        if (!m || m.args.length === 0) return 0;
        try {
            const [a] = IDL.decode(m.args, arg) as unknown as [Record<string, unknown>];
            const id = (a.canister_id ?? a.target_canister) as Principal | undefined;
            if (id) return this.subnetOf(id)?.index ?? 0;
        } catch {
            // Undecodable: the handler rejects it on its subnet 0.
        }
        return 0;
    }

    /** Executes a query (or composite query) immediately on the current state; changes are discarded. */
    query(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array
    ): { reply: Uint8Array } | { reject: Reject } {
        if (arg.length + method.length > LIMITS.ingress_payload_bytes) {
            return {
                reject: reject(
                    RejectCode.SYS_FATAL,
                    'HTTP413',
                    `Request is too large: message byte size ${arg.length} is larger than the max allowed ${LIMITS.ingress_payload_bytes}`
                )
            };
        }
        const c = this.canisters.get(textOf(canisterId));
        if (!c) {
            return {
                reject: reject(
                    RejectCode.DESTINATION_INVALID,
                    ErrorCode.CanisterNotFound,
                    `Canister ${textOf(canisterId)} not found`
                )
            };
        }
        const pre = this.admissionReject(c, false);
        if (pre) return { reject: pre };
        return this.runQuery(c, sender, method, arg, [], { calls: 0, instructions: 0n });
    }

    private runQuery(
        c: Canister,
        sender: Principal,
        method: string,
        arg: Uint8Array,
        stack: string[],
        budget: { calls: number; instructions: bigint }
    ): { reply: Uint8Array } | { reject: Reject } {
        const code = c.code!;
        const composite = code.exportNames.has(`canister_composite_query ${method}`);
        const entry = composite ? `canister_composite_query ${method}` : `canister_query ${method}`;
        if (!code.exportNames.has(entry)) {
            return {
                reject: reject(
                    RejectCode.DESTINATION_INVALID,
                    ErrorCode.CanisterMethodNotFound,
                    `Error from Canister ${textOf(c.id)}: Canister has no query method '${method}'.`
                )
            };
        }
        const cc = c.openContext({ kind: 'query' }, sender, method, 0n, this.round);
        // The whole query runs in a transaction that is always rolled back; callbacks nest inside.
        const sys = c.beginTransaction();
        try {
            const base = this.baseCtx(
                composite ? 'CQ' : 'NRQ',
                arg,
                sender,
                cc,
                LIMITS.query_instructions
            );
            const r = c.execute(entry, {
                ...base,
                replyLimit: LIMITS.query_reply_bytes,
                ownTransaction: false
            });
            budget.instructions += r.instructions;
            this.record(c, method, 'query', sender, r.instructions, outcomeOf(r));
            if (r.trap) return { reject: this.trapReject(c, r) };
            let response = r.response;
            let lastTrap: ExecResult | null = null;
            const calls = [...r.calls];
            const callStack = [...stack, textOf(c.id)];
            // Calls run synchronously, each followed by its callback; bounded by depth and count.
            while (calls.length > 0) {
                const call = calls.shift()!;
                budget.calls += 1;
                if (
                    budget.calls > LIMITS.composite_query_calls ||
                    callStack.length > LIMITS.composite_query_depth
                ) {
                    return {
                        reject: reject(
                            RejectCode.CANISTER_ERROR,
                            ErrorCode.QueryCallGraphTooDeep,
                            `Error from Canister ${textOf(c.id)}: composite query call graph too large or too deep`
                        )
                    };
                }
                const res = this.compositeCall(c, call, callStack, budget);
                cc.outstanding -= 1;
                const isReply = 'reply' in res;
                const cbCtx: ExecContext = {
                    ...this.baseCtx(
                        isReply ? 'CRy' : 'CRt',
                        isReply ? res.reply : new Uint8Array(0),
                        sender,
                        cc,
                        LIMITS.query_instructions
                    ),
                    rejectCode: isReply ? 0 : res.reject.reject_code,
                    rejectMessage: isReply ? '' : res.reject.reject_message,
                    replyLimit: LIMITS.query_reply_bytes
                };
                // A trapping callback is rolled back alone (nested transaction), then cleaned up.
                const cr = c.execute(isReply ? call.callback.reply : call.callback.reject, cbCtx);
                budget.instructions += cr.instructions;
                // Traced like an update's response, so the trace sums to the call graph's total.
                this.record(
                    c,
                    call.method,
                    'query',
                    call.callee,
                    cr.instructions,
                    outcomeOf(cr),
                    'callback'
                );
                if (cr.trap) {
                    lastTrap = cr;
                    if (call.callback.cleanup) {
                        const cl = c.execute(call.callback.cleanup, {
                            ...this.baseCtx(
                                'CC',
                                new Uint8Array(0),
                                sender,
                                cc,
                                LIMITS.query_instructions
                            ),
                            rejectCode: cbCtx.rejectCode
                        });
                        budget.instructions += cl.instructions;
                        this.record(
                            c,
                            call.method,
                            'query',
                            call.callee,
                            cl.instructions,
                            cl.trap ? 'trap' : 'no-response',
                            'cleanup'
                        );
                    }
                    continue;
                }
                if (cr.response && !response) response = cr.response;
                calls.push(...cr.calls);
            }
            if (this.countInstructions && budget.instructions > LIMITS.query_instructions) {
                return {
                    reject: reject(
                        RejectCode.CANISTER_ERROR,
                        ErrorCode.QueryCallGraphTotalInstructionLimitExceeded,
                        `Error from Canister ${textOf(c.id)}: the composite query call graph exceeded the limit of ${LIMITS.query_instructions} instructions.`
                    )
                };
            }
            if (!response) {
                return {
                    reject: lastTrap
                        ? this.trapReject(c, lastTrap)
                        : reject(
                              RejectCode.CANISTER_ERROR,
                              ErrorCode.CanisterDidNotReply,
                              `Error from Canister ${textOf(c.id)}: Canister did not reply to the call`
                          )
                };
            }
            if ('reply' in response) return { reply: response.reply };
            return {
                reject: reject(
                    response.reject.code,
                    ErrorCode.CanisterRejectedMessage,
                    response.reject.message
                )
            };
        } finally {
            c.closeContext(cc);
            c.rollback(sys);
        }
    }

    private compositeCall(
        caller: Canister,
        call: OutgoingCall,
        stack: string[],
        budget: { calls: number; instructions: bigint }
    ): { reply: Uint8Array } | { reject: Reject } {
        const target = this.canisters.get(textOf(call.callee));
        if (!target) {
            return {
                reject: reject(
                    RejectCode.DESTINATION_INVALID,
                    ErrorCode.CanisterNotFound,
                    `Canister ${textOf(call.callee)} not found`
                )
            };
        }
        if (target.subnetIndex !== caller.subnetIndex) {
            return {
                reject: reject(
                    RejectCode.CANISTER_ERROR,
                    ErrorCode.CanisterContractViolation,
                    `Error from Canister ${textOf(caller.id)}: Composite query cannot be used to call canisters on other subnets (${textOf(call.callee)})`
                )
            };
        }
        const pre = this.admissionReject(target, false);
        if (pre) return { reject: pre };
        return this.runQuery(target, caller.id, call.method, call.arg, stack, budget);
    }

    // ---- rounds ---------------------------------------------------------------------------------

    /**
     * Executes one round: time advances by 1 ns, due cross-subnet messages and submitted ingress
     * are inducted, due timers fire, then every canister executes its input queue; messages that
     * stay on the subnet are executed within the same round (bounded inner iterations).
     */
    tick(): void {
        this.round += 1;
        this.timeNs += 1n;
        if (this.wallClock) {
            const wallNs = BigInt(Date.now()) * 1_000_000n;
            if (wallNs > this.timeNs) this.timeNs = wallNs;
        }
        const due = this.inFlight.filter((f) => f.deliverRound <= this.round);
        this.inFlight = this.inFlight.filter((f) => f.deliverRound > this.round);
        for (const f of due) this.enqueue(f.msg);
        this.runDueCmcWork();
        for (const d of this.delayedIngress.filter((x) => x.round <= this.round)) {
            this.ingress.set(d.id, d.status);
        }
        this.delayedIngress = this.delayedIngress.filter((x) => x.round > this.round);
        const ingress = this.pendingIngress;
        this.pendingIngress = [];
        for (const { msg } of ingress) this.enqueue(msg);
        for (const c of [...this.canisters.values()]) {
            if (!c.hasCode || c.status !== 'running') continue;
            this.runSystemTask(c, 'canister_heartbeat');
            if (c.globalTimerNs !== 0n && c.globalTimerNs <= this.timeNs) {
                // The timer is deactivated when it fires; the handler may set it again.
                c.globalTimerNs = 0n;
                this.runSystemTask(c, 'canister_global_timer');
            }
        }
        for (let i = 0; i < MAX_INNER_ITERATIONS; i++) {
            let worked = false;
            for (const s of this.subnets) {
                const mq = this.mgmtQueues[s.index].splice(0);
                for (const m of mq) {
                    worked = true;
                    this.handleManagement(m);
                }
            }
            for (const m of this.cmcQueue.splice(0)) {
                worked = true;
                this.handleCmc(m);
            }
            for (const c of [...this.canisters.values()]) {
                const q = this.queues.get(textOf(c.id));
                if (!q || q.length === 0) continue;
                const batch = q.splice(0);
                worked = true;
                for (const m of batch) this.deliver(c, m);
            }
            this.completeStops();
            if (!worked) break;
        }
    }

    /** True when nothing is queued, in flight, or pending (timers aside). */
    get idle(): boolean {
        if (this.inFlight.length || this.pendingIngress.length || this.delayedIngress.length) {
            return false;
        }
        if (this.mgmtQueues.some((q) => q.length)) return false;
        if (this.cmcQueue.length || this.cmcLater.length) return false;
        for (const q of this.queues.values()) if (q.length) return false;
        return true;
    }

    private enqueue(msg: Message): void {
        if (textOf(msg.to) === MANAGEMENT_TEXT && msg.type === 'request') {
            this.mgmtQueues[msg.subnet].push(msg);
            return;
        }
        if (msg.type === 'request' && this.isCmc(msg.to)) {
            this.cmcQueue.push(msg);
            return;
        }
        const q = this.queues.get(textOf(msg.to));
        if (!q) {
            if (msg.type === 'request') {
                this.rejectRequest(
                    msg,
                    reject(
                        RejectCode.DESTINATION_INVALID,
                        ErrorCode.CanisterNotFound,
                        `Canister ${textOf(msg.to)} not found`
                    )
                );
            }
            return;
        }
        if (msg.type === 'request' && q.length >= LIMITS.input_queue_messages) {
            this.rejectRequest(
                msg,
                reject(
                    RejectCode.SYS_TRANSIENT,
                    ErrorCode.CanisterQueueFull,
                    `Canister ${textOf(msg.to)} input queue is full`
                )
            );
            return;
        }
        q.push(msg);
    }

    /** Routes a message: same subnet now (this round), across subnets after the XNet latency. */
    private route(msg: Message, fromSubnet: number, toSubnet: number, extraRounds = 0): void {
        const latency = (fromSubnet === toSubnet ? 0 : XNET_LATENCY_ROUNDS) + extraRounds;
        if (latency === 0) {
            this.enqueue(msg);
        } else if (msg.type === 'request' && this.inFlight.length >= MAX_IN_FLIGHT) {
            // Streams between subnets are bounded; a request beyond the bound is rejected.
            this.rejectRequest(
                msg,
                reject(
                    RejectCode.SYS_TRANSIENT,
                    ErrorCode.CanisterQueueFull,
                    `Too many messages in flight between subnets (${MAX_IN_FLIGHT})`
                )
            );
        } else {
            this.inFlight.push({ deliverRound: this.round + latency, msg });
        }
    }

    private subnetIndexOf(p: Principal, fallback: number): number {
        return this.subnetOf(p)?.index ?? fallback;
    }

    private rejectRequest(msg: Extract<Message, { type: 'request' }>, r: Reject): void {
        this.answer(
            msg.origin,
            { reject: { code: r.reject_code, message: r.reject_message } },
            msg.cycles,
            msg.subnet,
            r.error_code,
            msg.to
        );
    }

    /** Sends the answer of a call context to whoever waits for it. */
    private answer(
        origin: Origin,
        response: Response,
        refund: bigint,
        fromSubnet: number,
        errorCode = '',
        from?: Principal
    ): void {
        if (origin.kind === 'ingress') {
            const status: IngressStatus = {
                status: 'done',
                result:
                    'reply' in response
                        ? { reply: response.reply }
                        : {
                              reject: reject(
                                  response.reject.code,
                                  errorCode ||
                                      (response.reject.code === 4
                                          ? ErrorCode.CanisterRejectedMessage
                                          : ''),
                                  response.reject.message
                              )
                          }
            };
            const delay = from ? (this.delays.get(textOf(from)) ?? 0) : 0;
            if (delay > 0) {
                this.delayedIngress.push({
                    round: this.round + delay,
                    id: origin.messageId,
                    status
                });
            } else {
                this.ingress.set(origin.messageId, status);
            }
            return;
        }
        if (origin.kind !== 'canister') return;
        const extra = from ? (this.delays.get(textOf(from)) ?? 0) : 0;
        this.route(
            {
                type: 'response',
                to: origin.caller,
                callbackId: origin.callbackId,
                response,
                refund
            },
            fromSubnet,
            this.subnetIndexOf(origin.caller, fromSubnet),
            extra
        );
    }

    /** Reject for a canister that cannot take new messages (missing code, stopped, out of cycles). */
    private admissionReject(c: Canister, replicated: boolean): Reject | null {
        const id = textOf(c.id);
        if (c.status === 'stopped') {
            return reject(
                RejectCode.CANISTER_ERROR,
                ErrorCode.CanisterStopped,
                `Canister ${id} is stopped`
            );
        }
        if (c.status === 'stopping') {
            return reject(
                RejectCode.CANISTER_ERROR,
                ErrorCode.CanisterStopping,
                `Canister ${id} is stopping`
            );
        }
        if (!c.hasCode) {
            return reject(
                RejectCode.DESTINATION_INVALID,
                ErrorCode.CanisterWasmModuleNotFound,
                `Error from Canister ${id}: Attempted to execute a message, but the canister contains no Wasm module.`
            );
        }
        if (replicated && c.cycles < FEES.update_message) {
            return reject(
                RejectCode.SYS_TRANSIENT,
                ErrorCode.CanisterOutOfCycles,
                `Canister ${id} is out of cycles`
            );
        }
        return null;
    }

    private baseCtx(
        kind: ExecKind,
        arg: Uint8Array,
        caller: Principal,
        cc: CallContext | null,
        limit: bigint
    ): ExecContext {
        return {
            kind,
            arg,
            caller,
            callContext: cc,
            methodName: '',
            rejectCode: 0,
            rejectMessage: '',
            refunded: 0n,
            replyLimit: LIMITS.reply_bytes,
            instructionLimit: limit,
            discardState: false,
            ownTransaction: true
        };
    }

    private deliver(c: Canister, m: Message): void {
        if (m.type === 'request') this.deliverRequest(c, m);
        else this.deliverResponse(c, m);
    }

    private deliverRequest(c: Canister, m: Extract<Message, { type: 'request' }>): void {
        const pre = this.admissionReject(c, true);
        if (pre) {
            this.record(
                c,
                m.method,
                m.origin.kind === 'ingress' ? 'ingress' : 'request',
                m.caller,
                0n,
                'reject',
                pre.reject_message
            );
            // The attached cycles go back with the reject.
            this.rejectRequest(m, pre);
            return;
        }
        const code = c.code!;
        let entry = `canister_update ${m.method}`;
        let kind: ExecKind = 'U';
        if (!code.exportNames.has(entry)) {
            if (code.exportNames.has(`canister_query ${m.method}`)) {
                entry = `canister_query ${m.method}`;
                kind = 'RQ';
            } else if (code.exportNames.has(`canister_composite_query ${m.method}`)) {
                this.rejectRequest(
                    m,
                    reject(
                        RejectCode.CANISTER_ERROR,
                        ErrorCode.CompositeQueryCalledInReplicatedMode,
                        `Error from Canister ${textOf(c.id)}: Composite query cannot be called in replicated mode`
                    )
                );
                return;
            } else {
                this.rejectRequest(
                    m,
                    reject(
                        RejectCode.DESTINATION_INVALID,
                        ErrorCode.CanisterMethodNotFound,
                        `Error from Canister ${textOf(c.id)}: Canister has no update method '${m.method}'.`
                    )
                );
                return;
            }
        }
        if (m.origin.kind === 'ingress') {
            const fee =
                FEES.ingress_message + FEES.ingress_byte * BigInt(m.arg.length + m.method.length);
            if (c.cycles < fee + FEES.update_message) {
                this.rejectRequest(
                    m,
                    reject(
                        RejectCode.SYS_TRANSIENT,
                        ErrorCode.CanisterOutOfCycles,
                        `Canister ${textOf(c.id)} is out of cycles`
                    )
                );
                return;
            }
            c.cycles -= fee;
        }
        const cc = c.openContext(m.origin, m.caller, m.method, m.cycles, this.round);
        const ctx = {
            ...this.baseCtx(kind, m.arg, m.caller, cc, LIMITS.update_instructions),
            discardState: kind === 'RQ'
        };
        const r = this.executeOrFault(c, entry, ctx);
        this.record(
            c,
            m.method,
            m.origin.kind === 'ingress' ? 'ingress' : 'request',
            m.caller,
            r.instructions,
            outcomeOf(r),
            r.trap?.message
        );
        this.finish(c, cc, r);
    }

    private deliverResponse(c: Canister, m: Extract<Message, { type: 'response' }>): void {
        // Refunds are credited even when the callback is gone (uninstalled canister).
        c.cycles += m.refund;
        const cb = c.callbacks.get(m.callbackId);
        if (!cb) return;
        c.callbacks.delete(m.callbackId);
        const cc = c.callContexts.get(cb.contextId);
        if (!cc) return;
        cc.outstanding -= 1;
        if (cb.generation !== c.generation || !c.hasCode) {
            // The code changed since the call was made: the callback no longer exists.
            this.finish(c, cc, {
                trap: {
                    message:
                        'the canister was upgraded or reinstalled while the call was outstanding',
                    error_code: ErrorCode.CanisterTrapped
                },
                response: null,
                calls: [],
                instructions: 0n,
                accepted: false
            });
            return;
        }
        const isReply = 'reply' in m.response;
        const ctx: ExecContext = {
            ...this.baseCtx(
                isReply ? 'Ry' : 'Rt',
                'reply' in m.response ? m.response.reply : new Uint8Array(0),
                cc.caller,
                cc,
                LIMITS.update_instructions
            ),
            rejectCode: 'reject' in m.response ? m.response.reject.code : 0,
            rejectMessage: 'reject' in m.response ? m.response.reject.message : '',
            refunded: m.refund
        };
        const r = this.executeOrFault(c, isReply ? cb.reply : cb.reject, ctx);
        this.record(
            c,
            cb.method,
            'response',
            cb.callee,
            r.instructions,
            outcomeOf(r),
            r.trap?.message
        );
        if (r.trap && cb.cleanup) {
            const cr = c.execute(cb.cleanup, {
                ...this.baseCtx('C', new Uint8Array(0), cc.caller, cc, LIMITS.update_instructions),
                rejectCode: ctx.rejectCode
            });
            this.record(
                c,
                cb.method,
                'response',
                cb.callee,
                cr.instructions,
                cr.trap ? 'trap' : 'no-response',
                'cleanup'
            );
        }
        this.finish(c, cc, r);
    }

    /** Runs `canister_global_timer` or `canister_heartbeat` in its own system call context. */
    private runSystemTask(
        c: Canister,
        entry: 'canister_global_timer' | 'canister_heartbeat'
    ): void {
        // A frozen canister (no cycles) runs no system tasks, as on the IC.
        if (!c.code!.exportNames.has(entry) || c.cycles < FEES.update_message) return;
        const cc = c.openContext({ kind: 'system' }, MANAGEMENT_ID, entry, 0n, this.round);
        const r = this.executeOrFault(
            c,
            entry,
            this.baseCtx('T', new Uint8Array(0), MANAGEMENT_ID, cc, LIMITS.update_instructions)
        );
        this.record(
            c,
            entry,
            'timer',
            MANAGEMENT_ID,
            r.instructions,
            outcomeOf(r),
            r.trap?.message
        );
        this.finish(c, cc, r);
    }

    private executeOrFault(
        c: Canister,
        entry: string | [number, number],
        ctx: ExecContext
    ): ExecResult {
        const n = this.traps.get(textOf(c.id)) ?? 0;
        if (n > 0) {
            this.traps.set(textOf(c.id), n - 1);
            return {
                trap: { message: 'injected fault', error_code: ErrorCode.CanisterCalledTrap },
                response: null,
                calls: [],
                instructions: 0n,
                accepted: false
            };
        }
        const r = c.execute(entry, ctx);
        this.chargeExecution(c, r.instructions);
        return r;
    }

    /** Charges a replicated execution (kept even if it trapped, as on the IC); never below 0. */
    private chargeExecution(c: Canister, instructions: bigint): void {
        const fee = FEES.update_message + (instructions * FEES.ten_instructions) / 10n;
        c.cycles = c.cycles > fee ? c.cycles - fee : 0n;
    }

    /** Applies an execution's effects: sends its calls, answers or closes its call context. */
    private finish(c: Canister, cc: CallContext, r: ExecResult): void {
        for (const call of r.calls) this.sendCall(c, call);
        if (r.response) {
            this.answer(cc.origin, r.response, cc.cyclesAvailable, c.subnetIndex, '', c.id);
            cc.cyclesAvailable = 0n;
        } else if (!cc.replied && cc.outstanding === 0) {
            cc.replied = true;
            const rej = r.trap
                ? this.trapReject(c, r)
                : reject(
                      RejectCode.CANISTER_ERROR,
                      ErrorCode.CanisterDidNotReply,
                      `Error from Canister ${textOf(c.id)}: Canister did not produce a response`
                  );
            this.answer(
                cc.origin,
                { reject: { code: rej.reject_code, message: rej.reject_message } },
                cc.cyclesAvailable,
                c.subnetIndex,
                rej.error_code,
                c.id
            );
            cc.cyclesAvailable = 0n;
        }
        if (cc.replied && cc.outstanding === 0) c.closeContext(cc);
        else if (cc.origin.kind === 'system' && cc.outstanding === 0) c.closeContext(cc);
    }

    private trapReject(c: Canister, r: ExecResult): Reject {
        const t = r.trap!;
        const msg =
            t.error_code === ErrorCode.CanisterCalledTrap
                ? `Error from Canister ${textOf(c.id)}: Canister called \`ic0.trap\` with message: '${t.message}'`
                : `Error from Canister ${textOf(c.id)}: Canister trapped: ${t.message}`;
        return reject(RejectCode.CANISTER_ERROR, t.error_code, msg);
    }

    private sendCall(c: Canister, call: OutgoingCall): void {
        c.registerCallback(call.callback);
        const toMgmt = textOf(call.callee) === MANAGEMENT_TEXT;
        const target = toMgmt
            ? this.mgmtSubnetFor(c, call)
            : this.subnetIndexOf(call.callee, c.subnetIndex);
        const msg: Message = {
            type: 'request',
            to: call.callee,
            caller: c.id,
            method: call.method,
            arg: call.arg,
            cycles: call.cycles,
            origin: { kind: 'canister', caller: c.id, callbackId: call.callback.id },
            subnet: target
        };
        this.route(msg, c.subnetIndex, target);
    }

    private mgmtSubnetFor(c: Canister, call: OutgoingCall): number {
        if (call.method === 'create_canister' || call.method === 'raw_rand') return c.subnetIndex;
        const s = this.effectiveSubnet(call.method, call.arg);
        const m = MANAGEMENT_METHODS[call.method];
        return m && m.args.length ? s : c.subnetIndex;
    }

    // ---- Cycles Minting Canister (src/cmc.ts) --------------------------------------------------

    /** Whether `p` is the emulated CMC (when enabled). */
    isCmc(p: Principal): boolean {
        return this.cmcEnabled && textOf(p) === CMC_TEXT;
    }

    private runDueCmcWork(): void {
        const due = this.cmcLater.filter((w) => w.round <= this.round);
        this.cmcLater = this.cmcLater.filter((w) => w.round > this.round);
        for (const w of due) w.run();
    }

    /**
     * A request to the CMC: answered at once when refused; otherwise the canister is created when
     * the CMC's call reaches the chosen subnet, and the answer leaves the CMC when the reply is back.
     */
    private handleCmc(m: Extract<Message, { type: 'request' }>): void {
        const home = this.subnetOf(CMC_ID)!.index;
        const host: CmcHost = {
            subnets: this.subnets,
            canisterCount: (i) =>
                [...this.canisters.values()].filter((c) => c.subnetIndex === i).length,
            createFee: CREATE_CANISTER_FEE,
            maxControllers: LIMITS.max_controllers
        };
        const plan = planCmcRequest(host, {
            method: m.method,
            arg: m.arg,
            caller: m.caller,
            cycles: m.cycles
        });
        if (plan.kind === 'reject') {
            this.answer(
                m.origin,
                { reject: { code: plan.code, message: plan.message } },
                m.cycles,
                home
            );
            return;
        }
        if (plan.kind === 'reply') {
            this.answer(m.origin, { reply: plan.reply }, plan.refund, home);
            return;
        }
        const hop = plan.subnetIndex === home ? 0 : XNET_LATENCY_ROUNDS;
        const later = (rounds: number, run: () => void) => {
            if (rounds === 0) run();
            else if (this.cmcLater.length >= MAX_IN_FLIGHT)
                throw new Error('too much CMC work in flight');
            else this.cmcLater.push({ round: this.round + rounds, run });
        };
        later(hop, () => {
            let outcome: { reply: Uint8Array; refund: bigint };
            try {
                const c = this.createCanister(
                    this.subnets[plan.subnetIndex],
                    plan.controllers,
                    plan.cycles
                );
                if (plan.freezingThreshold !== undefined)
                    c.freezingThreshold = plan.freezingThreshold;
                outcome = { reply: cmcCreated(c.id), refund: 0n };
            } catch (e) {
                outcome = cmcCreationFailed(m.cycles, (e as Error).message);
            }
            later(hop, () => this.answer(m.origin, { reply: outcome.reply }, outcome.refund, home));
        });
    }

    // ---- management canister ------------------------------------------------------------------

    private handleManagement(m: Message): void {
        if (m.type !== 'request') return;
        const replyWith = (r: Response, errorCode = '') => {
            // Cycles not consumed (create_canister and deposit_cycles zero them) go back.
            const refund = m.cycles;
            this.answer(m.origin, r, refund, m.subnet, errorCode);
        };
        const fail = (r: Reject) => {
            this.record(null, m.method, 'management', m.caller, 0n, 'reject', r.reject_message);
            replyWith({ reject: { code: r.reject_code, message: r.reject_message } }, r.error_code);
        };
        const sig = MANAGEMENT_METHODS[m.method];
        if (!sig) {
            fail(
                reject(
                    RejectCode.CANISTER_REJECT,
                    ErrorCode.UnknownManagementMessage,
                    `Management canister has no method '${m.method}'`
                )
            );
            return;
        }
        let args: Record<string, unknown>;
        try {
            args = sig.args.length
                ? (IDL.decode(sig.args, m.arg)[0] as unknown as Record<string, unknown>)
                : {};
        } catch (e) {
            fail(
                reject(
                    RejectCode.CANISTER_REJECT,
                    ErrorCode.InvalidManagementPayload,
                    `Error decoding candid: ${(e as Error).message}`
                )
            );
            return;
        }
        const ok = (values: unknown[]) => {
            this.record(null, m.method, 'management', m.caller, 0n, 'reply');
            replyWith({ reply: new Uint8Array(IDL.encode(sig.rets, values)) });
        };
        try {
            const out = this.management(m, args, ok, fail);
            if (out) fail(out);
        } catch (e) {
            fail(
                reject(
                    RejectCode.CANISTER_ERROR,
                    ErrorCode.CanisterContractViolation,
                    (e as Error).message
                )
            );
        }
    }

    private isController(c: Canister, p: Principal): boolean {
        return c.controllers.some((x) => textOf(x) === textOf(p));
    }

    private notController(c: Canister, caller: Principal): Reject {
        return reject(
            RejectCode.CANISTER_ERROR,
            ErrorCode.CanisterInvalidController,
            `Only the controllers of the canister ${textOf(c.id)} can control it.\nCanister's controllers: ${c.controllers.map((x) => textOf(x)).join(' ')}\nSender's ID: ${textOf(caller)}`
        );
    }

    private target(id: unknown): Canister | Reject {
        const p = id as Principal;
        const c = this.canisters.get(textOf(p));
        return (
            c ??
            reject(
                RejectCode.DESTINATION_INVALID,
                ErrorCode.CanisterNotFound,
                `Canister ${textOf(p)} not found`
            )
        );
    }

    private management(
        m: Extract<Message, { type: 'request' }>,
        a: Record<string, unknown>,
        ok: (values: unknown[]) => void,
        fail: (r: Reject) => void
    ): Reject | null {
        const caller = m.caller;
        const fromCanister = m.origin.kind === 'canister';
        const controlled = (key = 'canister_id', allowSelf = false): Canister | Reject => {
            const t = this.target(a[key]);
            if (!(t instanceof Canister)) return t;
            if (!this.isController(t, caller) && !(allowSelf && textOf(t.id) === textOf(caller))) {
                return this.notController(t, caller);
            }
            return t;
        };
        switch (m.method) {
            case 'raw_rand': {
                ok([this.rawRand()]);
                return null;
            }
            case 'create_canister':
            case 'provisional_create_canister_with_cycles': {
                const settings = unopt(a.settings) as Record<string, unknown> | undefined;
                const controllers = (settings && unopt(settings.controllers)) as
                    Principal[] | undefined;
                if (controllers && controllers.length > LIMITS.max_controllers) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Invalid settings: at most ${LIMITS.max_controllers} controllers are allowed`
                    );
                }
                const specified = unopt(a.specified_id) as Principal | undefined;
                let subnet = this.subnets[m.subnet];
                if (specified) {
                    const home = this.subnetOf(specified);
                    if (!home) {
                        return reject(
                            RejectCode.CANISTER_REJECT,
                            ErrorCode.CanisterNotHostedBySubnet,
                            `Specified CanisterId ${textOf(specified)} is not hosted by any subnet`
                        );
                    }
                    if (this.canisters.has(textOf(specified))) {
                        return reject(
                            RejectCode.SYS_TRANSIENT,
                            ErrorCode.CanisterIdAlreadyExists,
                            `Canister ${textOf(specified)} is already installed.`
                        );
                    }
                    subnet = home;
                }
                let cycles: bigint;
                if (m.method === 'create_canister') {
                    if (!fromCanister)
                        return reject(
                            RejectCode.CANISTER_REJECT,
                            ErrorCode.CanisterRejectedMessage,
                            'create_canister can only be called by canisters'
                        );
                    if (m.cycles < CREATE_CANISTER_FEE) {
                        return reject(
                            RejectCode.CANISTER_REJECT,
                            ErrorCode.InsufficientCyclesForCreateCanister,
                            `Cycles are not enough to create a canister: ${m.cycles} attached, the fee is ${CREATE_CANISTER_FEE}`
                        );
                    }
                    cycles = m.cycles - CREATE_CANISTER_FEE;
                    m.cycles = 0n;
                } else {
                    const amount = unopt(a.amount) as bigint | undefined;
                    cycles = amount ?? DEFAULT_PROVISIONAL_CYCLES;
                }
                const c = this.createCanister(subnet, controllers ?? [caller], cycles, specified);
                this.applySettings(c, settings);
                ok([{ canister_id: c.id }]);
                return null;
            }
            case 'provisional_top_up_canister': {
                const t = this.target(a.canister_id);
                if (!(t instanceof Canister)) return t;
                t.cycles += a.amount as bigint;
                ok([]);
                return null;
            }
            case 'deposit_cycles': {
                const t = this.target(a.canister_id);
                if (!(t instanceof Canister)) return t;
                t.cycles += m.cycles;
                m.cycles = 0n;
                ok([]);
                return null;
            }
            case 'install_code': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                const [mode, skip] = installMode(a.mode);
                const r = this.install(
                    t,
                    a.wasm_module as Uint8Array,
                    a.arg as Uint8Array,
                    mode,
                    caller,
                    skip
                );
                if (r) return r;
                ok([]);
                return null;
            }
            case 'upload_chunk': {
                const t = controlled('canister_id', true);
                if (!(t instanceof Canister)) return t;
                const chunk = a.chunk as Uint8Array;
                if (chunk.length > LIMITS.chunk_bytes) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Wasm chunk size ${chunk.length} exceeds the maximum chunk size of ${LIMITS.chunk_bytes}`
                    );
                }
                const hash = sha256(chunk);
                const key = Buffer.from(hash).toString('hex');
                if (!t.chunkStore.has(key) && t.chunkStore.size >= LIMITS.max_chunks) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Wasm chunk store of ${textOf(t.id)} is full (${LIMITS.max_chunks} chunks)`
                    );
                }
                t.chunkStore.set(key, new Uint8Array(chunk));
                ok([{ hash }]);
                return null;
            }
            case 'stored_chunks': {
                const t = controlled('canister_id', true);
                if (!(t instanceof Canister)) return t;
                ok([
                    [...t.chunkStore.keys()].map((k) => ({
                        hash: Uint8Array.from(Buffer.from(k, 'hex'))
                    }))
                ]);
                return null;
            }
            case 'clear_chunk_store': {
                const t = controlled('canister_id', true);
                if (!(t instanceof Canister)) return t;
                t.chunkStore.clear();
                ok([]);
                return null;
            }
            case 'install_chunked_code': {
                const t = controlled('target_canister');
                if (!(t instanceof Canister)) return t;
                const storeId = (unopt(a.store_canister) as Principal | undefined) ?? t.id;
                const store = this.target(storeId);
                if (!(store instanceof Canister)) return store;
                if (!this.isController(store, caller) && textOf(store.id) !== textOf(caller))
                    return this.notController(store, caller);
                if (store.subnetIndex !== t.subnetIndex) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `The store canister ${textOf(store.id)} must be on the same subnet as the target canister ${textOf(t.id)}`
                    );
                }
                const parts: Uint8Array[] = [];
                for (const h of a.chunk_hashes_list as { hash: Uint8Array }[]) {
                    const chunk = store.chunkStore.get(Buffer.from(h.hash).toString('hex'));
                    if (!chunk) {
                        return reject(
                            RejectCode.CANISTER_REJECT,
                            ErrorCode.CanisterRejectedMessage,
                            `Chunk ${Buffer.from(h.hash).toString('hex')} is not in the chunk store of ${textOf(store.id)}`
                        );
                    }
                    parts.push(chunk);
                }
                const wasm = Buffer.concat(parts);
                const expected = Buffer.from(a.wasm_module_hash as Uint8Array).toString('hex');
                if (Buffer.from(sha256(wasm)).toString('hex') !== expected) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Wasm module hash ${expected} does not match the hash of the concatenated chunks`
                    );
                }
                const [mode, skip] = installMode(a.mode);
                const r = this.install(
                    t,
                    new Uint8Array(wasm),
                    a.arg as Uint8Array,
                    mode,
                    caller,
                    skip
                );
                if (r) return r;
                ok([]);
                return null;
            }
            case 'canister_status': {
                const t = controlled('canister_id', true);
                if (!(t instanceof Canister)) return t;
                ok([this.status(t)]);
                return null;
            }
            case 'update_settings': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                const s = a.settings as Record<string, unknown>;
                const ctl = unopt(s.controllers) as Principal[] | undefined;
                if (ctl && ctl.length > LIMITS.max_controllers) {
                    return reject(
                        RejectCode.CANISTER_REJECT,
                        ErrorCode.CanisterRejectedMessage,
                        `Invalid settings: at most ${LIMITS.max_controllers} controllers are allowed`
                    );
                }
                this.applySettings(t, s);
                ok([]);
                return null;
            }
            case 'start_canister': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                if (t.status === 'stopping') {
                    for (const w of this.stopWaiters.get(textOf(t.id)) ?? []) {
                        w.reply({
                            reject: {
                                code: RejectCode.CANISTER_ERROR,
                                message: `Canister ${textOf(t.id)}'s stop request was cancelled`
                            }
                        });
                    }
                    this.stopWaiters.delete(textOf(t.id));
                }
                t.status = 'running';
                ok([]);
                return null;
            }
            case 'stop_canister': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                if (t.status === 'stopped') {
                    ok([]);
                    return null;
                }
                t.status = 'stopping';
                const list = this.stopWaiters.get(textOf(t.id)) ?? [];
                list.push({
                    reply: (r) =>
                        'reply' in r
                            ? ok([])
                            : fail(
                                  reject(
                                      r.reject.code,
                                      ErrorCode.CanisterStoppingCancelled,
                                      r.reject.message
                                  )
                              )
                });
                this.stopWaiters.set(textOf(t.id), list);
                return null;
            }
            case 'uninstall_code': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                this.uninstall(t);
                ok([]);
                return null;
            }
            case 'delete_canister': {
                const t = controlled();
                if (!(t instanceof Canister)) return t;
                if (t.status !== 'stopped') {
                    return reject(
                        RejectCode.CANISTER_ERROR,
                        ErrorCode.CanisterNotStopped,
                        `Canister ${textOf(t.id)} must be stopped before it is deleted.`
                    );
                }
                const queued = this.queues.get(textOf(t.id)) ?? [];
                this.canisters.delete(textOf(t.id));
                this.queues.delete(textOf(t.id));
                this.stopWaiters.delete(textOf(t.id));
                // Requests still queued for the deleted canister are answered, never lost.
                for (const q of queued) {
                    if (q.type === 'request') {
                        this.rejectRequest(
                            q,
                            reject(
                                RejectCode.DESTINATION_INVALID,
                                ErrorCode.CanisterNotFound,
                                `Canister ${textOf(t.id)} not found`
                            )
                        );
                    }
                }
                ok([]);
                return null;
            }
        }
        return reject(
            RejectCode.CANISTER_REJECT,
            ErrorCode.UnknownManagementMessage,
            `Management canister has no method '${m.method}'`
        );
    }

    private applySettings(c: Canister, s: Record<string, unknown> | undefined): void {
        if (!s) return;
        const ctl = unopt(s.controllers) as Principal[] | undefined;
        if (ctl) c.controllers = [...ctl];
        const ft = unopt(s.freezing_threshold) as bigint | undefined;
        if (ft !== undefined) c.freezingThreshold = ft;
    }

    /** The `canister_status` record of a canister. */
    status(c: Canister): Record<string, unknown> {
        return {
            status: { [c.status]: null },
            settings: {
                controllers: c.controllers,
                compute_allocation: 0n,
                memory_allocation: 0n,
                freezing_threshold: c.freezingThreshold,
                reserved_cycles_limit: 5_000_000_000_000n,
                log_visibility: { controllers: null },
                wasm_memory_limit: 3n * 1024n * 1024n * 1024n,
                wasm_memory_threshold: 0n,
                environment_variables: []
            },
            module_hash: c.code ? [c.code.moduleHash] : [],
            memory_size: BigInt(c.heapBytes + c.stable.size_pages * 65536),
            cycles: c.cycles,
            reserved_cycles: 0n,
            idle_cycles_burned_per_day: 0n,
            query_stats: {
                num_calls_total: 0n,
                num_instructions_total: 0n,
                request_payload_bytes_total: 0n,
                response_payload_bytes_total: 0n
            }
        };
    }

    private completeStops(): void {
        for (const [id, waiters] of [...this.stopWaiters]) {
            const c = this.canisters.get(id);
            if (!c || c.status !== 'stopping' || c.callContexts.size > 0) continue;
            c.status = 'stopped';
            this.stopWaiters.delete(id);
            for (const w of waiters) w.reply({ reply: new Uint8Array(0) });
        }
    }

    /** Deterministic 32 bytes: sha256(seed ‖ counter). */
    private rawRand(): Uint8Array {
        this.randCounter += 1n;
        return sha256(new TextEncoder().encode(`${this.seed}:${this.randCounter}`));
    }

    // ---- faults and trace ---------------------------------------------------------------------

    /** Responses produced by the canister take `rounds` extra rounds. */
    setDelay(id: Principal, rounds: number): void {
        this.delays.set(textOf(id), Math.max(0, Math.floor(rounds)));
    }

    /** The canister's next `n` messages trap before running. */
    injectTraps(id: Principal, n: number): void {
        this.traps.set(textOf(id), Math.max(0, Math.floor(n)));
    }

    private record(
        c: Canister | null,
        method: string,
        kind: TraceEntry['kind'],
        caller: Principal,
        instructions: bigint,
        outcome: TraceEntry['outcome'],
        detail?: string
    ): void {
        if (this.traceCapacity <= 0) return;
        if (this.trace.length >= this.traceCapacity) this.trace.shift();
        this.trace.push({
            round: this.round,
            canister: c ? textOf(c.id) : MANAGEMENT_TEXT,
            method,
            kind,
            caller: textOf(caller),
            instructions,
            outcome,
            ...(detail ? { detail } : {})
        });
    }

    /** A copy of the trace (oldest first). */
    getTrace(): TraceEntry[] {
        return [...this.trace];
    }

    /** Empties the trace. */
    clearTrace(): void {
        this.trace = [];
    }
}

/** The replica refuses a module that exports one method name under two kinds. */
function validateExports(names: Set<string>): void {
    const seen = new Map<string, string>();
    for (const n of names) {
        const m = /^canister_(update|query|composite_query) (.*)$/.exec(n);
        if (!m) continue;
        const prev = seen.get(m[2]);
        if (prev) throw new Error(`duplicate method '${m[2]}' exported as ${prev} and ${m[1]}`);
        seen.set(m[2], m[1]);
    }
}

function outcomeOf(r: ExecResult): TraceEntry['outcome'] {
    if (r.trap) return 'trap';
    if (!r.response) return 'no-response';
    return 'reply' in r.response ? 'reply' : 'reject';
}

function unopt(v: unknown): unknown {
    if (Array.isArray(v)) return v.length ? v[0] : undefined;
    return v;
}

function installMode(mode: unknown): ['install' | 'reinstall' | 'upgrade', boolean] {
    const m = mode as Record<string, unknown>;
    if ('install' in m) return ['install', false];
    if ('reinstall' in m) return ['reinstall', false];
    const flags = unopt(m.upgrade) as Record<string, unknown> | undefined;
    return ['upgrade', Boolean(flags && unopt(flags.skip_pre_upgrade))];
}
