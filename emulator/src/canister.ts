import { Principal } from '@dfinity/principal';
import { PageUndoLog, SAVE_IMPORT_MODULE } from './dirty_pages';
import { CanisterTrap, ErrorCode } from './errors';
import { readInstructionCounter, resetInstructionCounter } from './instrument';
import { PAGE_SIZE_BYTES, StableMemory } from './stable_memory';
import { TABLE_EXPORT } from './wasm_binary';

/** Lifecycle status of a canister. */
export type CanisterStatus = 'running' | 'stopping' | 'stopped';

/**
 * Execution kinds, named as the interface specification names the contexts in which `ic0`
 * functions may be called (I init/post_upgrade, G pre_upgrade, U update, RQ replicated query,
 * NRQ non-replicated query, CQ composite query, Ry/Rt reply/reject callback, CRy/CRt the same
 * inside a composite query, C/CC cleanup, F inspect_message, T system task).
 */
export type ExecKind =
    'I' | 'G' | 'U' | 'RQ' | 'NRQ' | 'CQ' | 'Ry' | 'Rt' | 'CRy' | 'CRt' | 'C' | 'CC' | 'F' | 'T';

/** Who is waiting for a call context's answer. */
export type Origin =
    | { kind: 'ingress'; messageId: number }
    | { kind: 'canister'; caller: Principal; callbackId: number }
    | { kind: 'system' }
    | { kind: 'query' };

/** A call context: one incoming call being answered, possibly over several messages. */
export interface CallContext {
    id: number;
    origin: Origin;
    caller: Principal;
    method: string;
    replied: boolean;
    outstanding: number;
    cyclesAvailable: bigint;
    /** Round in which the context was opened (for stop/trace). */
    openedRound: number;
}

/** A registered reply/reject continuation of an outgoing call (function-table indices). */
export interface Callback {
    id: number;
    contextId: number;
    reply: [number, number];
    reject: [number, number];
    cleanup: [number, number] | null;
    cyclesSent: bigint;
    callee: Principal;
    method: string;
    /** Module generation the callback belongs to: callbacks do not survive code changes. */
    generation: number;
}

/** An outgoing call produced by a message (sent only if the message does not trap). */
export interface OutgoingCall {
    callee: Principal;
    method: string;
    arg: Uint8Array;
    cycles: bigint;
    callback: Callback;
}

/** The answer a message produced for its call context. */
export type Response = { reply: Uint8Array } | { reject: { code: number; message: string } };

/** Input of one execution. */
export interface ExecContext {
    kind: ExecKind;
    arg: Uint8Array;
    caller: Principal;
    callContext: CallContext | null;
    methodName: string;
    rejectCode: number;
    rejectMessage: string;
    refunded: bigint;
    /** Byte limit on the reply (2 MiB for replicated, 3 MiB for queries). */
    replyLimit: number;
    /** Instruction limit (enforced only in counting mode). */
    instructionLimit: bigint;
    /** When true the message's state changes are discarded even on success (queries). */
    discardState: boolean;
    /** When false, the caller manages the transaction (upgrades span several executions). */
    ownTransaction: boolean;
}

/** Output of one execution. */
export interface ExecResult {
    trap: { message: string; error_code: string } | null;
    response: Response | null;
    calls: OutgoingCall[];
    instructions: bigint;
    accepted: boolean;
}

/** Services the canister needs from the engine while executing. */
export interface Host {
    timeNs(): bigint;
    isCanister(p: Principal): boolean;
    /** Byte limit of a request from `from` to `to` (10 MiB same subnet, 2 MiB across). */
    requestLimit(from: Principal, to: Principal): number;
    debugPrint(canister: Principal, text: string): void;
    subnetId(index: number): Principal;
    snapshots: SnapshotPool;
    createCanisterFee: bigint;
    countInstructions: boolean;
}

interface PendingCall {
    callee: Principal;
    method: string;
    chunks: Uint8Array[];
    size: number;
    cycles: bigint;
    reply: [number, number];
    reject: [number, number];
    cleanup: [number, number] | null;
}

interface RunState {
    ctx: ExecContext;
    replyChunks: Uint8Array[];
    replySize: number;
    response: Response | null;
    pending: PendingCall | null;
    calls: OutgoingCall[];
    accepted: boolean;
    /** `process.hrtime` at the start, for `performance_counter` outside counting mode. */
    startedNs: bigint;
}

/**
 * Outside counting mode `performance_counter` cannot know the count; it returns the message's
 * elapsed time in nanoseconds times this rate (about what V8 runs of an Azle canister's Wasm):
 * monotone within a message, as the spec asks, but an estimate, not deterministic.
 */
const ESTIMATED_INSTRUCTIONS_PER_NS = 1n;

const U64_MAX = (1n << 64n) - 1n;
/** Bound on nested transactions: one per composite-query callback level, plus the query's own. */
const MAX_NESTED_TRANSACTIONS = 64;
const CALL_KINDS: ExecKind[] = ['U', 'CQ', 'Ry', 'Rt', 'CRy', 'CRt', 'T'];
const REPLY_KINDS: ExecKind[] = ['U', 'RQ', 'NRQ', 'CQ', 'Ry', 'Rt', 'CRy', 'CRt'];
const STATE_KINDS: ExecKind[] = ['I', 'G', 'U', 'Ry', 'Rt', 'C', 'T'];
const NON_REPLICATED_KINDS: ExecKind[] = ['NRQ', 'CQ', 'CRy', 'CRt', 'CC', 'F'];
/** Base fee of an inter-canister call (13-node subnet, cycles). */
export const CALL_BASE_FEE = 260_000n;
/** Fee per byte of method name and payload of an inter-canister call (cycles). */
export const CALL_PER_BYTE_FEE = 1_000n;

