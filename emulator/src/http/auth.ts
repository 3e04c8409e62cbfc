/**
 * Validation of a signed request envelope `{ content, sender_pubkey?, sender_sig?,
 * sender_delegation? }` as the replica's ingress validator does it: content shape, ingress expiry
 * window, the sender as the self-authenticating id of the (first) public key, the delegation
 * chain (signatures over `\x1Aic-request-auth-delegation`, expirations, targets), and the request
 * signature over `\x0Aic-request ‖ request id` (Ed25519, ECDSA P-256 or secp256k1). A failure is
 * an `HttpFailure` (the replica answers 400) and nothing executes.
 */
import { Principal } from '@dfinity/principal';
import { ed25519 } from '@noble/curves/ed25519';
import { p256 } from '@noble/curves/nist';
import { secp256k1 } from '@noble/curves/secp256k1';
import { sha256 } from '@noble/hashes/sha2';
import { concatBytes } from '@noble/hashes/utils';
import { domainSeparator, hashOfMap, requestId, sameBytes, unwrapDer } from './encoding';

/** The replica's bound on ingress expiry: at most 5 minutes ahead, plus 30 s of permitted drift. */
export const MAX_INGRESS_TTL_NS = 5n * 60n * 1_000_000_000n;
export const PERMITTED_DRIFT_NS = 30n * 1_000_000_000n;
/** The replica's bounds on delegation chains. */
export const MAX_DELEGATIONS = 20;
export const MAX_DELEGATION_TARGETS = 1_000;
/** Nonces are at most 32 bytes. */
export const MAX_NONCE_BYTES = 32;

/** An HTTP error answer (status and plain-text body). */
export class HttpFailure extends Error {
    constructor(
        readonly status: number,
        message: string
    ) {
        super(message);
        this.name = 'HttpFailure';
    }
}

/** The three request kinds of the interface. */
export type RequestType = 'call' | 'query' | 'read_state';

/** A validated request. */
export interface ValidRequest {
    content: Record<string, unknown>;
    requestId: Uint8Array;
    sender: Principal;
    expiryNs: bigint;
}

const bad = (m: string) => new HttpFailure(400, m);

function bytes(v: unknown, field: string): Uint8Array {
    if (!(v instanceof Uint8Array)) throw bad(`Invalid ${field}: expected a blob`);
    return v;
}

function nat(v: unknown, field: string): bigint {
    if (typeof v === 'bigint' && v >= 0n) return v;
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    throw bad(`Invalid ${field}: expected a natural number`);
}

function principal(v: unknown, field: string): Principal {
    const b = bytes(v, field);
    if (b.length > 29) throw bad(`Invalid ${field}: a principal has at most 29 bytes`);
    return Principal.fromUint8Array(b);
}

function nsToIso(ns: bigint): string {
    return new Date(Number(ns / 1_000_000n)).toISOString();
}

/**
 * Validates an envelope for `expected` at network time `nowNs`; `target` is the canister the
 * request addresses (delegation targets must allow it).
 */
export function validateEnvelope(
    envelope: unknown,
    expected: RequestType,
    nowNs: bigint,
    target: (content: Record<string, unknown>) => Principal
): ValidRequest {
    if (envelope === null || typeof envelope !== 'object' || Array.isArray(envelope)) {
        throw bad('Could not parse body as a request envelope');
    }
    const env = envelope as Record<string, unknown>;
    const content = env.content;
    if (content === null || typeof content !== 'object' || Array.isArray(content)) {
        throw bad('Could not parse body: missing content');
    }
    const c = content as Record<string, unknown>;
    if (c.request_type !== expected) {
        throw bad(`Invalid request type: expected "${expected}", got "${String(c.request_type)}"`);
    }
    const sender = principal(c.sender, 'sender');
    const expiryNs = nat(c.ingress_expiry, 'ingress_expiry');
    if (c.nonce !== undefined && bytes(c.nonce, 'nonce').length > MAX_NONCE_BYTES) {
        throw bad(`Invalid nonce: at most ${MAX_NONCE_BYTES} bytes`);
    }
    if (expected === 'read_state') {
        if (!Array.isArray(c.paths)) throw bad('Invalid paths: expected an array');
    } else {
        principal(c.canister_id, 'canister_id');
        if (typeof c.method_name !== 'string') throw bad('Invalid method_name: expected text');
        bytes(c.arg, 'arg');
    }
    // The replica's message (ingress_validation.rs); agents match its prefix to resync their clock.
    const maxNs = nowNs + MAX_INGRESS_TTL_NS + PERMITTED_DRIFT_NS;
    if (expiryNs < nowNs || expiryNs > maxNs) {
        throw bad(
            `Invalid request expiry: Specified ingress_expiry not within expected range: Minimum allowed expiry: ${nsToIso(nowNs)}, Maximum allowed expiry: ${nsToIso(maxNs)}, Provided expiry: ${nsToIso(expiryNs)}`
        );
    }
    let id: Uint8Array;
    try {
        id = requestId(c);
    } catch (e) {
        throw bad(`Could not compute the request id: ${(e as Error).message}`);
    }
    authenticate(env, sender, id, nowNs, () => target(c));
    return { content: c, requestId: id, sender, expiryNs };
}

