/**
 * The emulated Cycles Minting Canister: subnet selection, cycles and refunds as the real CMC's
 * `create_canister` (its decisions through `planCmcRequest`, the wiring through the engine). The
 * canister-to-CMC path with cycles attached is exercised by the factory's placement test
 * (tests/integration/factory.test.ts). Emulator-only: PocketIC has no CMC unless an NNS is set up.
 */
import { IDL } from '@dfinity/candid';
import { Principal } from '@dfinity/principal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { LocalIc } from '../index';
import {
    BAD_REQUEST_CYCLES_PENALTY,
    CMC_ID,
    CmcCreateCanisterResult,
    cmcIdlFactory,
    CREATE_CANISTER_MIN_CYCLES,
    planCmcRequest,
    type CmcHost,
    type CmcPlan
} from '../src/cmc';
import { CREATE_CANISTER_FEE } from '../src/engine';
import { canisterIdFromIndex, subnetIdFor } from '../src/ids';

const CALLER = canisterIdFromIndex(7n);
const ENOUGH = 2_000_000_000_000n;

function host(counts: number[] = [3, 1, 1]): CmcHost {
    return {
        subnets: [
            { index: 0, id: subnetIdFor(0), region: 'europe' },
            { index: 1, id: subnetIdFor(1), region: 'asia' },
            { index: 2, id: subnetIdFor(2), region: 'asia' }
        ],
        canisterCount: (i) => counts[i],
        createFee: CREATE_CANISTER_FEE,
        maxControllers: 10
    };
}

/** The argument as a client that knows only `controllers` of the settings sends it (as the factory). */
const ClientArg = IDL.Record({
    settings: IDL.Opt(IDL.Record({ controllers: IDL.Opt(IDL.Vec(IDL.Principal)) })),
    subnet_type: IDL.Opt(IDL.Text),
    subnet_selection: IDL.Opt(
        IDL.Variant({
            Subnet: IDL.Record({ subnet: IDL.Principal }),
            Filter: IDL.Record({ subnet_type: IDL.Opt(IDL.Text) })
        })
    )
});

function arg(value: Record<string, unknown>): Uint8Array {
    const full = { settings: [], subnet_type: [], subnet_selection: [], ...value };
    return new Uint8Array(IDL.encode([ClientArg], [full]));
}

function plan(value: Record<string, unknown>, cycles = ENOUGH, h = host()): CmcPlan {
    return planCmcRequest(h, {
        method: 'create_canister',
        arg: arg(value),
        caller: CALLER,
        cycles
    });
}

function refund(p: CmcPlan): { refund_amount: bigint; create_error: string; refund: bigint } {
    if (p.kind !== 'reply') throw new Error(`expected a reply, got ${p.kind}`);
    const [decoded] = IDL.decode([CmcCreateCanisterResult], p.reply) as unknown as [
        { Err: { Refunded: { refund_amount: bigint; create_error: string } } }
    ];
    return { ...decoded.Err.Refunded, refund: p.refund };
}

