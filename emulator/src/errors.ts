/** Reject codes of the IC interface specification. */
export enum RejectCode {
    SYS_FATAL = 1,
    SYS_TRANSIENT = 2,
    DESTINATION_INVALID = 3,
    CANISTER_REJECT = 4,
    CANISTER_ERROR = 5,
    SYS_UNKNOWN = 6
}

/**
 * Replica error codes (`IC0xxx`) the emulator produces. As in the replica's `ic_error_types`, the
 * first digit is the reject code (e.g. method not found is IC0536, so reject code 5).
 */
export const ErrorCode = {
    CanisterQueueFull: 'IC0201',
    IngressHistoryFull: 'IC0204',
    CanisterIdAlreadyExists: 'IC0205',
    CanisterOutOfCycles: 'IC0207',
    CanisterNotFound: 'IC0301',
    InsufficientCyclesForCreateCanister: 'IC0403',
    SubnetNotFound: 'IC0404',
    CanisterNotHostedBySubnet: 'IC0405',
    CanisterRejectedMessage: 'IC0406',
    UnknownManagementMessage: 'IC0407',
    InvalidManagementPayload: 'IC0408',
    CanisterTrapped: 'IC0502',
    CanisterCalledTrap: 'IC0503',
    CanisterContractViolation: 'IC0504',
    CanisterInvalidWasm: 'IC0505',
    CanisterDidNotReply: 'IC0506',
    CanisterOutOfMemory: 'IC0507',
    CanisterStopped: 'IC0508',
    CanisterStopping: 'IC0509',
    CanisterNotStopped: 'IC0510',
    CanisterStoppingCancelled: 'IC0511',
    CanisterInvalidController: 'IC0512',
    CanisterNonEmpty: 'IC0514',
    QueryCallGraphLoopDetected: 'IC0517',
    InsufficientCyclesInCall: 'IC0520',
    InstructionLimitExceeded: 'IC0522',
    QueryCallGraphTooDeep: 'IC0525',
    QueryCallGraphTotalInstructionLimitExceeded: 'IC0526',
    CompositeQueryCalledInReplicatedMode: 'IC0527',
    CanisterMethodNotFound: 'IC0536',
    CanisterWasmModuleNotFound: 'IC0537'
} as const;

/** A reject as carried in a response: code plus message (plus the replica's error code). */
export interface Reject {
    reject_code: RejectCode;
    reject_message: string;
    error_code: string;
}

/**
 * Builds a reject value. For an `IC0xxx` error code the reject code is its first digit (as the
 * replica derives it); `code` applies to other error codes.
 */
export function reject(code: RejectCode, error_code: string, message: string): Reject {
    const m = /^IC0(\d)\d\d$/.exec(error_code);
    return {
        reject_code: m ? (Number(m[1]) as RejectCode) : code,
        reject_message: message,
        error_code
    };
}

/**
 * Thrown by actors and harness methods when a call is rejected; the message has the same shape as
 * @dfinity/pic's ("Canister call failed: … Reject code: N. …").
 *
 * @example
 * try { await actor.boom(); } catch (e) { (e as CallRejectedError).reject_code; // 5 }
 */
export class CallRejectedError extends Error {
    readonly reject_code: RejectCode;
    readonly reject_message: string;
    readonly error_code: string;
    constructor(r: Reject) {
        super(
            `Canister call failed: ${r.reject_message}. Reject code: ${r.reject_code}. Error code: ${r.error_code}. Certified: true`
        );
        this.name = 'CallRejectedError';
        this.reject_code = r.reject_code;
        this.reject_message = r.reject_message;
        this.error_code = r.error_code;
    }
}

/** A trap raised inside canister execution (by `ic0.trap` or by a system-API misuse). */
export class CanisterTrap extends Error {
    constructor(
        message: string,
        readonly error_code: string = ErrorCode.CanisterCalledTrap
    ) {
        super(message);
        this.name = 'CanisterTrap';
    }
}