/**
 * Grows `memory` so that a heap starting at `base` holds `heapBytes` (it never shrinks); answers
 * the pages that were missing (negative when the memory is already larger).
 */
function growHeap(memory: WebAssembly.Memory, base: number, heapBytes: number): number {
    const pages = (base + heapBytes - memory.buffer.byteLength) / PAGE_SIZE_BYTES;
    if (pages > 0) memory.grow(pages);
    return pages;
}

/** Loaded code of a canister. */
export interface CodeInfo {
    module: WebAssembly.Module;
    moduleHash: Uint8Array;
    globalExports: string[];
    exportNames: Set<string>;
    /** True when the module was rewritten by `trackDirtyPages` (else full heap snapshots). */
    dirtyPages: boolean;
    /** Where the heap begins in the module's memory (`HEAP_BASE` when rewritten, else 0). */
    heapBase: number;
}

/**
 * One canister: its identity and system state, its Wasm instance, stable memory, call contexts, and
 * the `ic0` system API. Executes one message at a time with full rollback on trap.
 */
export class Canister {
    controllers: Principal[];
    status: CanisterStatus = 'running';
    cycles: bigint;
    code: CodeInfo | null = null;
    instance: WebAssembly.Instance | null = null;
    stable = new StableMemory();
    globalTimerNs = 0n;
    certifiedData: Uint8Array = new Uint8Array(0);
    version = 0n;
    generation = 0;
    freezingThreshold = 2_592_000n;
    readonly callContexts = new Map<number, CallContext>();
    readonly callbacks = new Map<number, Callback>();
    readonly chunkStore = new Map<string, Uint8Array>();
    /** Total instructions per call context (for `performance_counter(1)`). */
    private readonly contextInstructions = new Map<number, bigint>();
    private nextContextId = 1;
    private nextCallbackId = 1;
    /**
     * The open (nested) transactions, innermost last: mutable globals, and a full heap copy only
     * for modules without dirty-page tracking (tracked ones keep page undo logs in `undo`).
     */
    private snapshots: { buf: SnapshotBuffer | null; globals: (number | bigint)[] }[] = [];
    private readonly undo = new PageUndoLog(() => this.instance!);
    private run: RunState | null = null;
    private memView: Uint8Array = new Uint8Array(0);
    private memOf: WebAssembly.Instance | null = null;
    private memory: WebAssembly.Memory | null = null;
    /** Where the heap begins in each instance's memory (its module's `heapBase`). */
    private readonly heapBaseOf = new WeakMap<WebAssembly.Instance, number>();
    private memBase = 0;

    constructor(
        readonly id: Principal,
        readonly subnetIndex: number,
        controllers: Principal[],
        cycles: bigint,
        private readonly host: Host
    ) {
        this.controllers = controllers;
        this.cycles = cycles;
    }

    /** True if a Wasm module is installed. */
    get hasCode(): boolean {
        return this.code !== null;
    }

    /** Heap pages saved by dirty-page tracking so far (page copies made for undo logs). */
    get savedHeapPages(): number {
        return this.undo.savedPages;
    }

    /** Heap size in bytes. */
    get heapBytes(): number {
        return this.instance ? this.mem().length : 0;
    }

    /** The heap's bytes, a view (copy it before the canister runs again). */
    heapContents(): Uint8Array {
        return this.mem();
    }

    /** Replaces the heap of an idle canister (a restored state), growing the memory to fit. */
    loadHeap(bytes: Uint8Array): void {
        if (this.run || this.snapshots.length > 0) throw new Error('loadHeap during a message');
        this.mem();
        growHeap(this.memory!, this.memBase, bytes.length);
        this.mem().set(bytes);
    }

    /** Opens a call context for an incoming call. */
    openContext(origin: Origin, caller: Principal, method: string, cycles: bigint, round: number) {
        const c: CallContext = {
            id: this.nextContextId++,
            origin,
            caller,
            method,
            replied: false,
            outstanding: 0,
            cyclesAvailable: cycles,
            openedRound: round
        };
        this.callContexts.set(c.id, c);
        return c;
    }

    /** Closes a context (answered and no outstanding calls). */
    closeContext(c: CallContext): void {
        this.callContexts.delete(c.id);
        this.contextInstructions.delete(c.id);
    }

    /** Records a callback id for an outgoing call once it is actually sent. */
    registerCallback(cb: Callback): void {
        this.callbacks.set(cb.id, cb);
    }

    /** Instantiates a module with this canister's imports. */
    instantiate(code: CodeInfo): WebAssembly.Instance {
        const imports = this.buildImports(code.module);
        if (!code.dirtyPages) return new WebAssembly.Instance(code.module, imports);
        const marks = this.undo.instanceImports();
        imports[SAVE_IMPORT_MODULE] = marks.imports;
        const instance = new WebAssembly.Instance(code.module, imports);
        marks.attach(instance);
        this.heapBaseOf.set(instance, code.heapBase);
        return instance;
    }

    /**
     * Moves the canister to another build of its installed module (`Engine.setCountInstructions`):
     * a fresh instance gets the heap, the mutable globals the builds share (the instrumented build
     * only adds its own) and the same table; stable memory and system state stay as they are.
     */
    switchBuild(code: CodeInfo): void {
        if (this.run || this.snapshots.length > 0) {
            throw new Error('switchBuild during a message');
        }
        const old = this.instance!;
        const heap = this.mem();
        const instance = this.instantiate(code);
        const memory = instance.exports.memory as WebAssembly.Memory;
        if (growHeap(memory, code.heapBase, heap.length) < 0) {
            throw new Error('switchBuild: the other build starts with more memory');
        }
        new Uint8Array(memory.buffer, code.heapBase).set(heap);
        const table = (i: WebAssembly.Instance) =>
            i.exports[TABLE_EXPORT] as WebAssembly.Table | undefined;
        if (table(old)?.length !== table(instance)?.length) {
            throw new Error('switchBuild: the builds have different function tables');
        }
        for (const g of this.code!.globalExports) {
            if (!code.globalExports.includes(g)) continue;
            (instance.exports[g] as WebAssembly.Global).value = (
                old.exports[g] as WebAssembly.Global
            ).value;
        }
        this.instance = instance;
        this.code = code;
    }

