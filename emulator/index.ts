/**
 * The local IC emulator: runs real canister Wasm (Azle) in-process with the replica's semantics.
 * Import from `emulator` (this file), e.g. `import { LocalIc } from '../../emulator'`.
 */
export { LocalIc } from './src/local_ic';
export type {
    Capabilities,
    CanisterStatusResult,
    CodeOptions,
    LocalIcOptions,
    SetupCanisterOptions,
    SubnetTopology
} from './src/local_ic';
export type { Actor, ActorControls, ArgEncoders, DeferredActor, ReplyDecoders } from './src/actor';
export { CallRejectedError, RejectCode, ErrorCode } from './src/errors';
export type { Reject } from './src/errors';
export type { TraceEntry } from './src/engine';
export {
    CREATE_CANISTER_FEE,
    LIMITS,
    XNET_LATENCY_ROUNDS,
    MAX_INNER_ITERATIONS
} from './src/engine';
export { MANAGEMENT_ID, canisterIdFromIndex } from './src/ids';
export { managementIdlFactory } from './src/management_idl';
export {
    BAD_REQUEST_CYCLES_PENALTY,
    CMC_ID,
    cmcIdlFactory,
    CREATE_CANISTER_MIN_CYCLES
} from './src/cmc';
// ---- HTTP interface (src/http) ----
export { IcHttpServer } from './src/http/server';
export type { IcHttpServerOptions } from './src/http/server';
export { NetworkKeys } from './src/http/keys';
// ---- end HTTP interface ----