function authenticate(
    env: Record<string, unknown>,
    sender: Principal,
    id: Uint8Array,
    nowNs: bigint,
    target: () => Principal
): void {
    const hasKey = env.sender_pubkey !== undefined;
    if (sender.isAnonymous()) {
        if (hasKey || env.sender_sig !== undefined || env.sender_delegation !== undefined) {
            throw bad('Request is signed but the sender is the anonymous principal');
        }
        return;
    }
    if (!hasKey || env.sender_sig === undefined) {
        throw bad(`Missing signature from sender ${sender.toText()}`);
    }
    const pubkey = bytes(env.sender_pubkey, 'sender_pubkey');
    if (!sameBytes(Principal.selfAuthenticating(pubkey).toUint8Array(), sender.toUint8Array())) {
        throw bad(
            `Invalid signature: sender ${sender.toText()} is not the self-authenticating id of the public key`
        );
    }
    let key = pubkey;
    const chain = env.sender_delegation;
    if (chain !== undefined) {
        if (!Array.isArray(chain)) throw bad('Invalid delegation: expected an array');
        if (chain.length > MAX_DELEGATIONS) {
            throw bad(`Invalid delegation: at most ${MAX_DELEGATIONS} delegations are allowed`);
        }
        const seen: Uint8Array[] = [pubkey];
        for (const [i, signed] of chain.entries()) {
            const s = signed as { delegation?: Record<string, unknown>; signature?: unknown };
            const d = s?.delegation;
            if (!d || typeof d !== 'object')
                throw bad(`Invalid delegation ${i}: missing delegation`);
            const next = bytes(d.pubkey, `delegation ${i} pubkey`);
            const expiration = nat(d.expiration, `delegation ${i} expiration`);
            const sig = bytes(s.signature, `delegation ${i} signature`);
            if (expiration < nowNs) {
                throw bad(
                    `Invalid delegation: delegation ${i} expired at ${nsToIso(expiration)} (now ${nsToIso(nowNs)})`
                );
            }
            if (d.targets !== undefined) checkTargets(d.targets, i, target());
            if (seen.some((k) => sameBytes(k, next))) {
                throw bad('Invalid delegation: the chain contains a cycle');
            }
            const msg = concatBytes(domainSeparator('ic-request-auth-delegation'), hashOfMap(d));
            if (!verify(key, sig, msg)) {
                throw bad(`Invalid delegation: signature of delegation ${i} does not verify`);
            }
            seen.push(next);
            key = next;
        }
    }
    const sig = bytes(env.sender_sig, 'sender_sig');
    if (!verify(key, sig, concatBytes(domainSeparator('ic-request'), id))) {
        throw bad(
            `Invalid signature: the request signature does not verify for sender ${sender.toText()}`
        );
    }
}

function checkTargets(targets: unknown, i: number, target: Principal): void {
    if (!Array.isArray(targets)) throw bad(`Invalid delegation ${i}: targets must be an array`);
    if (targets.length > MAX_DELEGATION_TARGETS) {
        throw bad(`Invalid delegation: at most ${MAX_DELEGATION_TARGETS} targets are allowed`);
    }
    const t = target.toUint8Array();
    if (!targets.some((x) => x instanceof Uint8Array && sameBytes(x, t))) {
        throw bad(
            `Invalid delegation: canister ${target.toText()} is not one of the delegation's targets`
        );
    }
}

/** Verifies a signature by a DER public key; false for unknown key types or malformed input. */
export function verify(derKey: Uint8Array, sig: Uint8Array, msg: Uint8Array): boolean {
    const k = unwrapDer(derKey);
    if (!k) {
        throw bad(
            'Invalid public key: only Ed25519, ECDSA P-256 and ECDSA secp256k1 keys are supported'
        );
    }
    try {
        switch (k.kind) {
            case 'ed25519':
                return sig.length === 64 && ed25519.verify(sig, msg, k.raw);
            case 'p256':
                return (
                    sig.length === 64 &&
                    p256.verify(sig, sha256(msg), k.raw, { prehash: false, lowS: false })
                );
            case 'secp256k1':
                // As the replica (k256): high-S (malleable) signatures are refused.
                return (
                    sig.length === 64 &&
                    secp256k1.verify(sig, sha256(msg), k.raw, { prehash: false, lowS: true })
                );
            default:
                return false;
        }
    } catch {
        return false;
    }
}