    private buildImports(module: WebAssembly.Module): WebAssembly.Imports {
        const ic0 = this.systemApi() as Record<string, unknown>;
        const imports: Record<string, Record<string, unknown>> = {};
        for (const imp of WebAssembly.Module.imports(module)) {
            if (imp.kind !== 'function') {
                throw new Error(`unsupported import ${imp.module}.${imp.name} of kind ${imp.kind}`);
            }
            if (imp.module === SAVE_IMPORT_MODULE) continue; // added by instantiate
            imports[imp.module] ??= {};
            const impl = imp.module === 'ic0' ? ic0[imp.name] : undefined;
            imports[imp.module][imp.name] =
                impl ??
                (() => {
                    throw new CanisterTrap(
                        `the emulator does not support the system API ${imp.module}.${imp.name}`,
                        ErrorCode.CanisterContractViolation
                    );
                });
        }
        return imports as WebAssembly.Imports;
    }

    /**
     * A view of the heap (the canister's addresses: from `heapBase` in the Wasm memory), re-made
     * only when the buffer changes (growth, new instance).
     */
    private mem(): Uint8Array {
        // `Instance.exports` is a slow getter: keep the memory object of the current instance.
        // Growth detaches the old buffer, so a stale view reads as empty: only then ask for the
        // buffer (a getter that costs more than a small host call's own work).
        if (this.memOf !== this.instance) {
            this.memOf = this.instance;
            this.memory = this.instance!.exports.memory as WebAssembly.Memory;
            this.memBase = this.heapBaseOf.get(this.instance!) ?? 0;
            this.memView = new Uint8Array(this.memory.buffer, this.memBase);
        } else if (this.memView.length === 0) {
            this.memView = new Uint8Array(this.memory!.buffer, this.memBase);
        }
        return this.memView;
    }

    /** A bounds-checked view (no copy) of heap bytes, for stable-memory transfers. */
    private heapView(ptr: number, size: number, what: string): Uint8Array {
        const m = this.mem();
        if (ptr < 0 || size < 0 || ptr + size > m.length) {
            throw new CanisterTrap(
                `${what}: heap out of bounds`,
                ErrorCode.CanisterContractViolation
            );
        }
        return m.subarray(ptr, ptr + size);
    }

    /** Wasm i32 arguments arrive signed; pointers and sizes are unsigned. */
    private readMem(ptr: number, size: number, what: string): Uint8Array {
        ptr = u32(ptr);
        size = u32(size);
        const m = this.mem();
        if (ptr < 0 || size < 0 || ptr + size > m.length) {
            throw new CanisterTrap(
                `${what}: heap out of bounds`,
                ErrorCode.CanisterContractViolation
            );
        }
        return m.slice(ptr, ptr + size);
    }

    private writeMem(ptr: number, data: Uint8Array, what: string): void {
        ptr = u32(ptr);
        const m = this.mem();
        if (ptr < 0 || ptr + data.length > m.length) {
            throw new CanisterTrap(
                `${what}: heap out of bounds`,
                ErrorCode.CanisterContractViolation
            );
        }
        this.willWrite(ptr, data.length);
        m.set(data, ptr);
    }

    /** Saves heap pages the host is about to write (tracked modules; the range is in bounds). */
    private willWrite(ptr: number, size: number): void {
        if (this.code?.dirtyPages) this.undo.saveRange(this.memBase + ptr, size);
    }

    /** Copies `src[offset .. offset+size]` to the heap at `dst`, trapping out of bounds. */
    private copyOut(src: Uint8Array, dst: number, offset: number, size: number, what: string) {
        offset = u32(offset);
        size = u32(size);
        if (offset < 0 || size < 0 || offset + size > src.length) {
            throw new CanisterTrap(
                `${what}: src out of bounds`,
                ErrorCode.CanisterContractViolation
            );
        }
        this.writeMem(dst, src.subarray(offset, offset + size), what);
    }

    private write128(dst: number, v: bigint, what: string): void {
        const b = new Uint8Array(16);
        const dv = new DataView(b.buffer);
        dv.setBigUint64(0, v & U64_MAX, true);
        dv.setBigUint64(8, v >> 64n, true);
        this.writeMem(dst, b, what);
    }

    private state(name: string, allowed: ExecKind[] | null): RunState {
        const r = this.run;
        if (!r) throw new CanisterTrap(`${name} called outside of message execution`);
        if (allowed && !allowed.includes(r.ctx.kind)) {
            throw new CanisterTrap(
                `"ic0.${name}" cannot be executed in ${kindName(r.ctx.kind)} mode`,
                ErrorCode.CanisterContractViolation
            );
        }
        this.checkInstructionLimit(r);
        return r;
    }

    private checkInstructionLimit(r: RunState): void {
        if (!this.host.countInstructions || !this.instance) return;
        const used = readInstructionCounter(this.instance);
        if (used > r.ctx.instructionLimit) {
            throw new CanisterTrap(
                `Canister exceeded the limit of ${r.ctx.instructionLimit} instructions for single message execution.`,
                ErrorCode.InstructionLimitExceeded
            );
        }
    }

