import { IDL } from '@dfinity/candid';

// Candid types of the management canister methods the emulator implements, as in ic.did.
const LogVisibility = IDL.Variant({
    controllers: IDL.Null,
    public: IDL.Null,
    allowed_viewers: IDL.Vec(IDL.Principal)
});

const EnvironmentVariable = IDL.Record({ name: IDL.Text, value: IDL.Text });

const CanisterSettings = IDL.Record({
    controllers: IDL.Opt(IDL.Vec(IDL.Principal)),
    compute_allocation: IDL.Opt(IDL.Nat),
    memory_allocation: IDL.Opt(IDL.Nat),
    freezing_threshold: IDL.Opt(IDL.Nat),
    reserved_cycles_limit: IDL.Opt(IDL.Nat),
    log_visibility: IDL.Opt(LogVisibility),
    wasm_memory_limit: IDL.Opt(IDL.Nat),
    wasm_memory_threshold: IDL.Opt(IDL.Nat),
    environment_variables: IDL.Opt(IDL.Vec(EnvironmentVariable))
});

const DefiniteCanisterSettings = IDL.Record({
    controllers: IDL.Vec(IDL.Principal),
    compute_allocation: IDL.Nat,
    memory_allocation: IDL.Nat,
    freezing_threshold: IDL.Nat,
    reserved_cycles_limit: IDL.Nat,
    log_visibility: LogVisibility,
    wasm_memory_limit: IDL.Nat,
    wasm_memory_threshold: IDL.Nat,
    environment_variables: IDL.Vec(EnvironmentVariable)
});

const CanisterIdRecord = IDL.Record({ canister_id: IDL.Principal });

const CreateCanisterArgs = IDL.Record({
    settings: IDL.Opt(CanisterSettings),
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

const ProvisionalCreateCanisterArgs = IDL.Record({
    amount: IDL.Opt(IDL.Nat),
    settings: IDL.Opt(CanisterSettings),
    specified_id: IDL.Opt(IDL.Principal),
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

const ProvisionalTopUpArgs = IDL.Record({ canister_id: IDL.Principal, amount: IDL.Nat });

const UpgradeFlags = IDL.Record({
    skip_pre_upgrade: IDL.Opt(IDL.Bool),
    wasm_memory_persistence: IDL.Opt(IDL.Variant({ keep: IDL.Null, replace: IDL.Null }))
});

const CanisterInstallMode = IDL.Variant({
    install: IDL.Null,
    reinstall: IDL.Null,
    upgrade: IDL.Opt(UpgradeFlags)
});

const InstallCodeArgs = IDL.Record({
    mode: CanisterInstallMode,
    canister_id: IDL.Principal,
    wasm_module: IDL.Vec(IDL.Nat8),
    arg: IDL.Vec(IDL.Nat8),
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

const ChunkHash = IDL.Record({ hash: IDL.Vec(IDL.Nat8) });

const UploadChunkArgs = IDL.Record({
    canister_id: IDL.Principal,
    chunk: IDL.Vec(IDL.Nat8)
});

const InstallChunkedCodeArgs = IDL.Record({
    mode: CanisterInstallMode,
    target_canister: IDL.Principal,
    store_canister: IDL.Opt(IDL.Principal),
    chunk_hashes_list: IDL.Vec(ChunkHash),
    wasm_module_hash: IDL.Vec(IDL.Nat8),
    arg: IDL.Vec(IDL.Nat8),
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

const UpdateSettingsArgs = IDL.Record({
    canister_id: IDL.Principal,
    settings: CanisterSettings,
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

const CanisterStatusResult = IDL.Record({
    status: IDL.Variant({ running: IDL.Null, stopping: IDL.Null, stopped: IDL.Null }),
    settings: DefiniteCanisterSettings,
    module_hash: IDL.Opt(IDL.Vec(IDL.Nat8)),
    memory_size: IDL.Nat,
    cycles: IDL.Nat,
    reserved_cycles: IDL.Nat,
    idle_cycles_burned_per_day: IDL.Nat,
    query_stats: IDL.Record({
        num_calls_total: IDL.Nat,
        num_instructions_total: IDL.Nat,
        request_payload_bytes_total: IDL.Nat,
        response_payload_bytes_total: IDL.Nat
    })
});

const DeleteCanisterArgs = IDL.Record({ canister_id: IDL.Principal });

const UninstallCodeArgs = IDL.Record({
    canister_id: IDL.Principal,
    sender_canister_version: IDL.Opt(IDL.Nat64)
});

/** Argument and result types per method name. */
export const MANAGEMENT_METHODS: Record<string, { args: IDL.Type[]; rets: IDL.Type[] }> = {
    create_canister: { args: [CreateCanisterArgs], rets: [CanisterIdRecord] },
    provisional_create_canister_with_cycles: {
        args: [ProvisionalCreateCanisterArgs],
        rets: [CanisterIdRecord]
    },
    provisional_top_up_canister: { args: [ProvisionalTopUpArgs], rets: [] },
    install_code: { args: [InstallCodeArgs], rets: [] },
    upload_chunk: { args: [UploadChunkArgs], rets: [ChunkHash] },
    stored_chunks: { args: [CanisterIdRecord], rets: [IDL.Vec(ChunkHash)] },
    clear_chunk_store: { args: [CanisterIdRecord], rets: [] },
    install_chunked_code: { args: [InstallChunkedCodeArgs], rets: [] },
    canister_status: { args: [CanisterIdRecord], rets: [CanisterStatusResult] },
    update_settings: { args: [UpdateSettingsArgs], rets: [] },
    start_canister: { args: [CanisterIdRecord], rets: [] },
    stop_canister: { args: [CanisterIdRecord], rets: [] },
    delete_canister: { args: [DeleteCanisterArgs], rets: [] },
    uninstall_code: { args: [UninstallCodeArgs], rets: [] },
    deposit_cycles: { args: [CanisterIdRecord], rets: [] },
    raw_rand: { args: [], rets: [IDL.Vec(IDL.Nat8)] }
};

/** The management canister as an IDL service (for `createActor(managementIdlFactory, 'aaaaa-aa')`). */
export const managementIdlFactory: IDL.InterfaceFactory = ({ IDL: I }) =>
    I.Service(
        Object.fromEntries(
            Object.entries(MANAGEMENT_METHODS).map(([name, m]) => [
                name,
                I.Func(m.args as never, m.rets as never, [])
            ])
        )
    );
