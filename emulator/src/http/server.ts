/**
 * The emulator as a local IC network over the IC HTTP interface, so `@dfinity/agent` (with
 * certificate and query-signature verification on), deploy scripts and CLIs talk to it unmodified:
 *
 * - `GET /api/v2/status`: CBOR (self-describe tag) with the root key as 133-byte DER;
 * - `POST /api/v2/canister/<ecid>/query`: executed now, answer signed by the emulated node;
 * - `POST /api/v2/canister/<ecid>/call`: 202, then `read_state` of `request_status/<id>`;
 * - `POST /api/v3/canister/<ecid>/call` (and v4): waits for the answer and returns its certificate (202
 *   after `syncCallTimeoutMs`, then the agent polls);
 * - `POST /api/v2/canister/<ecid>/read_state` and `/api/v2/subnet/<id>/read_state`: BLS-signed
 *   certificates over `time`, `request_status`, `canister/<id>/{controllers,module_hash,metadata}`
 *   and `subnet/<id>/{canister_ranges,public_key,node}`.
 *
 * Every envelope is authenticated (see `auth.ts`); a bad one gets 400 and executes nothing.
 * Ingress runs on the engine's rounds: the server drives rounds while messages wait, and a ticker
 * runs rounds as wall-clock time passes so timers fire.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { IDL } from '@dfinity/candid';
import { decode as cborDecode, encodeWithSelfDescribedTag } from '@dfinity/cbor';
import { Principal } from '@dfinity/principal';
import type { Engine } from '../engine';
import { canisterIdFromIndex, MANAGEMENT_ID } from '../ids';
import { MANAGEMENT_METHODS } from '../management_idl';
import type { LocalIc } from '../local_ic';
import { leb128, sameBytes, toHex } from './encoding';
import { HttpFailure, validateEnvelope, type RequestType } from './auth';
import { insert, node, toHashTree, type LabeledTree } from './hash_tree';
import { cborLeaf, NetworkKeys } from './keys';

/** Largest request body accepted (the replica's bound is 5 MB; ingress payloads are ≤ 2 MiB). */
export const MAX_REQUEST_BODY_BYTES = 5 * 1024 * 1024;
/** Requests whose status is kept (oldest finished ones are forgotten first). */
export const MAX_REQUEST_STATUSES = 100_000;
/** Paths per read_state request and labels per path (as the replica). */
export const MAX_READ_STATE_PATHS = 1_000;
export const MAX_PATH_LABELS = 127;
/** Rounds run back to back while ingress waits, before yielding to the interval ticker. */
const MAX_ROUNDS_PER_BURST = 1_000;

type Status = 'received' | 'processing' | 'replied' | 'rejected' | 'done';

interface RequestEntry {
    sender: string;
    ecid: string;
    engineId: number;
    status: Status;
    reply?: Uint8Array;
    reject?: { code: number; message: string; errorCode: string };
    expiryNs: bigint;
    waiters: (() => void)[];
}

/** Options of `IcHttpServer.start`. */
export interface IcHttpServerOptions {
    /** The emulated IC to serve (create it with `wallClock: true` for a live network). */
    ic: LocalIc;
    /** Root and node keys (default: fresh ones). */
    keys?: NetworkKeys;
    /** Port (0 = a free one; default 4943) and host (default 127.0.0.1). */
    port?: number;
    host?: string;
    /** How long a v3 call waits for its answer before answering 202 (default 10 s). */
    syncCallTimeoutMs?: number;
    /** Serve `/api/v3/.../call` (default true; false answers 404, and agents fall back to v2). */
    syncCall?: boolean;
    /** Interval of the ticker that runs rounds as time passes (default 100 ms; 0 = none). */
    tickIntervalMs?: number;
}

/**
 * An HTTP server speaking the IC interface over a `LocalIc`.
 *
 * @example
 * const ic = await LocalIc.create({ wallClock: true });
 * const server = await IcHttpServer.start({ ic, port: 0 });
 * const agent = await HttpAgent.create({ host: server.url, shouldFetchRootKey: true });
 * await server.close();
 */
export class IcHttpServer {
    private readonly statuses = new Map<string, RequestEntry>();
    private readonly pending = new Map<number, RequestEntry>();
    private driving = false;
    private ticker: NodeJS.Timeout | null = null;
    private closed = false;