    /** The `ic0` import object; every function checks its execution context as the replica does. */
    private systemApi() {
        const ctxArg = (r: RunState) => r.ctx.arg;
        const selfBytes = this.id.toUint8Array();
        return {
            msg_arg_data_size: () =>
                ctxArg(
                    this.state('msg_arg_data_size', ['I', 'U', 'RQ', 'NRQ', 'CQ', 'Ry', 'CRy', 'F'])
                ).length,
            msg_arg_data_copy: (dst: number, off: number, size: number) => {
                const r = this.state('msg_arg_data_copy', [
                    'I',
                    'U',
                    'RQ',
                    'NRQ',
                    'CQ',
                    'Ry',
                    'CRy',
                    'F'
                ]);
                this.copyOut(r.ctx.arg, dst, off, size, 'msg_arg_data_copy');
            },
            msg_caller_size: () => this.callerBytes('msg_caller_size').length,
            msg_caller_copy: (dst: number, off: number, size: number) =>
                this.copyOut(
                    this.callerBytes('msg_caller_copy'),
                    dst,
                    off,
                    size,
                    'msg_caller_copy'
                ),
            msg_reject_code: () =>
                this.state('msg_reject_code', ['Ry', 'Rt', 'CRy', 'CRt', 'C']).ctx.rejectCode,
            msg_reject_msg_size: () =>
                utf8(this.state('msg_reject_msg_size', ['Rt', 'CRt']).ctx.rejectMessage).length,
            msg_reject_msg_copy: (dst: number, off: number, size: number) => {
                const r = this.state('msg_reject_msg_copy', ['Rt', 'CRt']);
                this.copyOut(utf8(r.ctx.rejectMessage), dst, off, size, 'msg_reject_msg_copy');
            },
            msg_reply_data_append: (src: number, size: number) => {
                const r = this.replyable('msg_reply_data_append');
                if (r.replySize + size > r.ctx.replyLimit) {
                    throw new CanisterTrap(
                        `ic0.msg_reply_data_append: application payload size (${r.replySize + size}) cannot be larger than ${r.ctx.replyLimit}.`,
                        ErrorCode.CanisterContractViolation
                    );
                }
                r.replyChunks.push(this.readMem(src, size, 'msg_reply_data_append'));
                r.replySize += size;
            },
            msg_reply: () => {
                const r = this.replyable('msg_reply');
                r.response = { reply: joinChunks(r.replyChunks, r.replySize) };
                r.ctx.callContext!.replied = true;
            },
            msg_reject: (src: number, size: number) => {
                const r = this.replyable('msg_reject');
                const message = Buffer.from(this.readMem(src, size, 'msg_reject')).toString('utf8');
                r.response = { reject: { code: 4, message } };
                r.ctx.callContext!.replied = true;
            },
            msg_cycles_available128: (dst: number) => {
                const r = this.state('msg_cycles_available128', ['U', 'RQ', 'Ry', 'Rt']);
                this.write128(
                    dst,
                    r.ctx.callContext?.cyclesAvailable ?? 0n,
                    'msg_cycles_available128'
                );
            },
            msg_cycles_refunded128: (dst: number) => {
                const r = this.state('msg_cycles_refunded128', ['Ry', 'Rt']);
                this.write128(dst, r.ctx.refunded, 'msg_cycles_refunded128');
            },
            msg_cycles_accept128: (hi: bigint, lo: bigint, dst: number) => {
                const r = this.state('msg_cycles_accept128', ['U', 'RQ', 'Ry', 'Rt']);
                const max = (BigInt.asUintN(64, hi) << 64n) | BigInt.asUintN(64, lo);
                const cc = r.ctx.callContext!;
                const n = max < cc.cyclesAvailable ? max : cc.cyclesAvailable;
                cc.cyclesAvailable -= n;
                this.cycles += n;
                this.write128(dst, n, 'msg_cycles_accept128');
            },
            cycles_burn128: (hi: bigint, lo: bigint, dst: number) => {
                this.state('cycles_burn128', ['I', 'G', 'U', 'RQ', 'Ry', 'Rt', 'C', 'T']);
                const want = (BigInt.asUintN(64, hi) << 64n) | BigInt.asUintN(64, lo);
                const n = want < this.cycles ? want : this.cycles;
                this.cycles -= n;
                this.write128(dst, n, 'cycles_burn128');
            },
            canister_self_size: () => {
                this.state('canister_self_size', null);
                return selfBytes.length;
            },
            canister_self_copy: (dst: number, off: number, size: number) => {
                this.state('canister_self_copy', null);
                this.copyOut(selfBytes, dst, off, size, 'canister_self_copy');
            },
            canister_cycle_balance128: (dst: number) => {
                this.state('canister_cycle_balance128', null);
                this.write128(dst, this.cycles, 'canister_cycle_balance128');
            },
            canister_liquid_cycle_balance128: (dst: number) => {
                this.state('canister_liquid_cycle_balance128', null);
                this.write128(dst, this.cycles, 'canister_liquid_cycle_balance128');
            },
            canister_status: () => {
                this.state('canister_status', null);
                return this.status === 'running' ? 1 : this.status === 'stopping' ? 2 : 3;
            },
            canister_version: () => {
                this.state('canister_version', null);
                return this.version;
            },
            msg_method_name_size: () =>
                utf8(this.state('msg_method_name_size', ['F']).ctx.methodName).length,
            msg_method_name_copy: (dst: number, off: number, size: number) => {
                const r = this.state('msg_method_name_copy', ['F']);
                this.copyOut(utf8(r.ctx.methodName), dst, off, size, 'msg_method_name_copy');
            },
            accept_message: () => {
                const r = this.state('accept_message', ['F']);
                if (r.accepted) {
                    throw new CanisterTrap(
                        'ic0.accept_message: the function was already called',
                        ErrorCode.CanisterContractViolation
                    );
                }
                r.accepted = true;
            },
            call_new: (
                calleeSrc: number,
                calleeSize: number,
                nameSrc: number,
                nameSize: number,
                replyFun: number,
                replyEnv: number,
                rejectFun: number,
                rejectEnv: number
            ) => {
                const r = this.state('call_new', CALL_KINDS);
                if (r.pending) {
                    throw new CanisterTrap(
                        'ic0.call_new: a call is already under construction',
                        ErrorCode.CanisterContractViolation
                    );
                }
                const callee = Principal.fromUint8Array(
                    this.readMem(calleeSrc, calleeSize, 'call_new')
                );
                const method = Buffer.from(this.readMem(nameSrc, nameSize, 'call_new')).toString(
                    'utf8'
                );
                r.pending = {
                    callee,
                    method,
                    chunks: [],
                    size: 0,
                    cycles: 0n,
                    reply: [replyFun, replyEnv],
                    reject: [rejectFun, rejectEnv],
                    cleanup: null
                };
            },
            call_on_cleanup: (fun: number, env: number) => {
                const p = this.pendingCall('call_on_cleanup');
                if (p.cleanup) {
                    throw new CanisterTrap(
                        'ic0.call_on_cleanup: cleanup already set',
                        ErrorCode.CanisterContractViolation
                    );
                }
                p.cleanup = [fun, env];
            },
            call_data_append: (src: number, size: number) => {
                const p = this.pendingCall('call_data_append');
                p.chunks.push(this.readMem(src, size, 'call_data_append'));
                p.size += size;
            },
            call_cycles_add128: (hi: bigint, lo: bigint) => {
                this.state('call_cycles_add128', ['U', 'Ry', 'Rt', 'T']);
                const p = this.pendingCall('call_cycles_add128');
                const amount = (BigInt.asUintN(64, hi) << 64n) | BigInt.asUintN(64, lo);
                if (amount > this.cycles) {
                    throw new CanisterTrap(
                        `Canister ${this.id.toText()} is out of cycles: please top up the canister with at least ${amount - this.cycles} additional cycles`,
                        ErrorCode.InsufficientCyclesInCall
                    );
                }
                this.cycles -= amount;
                p.cycles += amount;
            },
            call_with_best_effort_response: (timeoutSeconds: number) => {
                this.pendingCall('call_with_best_effort_response');
                if (timeoutSeconds < 0) {
                    throw new CanisterTrap('call_with_best_effort_response: bad timeout');
                }
                // Best-effort calls are delivered like guaranteed ones here (no timeouts fire).
            },
            call_perform: () => {
                const r = this.state('call_perform', CALL_KINDS);
                const p = r.pending;
                if (!p) {
                    throw new CanisterTrap(
                        'ic0.call_perform: no call under construction',
                        ErrorCode.CanisterContractViolation
                    );
                }
                r.pending = null;
                const limit = this.host.requestLimit(this.id, p.callee);
                const size = p.size + utf8(p.method).length;
                if (size > limit) {
                    this.cycles += p.cycles;
                    throw new CanisterTrap(
                        `Canister ${this.id.toText()} violated contract: request to ${p.callee.toText()} method ${p.method} has a payload size of ${size} bytes, which exceeds the inter-canister limit of ${limit} bytes`,
                        ErrorCode.CanisterContractViolation
                    );
                }
                const cc = r.ctx.callContext;
                if (!cc) throw new CanisterTrap('call_perform without a call context');
                // Replicated calls pay the transmission fee; without it the call is not made.
                const queryCall =
                    r.ctx.kind === 'CQ' || r.ctx.kind === 'CRy' || r.ctx.kind === 'CRt';
                const fee = queryCall ? 0n : CALL_BASE_FEE + CALL_PER_BYTE_FEE * BigInt(size);
                if (fee > this.cycles) {
                    this.cycles += p.cycles;
                    return 2;
                }
                this.cycles -= fee;
                const callback: Callback = {
                    id: this.nextCallbackId++,
                    contextId: cc.id,
                    reply: p.reply,
                    reject: p.reject,
                    cleanup: p.cleanup,
                    cyclesSent: p.cycles,
                    callee: p.callee,
                    method: p.method,
                    generation: this.generation
                };
                cc.outstanding += 1;
                r.calls.push({
                    callee: p.callee,
                    method: p.method,
                    arg: joinChunks(p.chunks, p.size),
                    cycles: p.cycles,
                    callback
                });
                return 0;
            },
            cost_call: (methodNameSize: bigint, payloadSize: bigint, dst: number) => {
                this.state('cost_call', null);
                const cost =
                    CALL_BASE_FEE +
                    CALL_PER_BYTE_FEE * (BigInt(methodNameSize) + BigInt(payloadSize));
                this.write128(dst, cost, 'cost_call');
            },
            stable64_size: () => {
                this.state('stable64_size', null);
                return BigInt(this.stable.size_pages);
            },
            stable64_grow: (pages: bigint) => {
                this.state('stable64_grow', null);
                return this.stable.grow(BigInt.asUintN(64, pages));
            },
            stable64_write: (offset: bigint, src: bigint, size: bigint) => {
                this.state('stable64_write', null);
                const view = this.heapView(Number(src), Number(size), 'stable64_write');
                this.stableWrite(BigInt.asUintN(64, offset), view);
            },
            stable64_read: (dst: bigint, offset: bigint, size: bigint) => {
                this.state('stable64_read', null);
                const d = Number(dst);
                const n = Number(size);
                const m = this.mem();
                if (d < 0 || n < 0 || d + n > m.length) {
                    throw new CanisterTrap(
                        'stable64_read: heap out of bounds',
                        ErrorCode.CanisterContractViolation
                    );
                }
                this.willWrite(d, n);
                try {
                    this.stable.readInto(BigInt.asUintN(64, offset), m, d, n);
                } catch {
                    throw new CanisterTrap(
                        'stable memory out of bounds',
                        ErrorCode.CanisterTrapped
                    );
                }
            },
            certified_data_set: (src: number, size: number) => {
                this.state('certified_data_set', STATE_KINDS);
                if (size > 32) {
                    throw new CanisterTrap(
                        'ic0.certified_data_set: certified data is at most 32 bytes',
                        ErrorCode.CanisterContractViolation
                    );
                }
                this.certifiedData = this.readMem(src, size, 'certified_data_set');
            },
            data_certificate_present: () => {
                this.state('data_certificate_present', null);
                return 0;
            },
            data_certificate_size: () => {
                this.state('data_certificate_size', ['NRQ', 'CQ']);
                throw new CanisterTrap(
                    'ic0.data_certificate_size: the emulator issues no certificates (data_certificate_present is 0)',
                    ErrorCode.CanisterContractViolation
                );
            },
            data_certificate_copy: () => {
                this.state('data_certificate_copy', ['NRQ', 'CQ']);
                throw new CanisterTrap(
                    'ic0.data_certificate_copy: the emulator issues no certificates (data_certificate_present is 0)',
                    ErrorCode.CanisterContractViolation
                );
            },
            time: () => {
                this.state('time', null);
                return this.host.timeNs();
            },
            global_timer_set: (ts: bigint) => {
                this.state('global_timer_set', ['I', 'G', 'U', 'Ry', 'Rt', 'C', 'T']);
                const old = this.globalTimerNs;
                this.globalTimerNs = BigInt.asUintN(64, ts);
                return old;
            },
            performance_counter: (type: number) => {
                const r = this.state('performance_counter', null);
                const now = this.host.countInstructions
                    ? readInstructionCounter(this.instance!)
                    : estimatedInstructions(r);
                if (type === 0) return now;
                if (type === 1) {
                    const cc = r.ctx.callContext;
                    return now + (cc ? (this.contextInstructions.get(cc.id) ?? 0n) : 0n);
                }
                throw new CanisterTrap(
                    `ic0.performance_counter: unknown counter type ${type}`,
                    ErrorCode.CanisterContractViolation
                );
            },
            is_controller: (src: number, size: number) => {
                this.state('is_controller', null);
                if (size > 29) {
                    throw new CanisterTrap(
                        'ic0.is_controller: invalid principal',
                        ErrorCode.CanisterContractViolation
                    );
                }
                const p = Principal.fromUint8Array(
                    this.readMem(src, size, 'is_controller')
                ).toText();
                return this.controllers.some((c) => c.toText() === p) ? 1 : 0;
            },
            in_replicated_execution: () => {
                const r = this.state('in_replicated_execution', null);
                return NON_REPLICATED_KINDS.includes(r.ctx.kind) ? 0 : 1;
            },
            debug_print: (src: number, size: number) => {
                this.state('debug_print', null);
                const text = Buffer.from(this.readMem(src, size, 'debug_print')).toString('utf8');
                this.host.debugPrint(this.id, text);
            },
            subnet_self_size: () => {
                this.state('subnet_self_size', null);
                return this.host.subnetId(this.subnetIndex).toUint8Array().length;
            },
            subnet_self_copy: (dst: number, off: number, size: number) => {
                this.state('subnet_self_copy', null);
                const id = this.host.subnetId(this.subnetIndex).toUint8Array();
                this.copyOut(id, dst, off, size, 'subnet_self_copy');
            },
            cost_create_canister: (dst: number) => {
                this.state('cost_create_canister', null);
                this.write128(dst, this.host.createCanisterFee, 'cost_create_canister');
            },
            // No environment variables are set on emulated canisters.
            env_var_count: () => {
                this.state('env_var_count', null);
                return 0;
            },
            env_var_name_exists: () => {
                this.state('env_var_name_exists', null);
                return 0;
            },
            env_var_name_size: (index: number) => this.noEnvVar('env_var_name_size', index),
            env_var_name_copy: (index: number) => this.noEnvVar('env_var_name_copy', index),
            env_var_value_size: () => this.noEnvVar('env_var_value_size', 0),
            env_var_value_copy: () => this.noEnvVar('env_var_value_copy', 0),
            // Legacy 64-bit cycles API.
            msg_cycles_available: () => {
                const r = this.state('msg_cycles_available', ['U', 'RQ', 'Ry', 'Rt']);
                return clampU64(r.ctx.callContext?.cyclesAvailable ?? 0n);
            },
            msg_cycles_refunded: () =>
                clampU64(this.state('msg_cycles_refunded', ['Ry', 'Rt']).ctx.refunded),
            msg_cycles_accept: (max: bigint) => {
                const r = this.state('msg_cycles_accept', ['U', 'RQ', 'Ry', 'Rt']);
                const cc = r.ctx.callContext!;
                const want = BigInt.asUintN(64, max);
                const n = want < cc.cyclesAvailable ? want : cc.cyclesAvailable;
                cc.cyclesAvailable -= n;
                this.cycles += n;
                return n;
            },
            call_cycles_add: (amount: bigint) => {
                this.state('call_cycles_add', ['U', 'Ry', 'Rt', 'T']);
                const p = this.pendingCall('call_cycles_add');
                const n = BigInt.asUintN(64, amount);
                if (n > this.cycles) {
                    throw new CanisterTrap(
                        `Canister ${this.id.toText()} is out of cycles`,
                        ErrorCode.InsufficientCyclesInCall
                    );
                }
                this.cycles -= n;
                p.cycles += n;
            },
            // Legacy 32-bit stable memory API (limited to 4 GiB, as on the IC).
            stable_size: () => {
                this.state('stable_size', null);
                return this.stable.size_pages;
            },
            stable_grow: (pages: number) => {
                this.state('stable_grow', null);
                if (this.stable.size_pages + pages > 65_536) return -1;
                return Number(this.stable.grow(BigInt(pages)));
            },
            stable_write: (offset: number, src: number, size: number) => {
                this.state('stable_write', null);
                this.stableWrite(BigInt(offset >>> 0), this.readMem(src, size, 'stable_write'));
            },
            stable_read: (dst: number, offset: number, size: number) => {
                this.state('stable_read', null);
                this.writeMem(dst, this.stableRead(BigInt(offset >>> 0), size), 'stable_read');
            },
            msg_deadline: () => {
                this.state('msg_deadline', ['U', 'RQ', 'NRQ', 'CQ', 'Ry', 'Rt', 'CRy', 'CRt']);
                return 0n;
            },
            canister_cycle_balance: () => {
                this.state('canister_cycle_balance', null);
                if (this.cycles > U64_MAX) {
                    throw new CanisterTrap(
                        'ic0.canister_cycle_balance: balance does not fit in 64 bits',
                        ErrorCode.CanisterContractViolation
                    );
                }
                return this.cycles;
            },
            trap: (src: number, size: number) => {
                // ic0.trap never fails: an out-of-bounds message is cut to the heap.
                const m = this.mem();
                const s = Math.min(u32(src), m.length);
                const text = Buffer.from(m.subarray(s, Math.min(s + u32(size), m.length))).toString(
                    'utf8'
                );
                throw new CanisterTrap(text, ErrorCode.CanisterCalledTrap);
            }
        };
    }

