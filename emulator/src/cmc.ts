/**
 * The emulator's Cycles Minting Canister (CMC): `create_canister` with cycles attached and a chosen
 * subnet, the IC's way to place a canister on a subnet other than the caller's. Candid as the
 * CMC's `cmc.did` (dfinity/ic `rs/nns/cmc`); behaviour as its `create_canister`:
 *
 * - fewer than 100 B cycles attached, or both `subnet_type` and `subnet_selection` given: `Err
 *   Refunded` with every cycle refunded;
 * - otherwise the canister is created on the selected subnet (`Subnet { subnet }`, or `Filter {
 *   subnet_type }` where the emulator's subnet type is its region tag, or the least-populated
 *   subnet when nothing is selected) with the creation fee taken from the attached cycles and the
 *   rest as its balance; `settings.controllers` default to the caller;
 * - a creation that fails (unknown subnet, no subnet of that type, too few cycles for the fee, too
 *   many controllers) keeps a 100 M cycles penalty and refunds the rest: `Err Refunded {
 *   refund_amount; create_error }`.
 *
 * The CMC lives at its mainnet id on subnet 0 (on the IC it is on the NNS subnet); it is enabled
 * with `LocalIc.create({ cmc: true })`. Its call to the chosen subnet's management canister is
 * modelled as latency: a creation on another subnet than the CMC's answers 2 × XNet later.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';

/** The CMC's mainnet id, `rkp4c-7iaaa-aaaaa-aaaca-cai` (canister index 4). */
export const CMC_ID = Principal.fromUint8Array(new Uint8Array([0, 0, 0, 0, 0, 0, 0, 4, 1, 1]));
/** `create_canister` refuses less than this outright (the CMC's `CREATE_CANISTER_MIN_CYCLES`). */
export const CREATE_CANISTER_MIN_CYCLES = 100_000_000_000n;
/** Kept from the attached cycles when a creation fails (`BAD_REQUEST_CYCLES_PENALTY`). */
export const BAD_REQUEST_CYCLES_PENALTY = 100_000_000n;

const LogVisibility = IDL.Variant({ controllers: IDL.Null, public: IDL.Null });
const CanisterSettings = IDL.Record({
    controllers: IDL.Opt(IDL.Vec(IDL.Principal)),
    compute_allocation: IDL.Opt(IDL.Nat),
    memory_allocation: IDL.Opt(IDL.Nat),
    freezing_threshold: IDL.Opt(IDL.Nat),
    reserved_cycles_limit: IDL.Opt(IDL.Nat),
    log_visibility: IDL.Opt(LogVisibility),
    wasm_memory_limit: IDL.Opt(IDL.Nat),
    wasm_memory_threshold: IDL.Opt(IDL.Nat),
    environment_variables: IDL.Opt(IDL.Vec(IDL.Record({ name: IDL.Text, value: IDL.Text })))
});
const SubnetSelection = IDL.Variant({
    Subnet: IDL.Record({ subnet: IDL.Principal }),
    Filter: IDL.Record({ subnet_type: IDL.Opt(IDL.Text) })
});
/** `CreateCanisterArg` of `cmc.did`. */
export const CmcCreateCanisterArg = IDL.Record({
    settings: IDL.Opt(CanisterSettings),
    subnet_type: IDL.Opt(IDL.Text),
    subnet_selection: IDL.Opt(SubnetSelection)
});
/** `CreateCanisterResult` of `cmc.did`. */
export const CmcCreateCanisterResult = IDL.Variant({
    Ok: IDL.Principal,
    Err: IDL.Variant({
        Refunded: IDL.Record({ refund_amount: IDL.Nat, create_error: IDL.Text })
    })
});
/** The CMC methods the emulator implements, for clients (`createActor(cmcIdlFactory, CMC_ID)`). */
export const cmcIdlFactory: IDL.InterfaceFactory = ({ IDL: I }) =>
    I.Service({
        create_canister: I.Func([CmcCreateCanisterArg], [CmcCreateCanisterResult], [])
    });

interface Settings {
    controllers: [] | [Principal[]];
    freezing_threshold: [] | [bigint];
}
interface CreateArg {
    settings: [] | [Settings];
    subnet_type: [] | [string];
    subnet_selection:
        [] | [{ Subnet: { subnet: Principal } } | { Filter: { subnet_type: [] | [string] } }];
}

/** What the CMC needs of the engine. */
export interface CmcHost {
    subnets: readonly { index: number; id: Principal; region: string }[];
    /** Canisters hosted per subnet index (for the default choice). */
    canisterCount(subnetIndex: number): number;
    /** The creation fee the management canister takes. */
    createFee: bigint;
    maxControllers: number;
}