    private constructor(
        private readonly ic: LocalIc,
        readonly keys: NetworkKeys,
        private readonly server: Server,
        readonly url: string,
        private readonly options: IcHttpServerOptions
    ) {}

    /** Starts serving; resolves once listening. */
    static async start(options: IcHttpServerOptions): Promise<IcHttpServer> {
        const keys = options.keys ?? NetworkKeys.generate();
        const server = createServer();
        const host = options.host ?? '127.0.0.1';
        await new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen(options.port ?? 4943, host, () => resolve());
        });
        const port = (server.address() as AddressInfo).port;
        const s = new IcHttpServer(options.ic, keys, server, `http://${host}:${port}`, options);
        server.on('request', (req, res) => {
            s.handle(req, res).catch((e) => {
                if (!res.headersSent) reply(res, 500, 'text/plain', String(e));
            });
        });
        const interval = options.tickIntervalMs ?? 100;
        if (interval > 0) {
            s.ticker = setInterval(() => s.onTick(), interval);
            s.ticker.unref();
        }
        return s;
    }

    /** The DER root key agents must trust (also served by `/api/v2/status`). */
    get rootKey(): Uint8Array {
        return this.keys.rootKeyDer;
    }

    /** Stops listening; open connections are closed. */
    async close(): Promise<void> {
        this.closed = true;
        if (this.ticker) clearInterval(this.ticker);
        this.server.closeAllConnections();
        await new Promise<void>((resolve) => this.server.close(() => resolve()));
        for (const e of this.statuses.values()) for (const w of e.waiters.splice(0)) w();
    }

    private get engine(): Engine {
        return this.ic.raw;
    }

    /** Network time; in wall-clock mode it follows real time (never backwards). */
    private nowNs(): bigint {
        const e = this.engine;
        if (e.wallClock) {
            const wall = BigInt(Date.now()) * 1_000_000n;
            if (wall > e.timeNs) e.timeNs = wall;
        }
        return e.timeNs;
    }

    // ---- routing -------------------------------------------------------------------------------

    private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
        res.setHeader('Access-Control-Allow-Origin', '*');
        if (req.method === 'OPTIONS') {
            res.setHeader('Access-Control-Allow-Methods', 'GET, POST, OPTIONS');
            res.setHeader('Access-Control-Allow-Headers', 'Content-Type');
            reply(res, 204, 'text/plain', '');
            return;
        }
        const url = new URL(req.url ?? '/', 'http://localhost');
        const parts = url.pathname.split('/').filter((p) => p.length > 0);
        try {
            if (req.method === 'GET' && url.pathname === '/api/v2/status') {
                reply(res, 200, 'application/cbor', this.status());
                return;
            }
            const route = matchRoute(parts);
            if (!route || req.method !== 'POST') {
                throw new HttpFailure(404, `Not found: ${req.method} ${url.pathname}`);
            }
            if (
                route.endpoint === 'call' &&
                route.version >= 3 &&
                this.options.syncCall === false
            ) {
                throw new HttpFailure(404, 'Not found: the v3 call endpoint is disabled');
            }
            const id = parsePrincipal(route.id, route.kind === 'subnet' ? 'subnet' : 'canister');
            const body = await readBody(req);
            let envelope: unknown;
            try {
                envelope = cborDecode(body);
            } catch (e) {
                throw new HttpFailure(400, `Could not parse body as CBOR: ${(e as Error).message}`);
            }
            if (route.kind === 'subnet') {
                reply(res, 200, 'application/cbor', this.readState(envelope, id, true));
            } else if (route.endpoint === 'query') {
                reply(res, 200, 'application/cbor', this.query(envelope, id));
            } else if (route.endpoint === 'read_state') {
                reply(res, 200, 'application/cbor', this.readState(envelope, id, false));
            } else {
                await this.call(envelope, id, route.version >= 3, res);
            }
        } catch (e) {
            if (e instanceof HttpFailure) reply(res, e.status, 'text/plain', e.message);
            else throw e;
        }
    }

    private status(): Uint8Array {
        return encodeWithSelfDescribedTag({
            ic_api_version: '0.18.0',
            impl_version: 'agrilends-emulator',
            root_key: this.keys.rootKeyDer,
            replica_health_status: 'healthy'
        } as never);
    }

    // ---- queries -------------------------------------------------------------------------------

    private query(envelope: unknown, ecid: Principal): Uint8Array {
        const v = this.validate(envelope, 'query', ecid);
        const canisterId = Principal.fromUint8Array(v.content.canister_id as Uint8Array);
        if (!sameBytes(canisterId.toUint8Array(), ecid.toUint8Array())) {
            throw new HttpFailure(
                400,
                `Specified CanisterId ${canisterId.toText()} does not match effective canister id in URL ${ecid.toText()}`
            );
        }
        const r = this.engine.query(
            v.sender,
            canisterId,
            v.content.method_name as string,
            v.content.arg as Uint8Array
        );
        const timestamp = this.nowNs();
        const fields: Record<string, unknown> =
            'reply' in r
                ? { status: 'replied', reply: { arg: r.reply } }
                : {
                      status: 'rejected',
                      reject_code: r.reject.reject_code,
                      reject_message: r.reject.reject_message,
                      error_code: r.reject.error_code
                  };
        if ('reject' in r && r.reject.error_code === 'HTTP413') {
            throw new HttpFailure(413, r.reject.reject_message);
        }
        const signature = this.keys.signQueryResponse({
            ...fields,
            timestamp,
            request_id: v.requestId
        });
        return encodeWithSelfDescribedTag({
            ...fields,
            signatures: [{ timestamp, signature, identity: this.keys.nodeId.toUint8Array() }]
        } as never);
    }

    // ---- calls ---------------------------------------------------------------------------------

    private async call(
        envelope: unknown,
        ecid: Principal,
        sync: boolean,
        res: ServerResponse
    ): Promise<void> {
        const v = this.validate(envelope, 'call', ecid);
        const canisterId = Principal.fromUint8Array(v.content.canister_id as Uint8Array);
        const method = v.content.method_name as string;
        const arg = v.content.arg as Uint8Array;
        const subnet = this.checkEffectiveId(canisterId, method, arg, ecid);
        const key = toHex(v.requestId);
        let entry = this.statuses.get(key);
        if (!entry) {
            const r = this.engine.submitIngress(v.sender, canisterId, method, arg, subnet);
            if ('reject' in r) {
                if (r.reject.error_code === 'HTTP413') {
                    throw new HttpFailure(413, r.reject.reject_message);
                }
                // Refused before execution (e.g. by inspect_message): not certified.
                reply(
                    res,
                    200,
                    'application/cbor',
                    encodeWithSelfDescribedTag({
                        status: 'non_replicated_rejection',
                        reject_code: r.reject.reject_code,
                        reject_message: r.reject.reject_message,
                        error_code: r.reject.error_code
                    } as never)
                );
                return;
            }
            entry = {
                sender: v.sender.toText(),
                ecid: ecid.toText(),
                engineId: r.id,
                status: 'received',
                expiryNs: v.expiryNs,
                waiters: []
            };
            this.remember(key, entry);
            this.pending.set(r.id, entry);
            this.drive();
        }
        if (!sync) {
            reply(res, 202, 'text/plain', '');
            return;
        }
        const done = await this.waitFor(entry, this.options.syncCallTimeoutMs ?? 10_000);
        if (!done) {
            reply(res, 202, 'text/plain', '');
            return;
        }
        const tree = node(['time', leb128(this.nowNs())]);
        insert(tree, [utf8('request_status'), v.requestId], statusTree(entry));
        const certificate = this.keys.certify(toHashTree(tree));
        reply(
            res,
            200,
            'application/cbor',
            encodeWithSelfDescribedTag({ status: 'replied', certificate } as never)
        );
    }

    /**
     * The effective canister id rules: a call to a canister must name it in the URL; a call to
     * the management canister names the canister it acts on (or, to create one, any canister id
     * of the subnet to create it on). Returns the subnet for management calls.
     */
    private checkEffectiveId(
        canisterId: Principal,
        method: string,
        arg: Uint8Array,
        ecid: Principal
    ): Principal | undefined {
        if (!sameBytes(canisterId.toUint8Array(), MANAGEMENT_ID.toUint8Array())) {
            if (!sameBytes(canisterId.toUint8Array(), ecid.toUint8Array())) {
                throw new HttpFailure(
                    400,
                    `Specified CanisterId ${canisterId.toText()} does not match effective canister id in URL ${ecid.toText()}`
                );
            }
            return undefined;
        }
        const subnet = this.engine.subnetOf(ecid);
        if (method === 'provisional_create_canister_with_cycles') {
            if (!subnet) {
                throw new HttpFailure(
                    400,
                    `Effective canister id ${ecid.toText()} is on no subnet`
                );
            }
            return subnet.id;
        }
        const sig = MANAGEMENT_METHODS[method];
        if (sig && sig.args.length > 0) {
            let target: Principal | undefined;
            try {
                const [a] = IDL.decode(sig.args, arg) as unknown as [Record<string, unknown>];
                target = (a.canister_id ?? a.target_canister) as Principal | undefined;
            } catch {
                throw new HttpFailure(400, `Could not decode the argument of ${method}`);
            }
            if (target && !sameBytes(target.toUint8Array(), ecid.toUint8Array())) {
                throw new HttpFailure(
                    400,
                    `Effective canister id in URL ${ecid.toText()} does not match the canister_id ${target.toText()} of ${method}`
                );
            }
        }
        return subnet?.id;
    }

    private remember(key: string, entry: RequestEntry): void {
        if (this.statuses.size >= MAX_REQUEST_STATUSES) {
            const now = this.nowNs();
            let victim: string | undefined;
            for (const [k, e] of this.statuses) {
                if (e.status !== 'received' && e.status !== 'processing') {
                    victim = k;
                    if (e.expiryNs < now) break;
                }
            }
            if (!victim) throw new HttpFailure(503, 'Too many requests in flight');
            this.statuses.delete(victim);
        }
        this.statuses.set(key, entry);
    }

    private waitFor(entry: RequestEntry, timeoutMs: number): Promise<boolean> {
        if (entry.status === 'replied' || entry.status === 'rejected') return Promise.resolve(true);
        return new Promise((resolve) => {
            const timer = setTimeout(() => resolve(false), timeoutMs);
            entry.waiters.push(() => {
                clearTimeout(timer);
                resolve(entry.status === 'replied' || entry.status === 'rejected');
            });
        });
    }

    /** Runs rounds while ingress waits (one driver; bursts bounded, the ticker continues). */
    private drive(): void {
        if (this.driving || this.closed) return;
        this.driving = true;
        const step = (burst: number) => {
            if (this.closed || this.pending.size === 0 || burst >= MAX_ROUNDS_PER_BURST) {
                this.driving = false;
                return;
            }
            this.round();
            setImmediate(() => step(burst + 1));
        };
        setImmediate(() => step(0));
    }

    private round(): void {
        this.nowNs();
        this.engine.tick();
        this.settle();
    }

    private settle(): void {
        for (const [id, entry] of [...this.pending]) {
            const s = this.engine.ingressStatus(id);
            if (!s || s.status === 'pending') {
                if (s && entry.status === 'received') entry.status = 'processing';
                continue;
            }
            this.pending.delete(id);
            if ('reply' in s.result) {
                entry.status = 'replied';
                entry.reply = s.result.reply;
            } else {
                entry.status = 'rejected';
                entry.reject = {
                    code: s.result.reject.reject_code,
                    message: s.result.reject.reject_message,
                    errorCode: s.result.reject.error_code
                };
            }
            for (const w of entry.waiters.splice(0)) w();
        }
    }

    /** Ticker: keep rounds going as time passes (timers, outstanding calls, expiring statuses). */
    private onTick(): void {
        if (this.closed || this.driving) return;
        const now = this.nowNs();
        let due = this.pending.size > 0 || !this.engine.idle;
        for (const c of this.engine.canisters.values()) {
            if (due) break;
            due = c.globalTimerNs !== 0n && c.globalTimerNs <= now;
        }
        if (due) this.round();
        for (const e of this.statuses.values()) {
            // After expiry the replica keeps only "done" (the reply is pruned).
            if (e.expiryNs < now && (e.status === 'replied' || e.status === 'rejected')) {
                e.status = 'done';
                e.reply = undefined;
                e.reject = undefined;
            }
        }
    }

    // ---- read_state ----------------------------------------------------------------------------

    private validate(envelope: unknown, type: RequestType, ecid: Principal) {
        return validateEnvelope(envelope, type, this.nowNs(), (content) =>
            type === 'read_state'
                ? ecid
                : Principal.fromUint8Array(content.canister_id as Uint8Array)
        );
    }

    private readState(envelope: unknown, id: Principal, subnetRoute: boolean): Uint8Array {
        const v = this.validate(envelope, 'read_state', id);
        const paths = v.content.paths as unknown[];
        if (paths.length > MAX_READ_STATE_PATHS) {
            throw new HttpFailure(400, `At most ${MAX_READ_STATE_PATHS} paths may be requested`);
        }
        const tree = node(['time', leb128(this.nowNs())]);
        let requestIdSeen: Uint8Array | null = null;
        for (const p of paths) {
            if (!Array.isArray(p) || p.length > MAX_PATH_LABELS) {
                throw new HttpFailure(
                    400,
                    `A path is an array of at most ${MAX_PATH_LABELS} labels`
                );
            }
            if (!p.every((l) => l instanceof Uint8Array)) {
                throw new HttpFailure(400, 'Path labels must be blobs');
            }
            const path = p as Uint8Array[];
            const head = path.length ? Buffer.from(path[0]).toString('utf8') : '';
            if (head === 'time' && path.length === 1) continue;
            if (head === 'subnet') {
                this.subnetPath(tree, path);
                continue;
            }
            if (subnetRoute) throw new HttpFailure(404, 'Invalid path requested.');
            if (head === 'request_status' && path.length >= 2) {
                if (requestIdSeen && !sameBytes(requestIdSeen, path[1])) {
                    throw new HttpFailure(
                        400,
                        'Can only request a single request ID in request_status paths.'
                    );
                }
                requestIdSeen = path[1];
                this.requestStatusPath(tree, path, v.sender, id);
                continue;
            }
            if (head === 'canister' && path.length >= 3) {
                this.canisterPath(tree, path, v.sender, id);
                continue;
            }
            throw new HttpFailure(404, 'Invalid path requested.');
        }
        return encodeWithSelfDescribedTag({
            certificate: this.keys.certify(toHashTree(tree))
        } as never);
    }

    private requestStatusPath(
        tree: Map<string, { label: Uint8Array; sub: LabeledTree }>,
        path: Uint8Array[],
        sender: Principal,
        ecid: Principal
    ): void {
        const entry = this.statuses.get(toHex(path[1]));
        if (!entry) return; // absent: the agent keeps polling
        if (entry.sender !== sender.toText()) {
            throw new HttpFailure(403, 'Request IDs must be for requests signed by the caller.');
        }
        if (entry.ecid !== ecid.toText()) {
            throw new HttpFailure(
                403,
                `Effective canister id ${ecid.toText()} does not match the request's (${entry.ecid})`
            );
        }
        insert(tree, [utf8('request_status'), path[1]], statusTree(entry));
    }

    private canisterPath(
        tree: Map<string, { label: Uint8Array; sub: LabeledTree }>,
        path: Uint8Array[],
        sender: Principal,
        ecid: Principal
    ): void {
        if (!sameBytes(path[1], ecid.toUint8Array())) {
            throw new HttpFailure(
                400,
                `Effective principal id in URL ${ecid.toText()} does not match requested principal id: ${Principal.fromUint8Array(path[1]).toText()}.`
            );
        }
        const field = Buffer.from(path[2]).toString('utf8');
        const c = this.engine.canisters.get(ecid.toText());
        if (field === 'controllers' && path.length === 3) {
            if (!c) return;
            const controllers = c.controllers.map((p) => p.toUint8Array());
            insert(tree, path, encodeWithSelfDescribedTag(controllers as never));
            return;
        }
        if (field === 'module_hash' && path.length === 3) {
            if (c?.code) insert(tree, path, c.code.moduleHash);
            return;
        }
        if (field === 'metadata' && path.length === 4) {
            if (!c?.code) return;
            const name = Buffer.from(path[3]).toString('utf8');
            const pub = WebAssembly.Module.customSections(c.code.module, `icp:public ${name}`);
            if (pub.length > 0) {
                insert(tree, path, new Uint8Array(pub[0]));
                return;
            }
            const priv = WebAssembly.Module.customSections(c.code.module, `icp:private ${name}`);
            if (priv.length > 0) {
                if (!c.controllers.some((x) => x.toText() === sender.toText())) {
                    throw new HttpFailure(
                        403,
                        `Custom section ${name} can only be read by the controllers of the canister.`
                    );
                }
                insert(tree, path, new Uint8Array(priv[0]));
            }
            return;
        }
        throw new HttpFailure(404, 'Invalid path requested.');
    }

    /** `subnet/<id>/{canister_ranges, public_key, node/<node>/public_key}` (one subnet: the root). */
    private subnetPath(
        tree: Map<string, { label: Uint8Array; sub: LabeledTree }>,
        path: Uint8Array[]
    ): void {
        const sid = this.keys.subnetId.toUint8Array();
        if (path.length >= 2 && !sameBytes(path[1], sid)) return;
        const ranges = this.engine.subnets.map((s) => [
            canisterIdFromIndex(s.rangeStart).toUint8Array(),
            canisterIdFromIndex(s.rangeEnd).toUint8Array()
        ]);
        const sub = node(
            ['canister_ranges', cborLeaf(ranges)],
            ['public_key', this.keys.rootKeyDer],
            [
                'node',
                node([this.keys.nodeId.toUint8Array(), node(['public_key', this.keys.nodeKeyDer])])
            ]
        );
        insert(tree, [utf8('subnet'), sid], sub);
    }
}