    private noEnvVar(name: string, index: number): never {
        this.state(name, null);
        throw new CanisterTrap(
            `ic0.${name}: no environment variable ${index} (the emulator sets none)`,
            ErrorCode.CanisterContractViolation
        );
    }

    private stableWrite(offset: bigint | number, data: Uint8Array): void {
        try {
            this.stable.write(offset, data);
        } catch {
            throw new CanisterTrap('stable memory out of bounds', ErrorCode.CanisterTrapped);
        }
    }

    private stableRead(offset: bigint | number, size: number): Uint8Array {
        try {
            return this.stable.read(offset, size);
        } catch {
            throw new CanisterTrap('stable memory out of bounds', ErrorCode.CanisterTrapped);
        }
    }

    private callerBytes(name: string): Uint8Array {
        // Every context has a caller (the management canister for system tasks), as the spec says.
        return this.state(name, null).ctx.caller.toUint8Array();
    }

    private replyable(name: string): RunState {
        const r = this.state(name, REPLY_KINDS);
        if (!r.ctx.callContext || r.ctx.callContext.replied || r.response) {
            throw new CanisterTrap(
                `ic0.${name}: the call context was already replied to or rejected`,
                ErrorCode.CanisterContractViolation
            );
        }
        return r;
    }

    private pendingCall(name: string): PendingCall {
        const r = this.state(name, CALL_KINDS);
        if (!r.pending) {
            throw new CanisterTrap(
                `ic0.${name}: no call under construction (call_new was not called)`,
                ErrorCode.CanisterContractViolation
            );
        }
        return r.pending;
    }