describe('CMC create_canister: the decision', () => {
    it('creates on the subnet named by Subnet { subnet }, fee taken, controllers defaulting to the caller', () => {
        const p = plan({ subnet_selection: [{ Subnet: { subnet: subnetIdFor(1) } }] });
        expect(p).toEqual({
            kind: 'create',
            subnetIndex: 1,
            controllers: [CALLER],
            freezingThreshold: undefined,
            cycles: ENOUGH - CREATE_CANISTER_FEE
        });
    });

    it('treats the region tag as the subnet type: Filter picks the least populated subnet of it', () => {
        const p = plan(
            { subnet_selection: [{ Filter: { subnet_type: ['asia'] } }] },
            ENOUGH,
            host([0, 5, 2])
        );
        expect(p).toMatchObject({ kind: 'create', subnetIndex: 2 });
        // The deprecated top-level subnet_type means the same.
        expect(plan({ subnet_type: ['europe'] })).toMatchObject({ kind: 'create', subnetIndex: 0 });
        // No selection: any subnet, the least populated.
        expect(plan({})).toMatchObject({ kind: 'create', subnetIndex: 1 });
    });

    it('applies the given controllers', () => {
        const admin = Principal.fromText('2vxsx-fae');
        const p = plan({ settings: [{ controllers: [[CALLER, admin]] }] });
        expect(p).toMatchObject({ kind: 'create', controllers: [CALLER, admin] });
    });

    it('refunds every cycle below 100 B cycles, and when subnet_type and subnet_selection are both given', () => {
        const few = refund(plan({}, CREATE_CANISTER_MIN_CYCLES - 1n));
        expect(few).toEqual({
            refund_amount: CREATE_CANISTER_MIN_CYCLES - 1n,
            refund: CREATE_CANISTER_MIN_CYCLES - 1n,
            create_error: 'Insufficient cycles attached.'
        });
        const both = refund(
            plan({
                subnet_type: ['asia'],
                subnet_selection: [{ Subnet: { subnet: subnetIdFor(1) } }]
            })
        );
        expect(both.refund_amount).toBe(ENOUGH);
        expect(both.refund).toBe(ENOUGH);
    });

    it('keeps the 100 M penalty and refunds the rest when the creation fails', () => {
        const failures = [
            plan({ subnet_selection: [{ Subnet: { subnet: subnetIdFor(9) } }] }),
            plan({ subnet_selection: [{ Filter: { subnet_type: ['mars'] } }] }),
            plan({ settings: [{ controllers: [Array.from({ length: 11 }, () => CALLER)] }] })
        ];
        for (const p of failures) {
            const r = refund(p);
            expect(r.refund_amount).toBe(ENOUGH - BAD_REQUEST_CYCLES_PENALTY);
            expect(r.refund).toBe(ENOUGH - BAD_REQUEST_CYCLES_PENALTY);
        }
        expect(refund(failures[0]).create_error).toMatch(/does not exist/);
        expect(refund(failures[1]).create_error).toMatch(/subnet type mars/);
        // Enough for the CMC's minimum but not for the creation fee.
        const short = refund(plan({}, 200_000_000_000n));
        expect(short.refund_amount).toBe(200_000_000_000n - BAD_REQUEST_CYCLES_PENALTY);
        expect(short.create_error).toMatch(/not enough/);
    });

    it('rejects methods it does not implement and arguments it cannot decode', () => {
        const h = host();
        expect(
            planCmcRequest(h, { method: 'notify_top_up', arg: arg({}), caller: CALLER, cycles: 0n })
        ).toMatchObject({ kind: 'reject', code: 3 });
        expect(
            planCmcRequest(h, {
                method: 'create_canister',
                arg: new Uint8Array([1, 2, 3]),
                caller: CALLER,
                cycles: 0n
            })
        ).toMatchObject({ kind: 'reject', code: 5 });
    });
});

describe('CMC in the engine', () => {
    let ic: LocalIc;

    beforeAll(async () => {
        ic = await LocalIc.create({
            subnets: [{ region: 'europe' }, { region: 'asia' }],
            cmc: true
        });
    });

    afterAll(async () => {
        await ic?.tearDown();
    });

    it('lives at the mainnet id rkp4c-7iaaa-aaaaa-aaaca-cai, which no created canister gets', async () => {
        expect(CMC_ID.toText()).toBe('rkp4c-7iaaa-aaaaa-aaaca-cai');
        const [europe] = await ic.getApplicationSubnets();
        const ids: string[] = [];
        for (let i = 0; i < 6; i++) {
            ids.push((await ic.createCanister({ targetSubnetId: europe.id })).toText());
        }
        expect(ids).not.toContain(CMC_ID.toText());
        expect(new Set(ids).size).toBe(6);
    });

    it('answers an ingress create_canister (no cycles attached) with Refunded, creating nothing', async () => {
        const cmc = ic.createActor<{
            create_canister(
                a: unknown
            ): Promise<{ Err: { Refunded: { refund_amount: bigint; create_error: string } } }>;
        }>(cmcIdlFactory, CMC_ID);
        cmc.setPrincipal(Principal.fromText('2vxsx-fae'));
        const before = ic.raw.canisters.size;
        const answer = await cmc.create_canister({
            settings: [],
            subnet_type: [],
            subnet_selection: [{ Filter: { subnet_type: ['asia'] } }]
        });
        expect(answer).toEqual({
            Err: { Refunded: { refund_amount: 0n, create_error: 'Insufficient cycles attached.' } }
        });
        expect(ic.raw.canisters.size).toBe(before);
    });

    it('is absent unless enabled: the id is an ordinary canister id then', async () => {
        const plain = await LocalIc.create();
        try {
            const ids: string[] = [];
            for (let i = 0; i < 5; i++) ids.push((await plain.createCanister()).toText());
            expect(ids[4]).toBe(CMC_ID.toText());
        } finally {
            await plain.tearDown();
        }
    });
});
