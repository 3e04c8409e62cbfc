import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { toPrincipal, type PrincipalLike } from './ids';

/** What an actor needs from its back end. */
export interface ActorTransport {
    query(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array
    ): Promise<Uint8Array>;
    update(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array
    ): Promise<Uint8Array>;
    /** Submits an update now; the returned function runs rounds until it is answered. */
    submit(
        sender: Principal,
        canisterId: Principal,
        method: string,
        arg: Uint8Array
    ): () => Promise<Uint8Array>;
}

/** Sender controls every actor has (as PicJS's Actor). */
export interface ActorControls {
    setPrincipal(principal: PrincipalLike): void;
    setIdentity(identity: { getPrincipal(): PrincipalLike }): void;
}

/** A typed actor: the service's methods plus sender controls. */
export type Actor<T = Record<string, (...args: unknown[]) => Promise<unknown>>> = T & ActorControls;

/** A deferred actor: each method submits now and resolves to a function that awaits the result. */
export type DeferredActor<T = Record<string, (...args: unknown[]) => Promise<unknown>>> = {
    [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R>
        ? (...args: A) => Promise<() => Promise<R>>
        : never;
} & ActorControls;

/**
 * Hand decoders of hot replies by method name, tried before `IDL.decode` (which costs about a
 * millisecond of JS per record-heavy reply): a decoder returns the decoded value, or undefined to
 * leave the reply to `IDL.decode`.
 */
export type ReplyDecoders = Record<string, (reply: Uint8Array) => unknown>;

/**
 * Hand encoders of hot arguments by method name, used instead of `IDL.encode` (which costs the
 * caller about as much JS as it decodes): an encoder returns the whole Candid argument, exactly the
 * bytes `IDL.encode(argTypes, args)` would write.
 */
export type ArgEncoders = Record<string, (args: unknown[]) => Uint8Array>;

/** Decodes a reply as PicJS does: no value → null, one → the value, several → an array. */
export function decodeReply(types: IDL.Type[], bytes: Uint8Array): unknown {
    const values = IDL.decode(types, bytes);
    if (values.length === 0) return null;
    if (values.length === 1) return values[0];
    return values;
}

function isQuery(func: IDL.FuncClass): boolean {
    return func.annotations.includes('query') || func.annotations.includes('composite_query');
}

function makeControls(state: { sender: Principal }): ActorControls {
    return {
        setPrincipal(p: PrincipalLike) {
            state.sender = toPrincipal(p);
        },
        setIdentity(identity: { getPrincipal(): PrincipalLike }) {
            state.sender = toPrincipal(identity.getPrincipal());
        }
    };
}

/**
 * Builds an actor over an IDL factory: args encoded with the method's types, replies decoded;
 * queries run immediately, updates run rounds until answered. The sender starts anonymous.
 *
 * @example
 * const actor = createActor<{ inc(): Promise<bigint> }>(idlFactory, canisterId, transport);
 * await actor.inc(); // 1n
 */
export function createActor<T>(
    idlFactory: IDL.InterfaceFactory,
    canisterId: Principal,
    transport: ActorTransport
): Actor<T> {
    const service = idlFactory({ IDL });
    const state = { sender: Principal.anonymous() };
    const actor: Record<string, unknown> = { ...makeControls(state) };
    for (const [name, func] of service._fields) {
        actor[name] = async (...args: unknown[]) => {
            const arg = new Uint8Array(IDL.encode(func.argTypes, args));
            const bytes = isQuery(func)
                ? await transport.query(state.sender, canisterId, name, arg)
                : await transport.update(state.sender, canisterId, name, arg);
            return decodeReply(func.retTypes, bytes);
        };
    }
    return actor as Actor<T>;
}

/**
 * Builds a deferred actor (as PicJS's DeferredActor): `await actor.m(x)` submits the call and
 * returns a function; awaiting that function executes rounds until the call is answered.
 *
 * @example
 * const run = await deferred.inc(); await ic.tick(); const value = await run();
 */
export function createDeferredActor<T>(
    idlFactory: IDL.InterfaceFactory,
    canisterId: Principal,
    transport: ActorTransport,
    decoders: ReplyDecoders = {},
    encoders: ArgEncoders = {}
): DeferredActor<T> {
    const service = idlFactory({ IDL });
    const state = { sender: Principal.anonymous() };
    const actor: Record<string, unknown> = { ...makeControls(state) };
    for (const [name, func] of service._fields) {
        const encode = encoders[name];
        actor[name] = async (...args: unknown[]) => {
            const arg = encode ? encode(args) : new Uint8Array(IDL.encode(func.argTypes, args));
            const wait = transport.submit(state.sender, canisterId, name, arg);
            const fast = decoders[name];
            return async () => {
                const reply = await wait();
                return fast?.(reply) ?? decodeReply(func.retTypes, reply);
            };
        };
    }
    return actor as DeferredActor<T>;
}