    /**
     * Saves globals, stable-memory undo log and system state before a message, and opens a heap
     * undo level: a page undo log for tracked modules (each page is saved on its first write), a
     * full heap copy otherwise. Transactions nest (a composite query's callbacks run inside the
     * query's own transaction).
     */
    beginTransaction(): SystemSnapshot {
        if (this.snapshots.length >= MAX_NESTED_TRANSACTIONS) {
            throw new Error('transactions nested too deep');
        }
        let buf: SnapshotBuffer | null = null;
        if (this.code!.dirtyPages) this.undo.begin();
        else {
            const mem = this.mem();
            buf = this.host.snapshots.take();
            if (buf.bytes.length < mem.length) buf.bytes = new Uint8Array(mem.length);
            buf.bytes.set(mem);
            buf.length = mem.length;
        }
        const globals = this.code!.globalExports.map(
            (g) => (this.instance!.exports[g] as WebAssembly.Global).value as number | bigint
        );
        this.snapshots.push({ buf, globals });
        this.stable.begin();
        return {
            cycles: this.cycles,
            timer: this.globalTimerNs,
            certifiedData: this.certifiedData
        };
    }

    /**
     * Undoes everything since the innermost `beginTransaction`. If the heap grew (Wasm memory
     * cannot shrink), a fresh instance receives the restored heap at its old size.
     */
    rollback(sys: SystemSnapshot): void {
        const top = this.snapshots.pop();
        if (!top) throw new Error('rollback without a transaction');
        if (top.buf) {
            this.restoreHeap(top.buf.bytes, top.buf.length);
            this.host.snapshots.give(top.buf);
        } else {
            const heapBytes = this.undo.rollback().sizeBytes - this.code!.heapBase;
            if (this.mem().length !== heapBytes) this.restoreHeap(this.mem(), heapBytes);
        }
        this.code!.globalExports.forEach((g, i) => {
            (this.instance!.exports[g] as WebAssembly.Global).value = top.globals[i];
        });
        this.stable.rollback();
        this.cycles = sys.cycles;
        this.globalTimerNs = sys.timer;
        this.certifiedData = sys.certifiedData;
    }