function statusTree(e: RequestEntry): LabeledTree {
    const fields: [string, LabeledTree][] = [['status', utf8(e.status)]];
    if (e.status === 'replied' && e.reply) fields.push(['reply', e.reply]);
    if (e.status === 'rejected' && e.reject) {
        fields.push(['reject_code', leb128(e.reject.code)]);
        fields.push(['reject_message', utf8(e.reject.message)]);
        fields.push(['error_code', utf8(e.reject.errorCode)]);
    }
    return node(...fields);
}

function utf8(s: string): Uint8Array {
    return new TextEncoder().encode(s);
}

interface Route {
    version: 2 | 3 | 4;
    kind: 'canister' | 'subnet';
    id: string;
    endpoint: 'call' | 'query' | 'read_state';
}

function matchRoute(parts: string[]): Route | null {
    if (parts.length !== 5 || parts[0] !== 'api') return null;
    const version = parts[1] === 'v2' ? 2 : parts[1] === 'v3' ? 3 : parts[1] === 'v4' ? 4 : null;
    const kind = parts[2] === 'canister' || parts[2] === 'subnet' ? parts[2] : null;
    const endpoint = parts[4];
    if (!version || !kind) return null;
    if (endpoint !== 'call' && endpoint !== 'query' && endpoint !== 'read_state') return null;
    // v3 adds query and read_state (same bodies as v2) and the synchronous call; v4 only the
    // synchronous call. They differ from v2 in how certificate delegations are encoded, and
    // this network issues none (the root key signs every certificate), so the bodies are equal.
    if (version === 4 && (kind !== 'canister' || endpoint !== 'call')) return null;
    if (kind === 'subnet' && endpoint !== 'read_state') return null;
    return { version, kind, id: parts[3], endpoint };
}

function parsePrincipal(text: string, what: string): Principal {
    try {
        return Principal.fromText(decodeURIComponent(text));
    } catch {
        throw new HttpFailure(400, `Invalid ${what} id in URL: ${text}`);
    }
}

async function readBody(req: IncomingMessage): Promise<Uint8Array> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req) {
        size += (chunk as Buffer).length;
        if (size > MAX_REQUEST_BODY_BYTES) {
            throw new HttpFailure(413, `Request body exceeds ${MAX_REQUEST_BODY_BYTES} bytes`);
        }
        chunks.push(chunk as Buffer);
    }
    return new Uint8Array(Buffer.concat(chunks));
}

function reply(res: ServerResponse, status: number, type: string, body: Uint8Array | string): void {
    res.statusCode = status;
    res.setHeader('Content-Type', type);
    res.end(typeof body === 'string' ? body : Buffer.from(body));
}