/** A request to the CMC as the engine hands it over. */
export interface CmcRequest {
    method: string;
    arg: Uint8Array;
    caller: Principal;
    cycles: bigint;
}

/** How to answer: at once (`reject`, or `reply` with no creation), or after creating a canister. */
export type CmcPlan =
    | { kind: 'reject'; code: number; message: string }
    | { kind: 'reply'; reply: Uint8Array; refund: bigint }
    | {
          kind: 'create';
          subnetIndex: number;
          controllers: Principal[];
          freezingThreshold: bigint | undefined;
          cycles: bigint;
      };

function refunded(refund: bigint, error: string): Uint8Array {
    return new Uint8Array(
        IDL.encode(
            [CmcCreateCanisterResult],
            [{ Err: { Refunded: { refund_amount: refund, create_error: error } } }]
        )
    );
}

/** The reply to a creation that failed after the selection (the penalty is kept). */
export function creationFailed(
    cycles: bigint,
    error: string
): { reply: Uint8Array; refund: bigint } {
    const refund = cycles > BAD_REQUEST_CYCLES_PENALTY ? cycles - BAD_REQUEST_CYCLES_PENALTY : 0n;
    return { reply: refunded(refund, error), refund };
}

/** The reply to a successful creation. */
export function created(id: Principal): Uint8Array {
    return new Uint8Array(IDL.encode([CmcCreateCanisterResult], [{ Ok: id }]));
}

/**
 * Decides what a CMC request does: the subnet chosen, or the error. Pure over the host's topology.
 */
export function planCmcRequest(host: CmcHost, req: CmcRequest): CmcPlan {
    if (req.method !== 'create_canister') {
        return {
            kind: 'reject',
            code: 3,
            message: `Canister ${CMC_ID.toText()} has no update method '${req.method}' in the emulator`
        };
    }
    let arg: CreateArg;
    try {
        arg = IDL.decode([CmcCreateCanisterArg], req.arg)[0] as unknown as CreateArg;
    } catch (e) {
        return {
            kind: 'reject',
            code: 5,
            message: `Error from Canister ${CMC_ID.toText()}: failed to decode the argument: ${(e as Error).message}`
        };
    }
    const cycles = req.cycles;
    if (cycles < CREATE_CANISTER_MIN_CYCLES) {
        return {
            kind: 'reply',
            reply: refunded(cycles, 'Insufficient cycles attached.'),
            refund: cycles
        };
    }
    if (arg.subnet_type.length > 0 && arg.subnet_selection.length > 0) {
        return {
            kind: 'reply',
            reply: refunded(
                cycles,
                'Information about the subnet type can only be passed via subnet_selection, not via subnet_type and subnet_selection at the same time.'
            ),
            refund: cycles
        };
    }
    const fail = (error: string): CmcPlan => ({ kind: 'reply', ...creationFailed(cycles, error) });
    const selection = arg.subnet_selection[0];
    const type =
        selection !== undefined && 'Filter' in selection
            ? selection.Filter.subnet_type[0]
            : arg.subnet_type[0];
    let subnetIndex: number;
    if (selection !== undefined && 'Subnet' in selection) {
        const wanted = selection.Subnet.subnet.toText();
        const subnet = host.subnets.find((s) => s.id.toText() === wanted);
        if (subnet === undefined) {
            return fail(
                `Subnet ${wanted} does not exist or the caller is not authorized to use it.`
            );
        }
        subnetIndex = subnet.index;
    } else {
        const candidates =
            type === undefined ? host.subnets : host.subnets.filter((s) => s.region === type);
        if (candidates.length === 0) return fail(`Provided subnet type ${type} does not exist`);
        // The real CMC picks at random among them; the emulator picks the least populated.
        subnetIndex = candidates.reduce((best, s) =>
            host.canisterCount(s.index) < host.canisterCount(best.index) ? s : best
        ).index;
    }
    const settings = arg.settings[0];
    const controllers = settings?.controllers[0] ?? [req.caller];
    if (controllers.length > host.maxControllers) {
        return fail(`Invalid settings: at most ${host.maxControllers} controllers are allowed`);
    }
    if (cycles < host.createFee) {
        return fail(
            `Creating canister in subnet ${host.subnets[subnetIndex].id.toText()} failed: cycles are not enough to create a canister: ${cycles} attached, the fee is ${host.createFee}`
        );
    }
    return {
        kind: 'create',
        subnetIndex,
        controllers,
        freezingThreshold: settings?.freezing_threshold[0],
        cycles: cycles - host.createFee
    };
}