    /** Sets the heap to `bytes[0, size)`, in a fresh instance when the heap has another size. */
    private restoreHeap(bytes: Uint8Array, size: number): void {
        const source = bytes.subarray(0, size);
        if (this.mem().length !== size) {
            this.instance = this.instantiate(this.code!);
            growHeap(this.instance.exports.memory as WebAssembly.Memory, this.code!.heapBase, size);
        }
        this.mem().set(source);
    }

    /** Keeps the innermost transaction's changes (an outer one can still undo them). */
    commitTransaction(): void {
        this.stable.commit();
        const top = this.snapshots.pop();
        if (!top) return;
        if (top.buf) this.host.snapshots.give(top.buf);
        else this.undo.commit();
    }

    /**
     * Executes one message: an export by name or a table function `[fun, env]`. Traps roll back
     * the message's heap, globals, stable memory and system state and drop its reply and calls.
     */
    execute(entry: string | [number, number], ctx: ExecContext): ExecResult {
        if (!this.instance || !this.code) throw new Error('execute on a canister without code');
        if (this.run) throw new Error('re-entrant execution of one canister');
        const cc = ctx.callContext;
        const ccSaved = cc
            ? { replied: cc.replied, cycles: cc.cyclesAvailable, out: cc.outstanding }
            : null;
        const sys = ctx.ownTransaction ? this.beginTransaction() : null;
        if (this.host.countInstructions) resetInstructionCounter(this.instance);
        this.run = {
            ctx,
            replyChunks: [],
            replySize: 0,
            response: null,
            pending: null,
            calls: [],
            accepted: false,
            startedNs: process.hrtime.bigint()
        };
        let trap: ExecResult['trap'] = null;
        try {
            if (typeof entry === 'string') {
                const fn = this.instance.exports[entry] as () => void;
                fn();
            } else {
                const table = this.instance.exports[TABLE_EXPORT] as WebAssembly.Table | undefined;
                const fn = table?.get(entry[0]) as ((env: number) => void) | null | undefined;
                if (!fn) {
                    throw new CanisterTrap(
                        `callback function index ${entry[0]} is not in the table`,
                        ErrorCode.CanisterContractViolation
                    );
                }
                fn(entry[1]);
            }
            this.checkInstructionLimit(this.run);
        } catch (e) {
            trap = toTrap(e);
        }
        const instructions = this.host.countInstructions
            ? readInstructionCounter(this.instance)
            : 0n;
        const run = this.run;
        if (cc) {
            const spent = this.host.countInstructions ? instructions : estimatedInstructions(run);
            this.contextInstructions.set(
                cc.id,
                (this.contextInstructions.get(cc.id) ?? 0n) + spent
            );
        }
        this.run = null;
        if (trap) {
            if (sys) this.rollback(sys);
            if (cc && ccSaved) {
                cc.replied = ccSaved.replied;
                cc.cyclesAvailable = ccSaved.cycles;
                cc.outstanding = ccSaved.out;
            }
            return { trap, response: null, calls: [], instructions, accepted: false };
        }
        if (sys) {
            if (ctx.discardState) this.rollback(sys);
            else this.commitTransaction();
        }
        return {
            trap: null,
            response: run.response,
            calls: run.calls,
            instructions,
            accepted: run.accepted
        };
    }

    /** Allocates a callback id (used by the engine for management replies). */
    allocateCallbackId(): number {
        return this.nextCallbackId++;
    }
}

/** A reusable full heap-snapshot buffer (modules without dirty-page tracking). */
export interface SnapshotBuffer {
    bytes: Uint8Array;
    length: number;
}

/**
 * Full heap-snapshot buffers shared by all canisters, for modules that `trackDirtyPages` could not
 * rewrite: one message runs at a time, so one buffer is reused; nested composite queries borrow
 * one more per level (bounded by the call depth).
 */
export class SnapshotPool {
    private readonly free: SnapshotBuffer[] = [];
    constructor(private readonly max_buffers = 4) {}

    /** Borrows a buffer (the most recently returned one first). */
    take(): SnapshotBuffer {
        return this.free.pop() ?? { bytes: new Uint8Array(0), length: 0 };
    }

    /** Returns a buffer; beyond the bound it is dropped for the GC. */
    give(buf: SnapshotBuffer): void {
        if (this.free.length < this.max_buffers) this.free.push(buf);
    }
}

/** System state saved before a message. */
export interface SystemSnapshot {
    cycles: bigint;
    timer: bigint;
    certifiedData: Uint8Array;
}

/** `performance_counter`'s value outside counting mode (see ESTIMATED_INSTRUCTIONS_PER_NS). */
function estimatedInstructions(r: RunState): bigint {
    return (process.hrtime.bigint() - r.startedNs) * ESTIMATED_INSTRUCTIONS_PER_NS;
}

/** An i32 (or i64-as-number) argument read as unsigned; 64-bit values stay as they are. */
function u32(v: number): number {
    return v < 0 && v >= -0x8000_0000 ? v >>> 0 : v;
}

function clampU64(v: bigint): bigint {
    return v > U64_MAX ? U64_MAX : v;
}

function utf8(s: string): Uint8Array {
    return new TextEncoder().encode(s);
}

function joinChunks(chunks: Uint8Array[], size: number): Uint8Array {
    const out = new Uint8Array(size);
    let off = 0;
    for (const c of chunks) {
        out.set(c, off);
        off += c.length;
    }
    return out;
}

function kindName(k: ExecKind): string {
    const names: Record<ExecKind, string> = {
        I: 'init',
        G: 'pre_upgrade',
        U: 'update',
        RQ: 'replicated query',
        NRQ: 'non-replicated query',
        CQ: 'composite query',
        Ry: 'reply callback',
        Rt: 'reject callback',
        CRy: 'composite reply callback',
        CRt: 'composite reject callback',
        C: 'cleanup',
        CC: 'composite cleanup',
        F: 'inspect message',
        T: 'global timer'
    };
    return names[k];
}

/** Converts anything thrown during execution into a trap description. */
export function toTrap(e: unknown): { message: string; error_code: string } {
    if (e instanceof CanisterTrap) return { message: e.message, error_code: e.error_code };
    if (e instanceof WebAssembly.RuntimeError) {
        return { message: e.message, error_code: ErrorCode.CanisterTrapped };
    }
    if (e instanceof RangeError) {
        // V8 reports stack exhaustion inside Wasm as RangeError.
        return { message: `${e.message}`, error_code: ErrorCode.CanisterTrapped };
    }
    throw e;
}
