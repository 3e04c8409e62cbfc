/**
 * The router canister: the query router (this folder) and the load balancer (`src/load_balancer`)
 * in one canister, so balancing decisions and breaker state sit next to the calls they protect.
 *
 * Kinds of method: `update` when it calls shards on the data path, records breaker outcomes, fills
 * the cache or keeps statistics (a query's writes are discarded on the IC); `query` when it only
 * reads the router's own state; composite `query` (`query_*`) for read-only fan-outs at query
 * latency, capped at MAX_COMPOSITE_FANOUT shards (5 B instructions for the whole call graph).
 *
 * The hot methods (`create_loan`, `update_loan`, `get_loan`, the dashboards and user-loan pages,
 * `get_system_analytics`, `route_loan_query`, `get_load_balancer_stats`, `update_routing_table`)
 * use Azle's `manual` mode: the usual argument encoding is read by hand and the reply written from
 * precomputed prefixes or cached bytes (`src/shared/*_codec.ts`), errors included, since the
 * generic Candid codec costs tens of millions of instructions per message here (about 50 M for any
 * reply carrying `ApiError`'s type table). Same Candid.
 */
import {
    clearTimer,
    IDL,
    init,
    isController,
    msgArgData,
    msgCaller,
    msgReply,
    postUpgrade,
    preUpgrade,
    Principal,
    query,
    setTimerInterval,
    time,
    update
} from 'azle';

import {
    addShard,
    balancerView,
    encodeLoadBalancerStatsReply,
    loadBalancerStats,
    pickShard,
    probeAll,
    removeShard,
    setAlgorithm
} from '../load_balancer/balancer';
import { callShardForLoan, canExecute, recordOutcome, replyLoan } from '../load_balancer/edge';
import {
    decodeLoanValue,
    decodeNewLoanArg,
    decodeUpdateLoanArgs,
    loanPeopleKeys
} from '../shared/loan_codec';
import {
    ArgsCodec,
    decodeNat64Arg,
    decodePrincipalArg,
    decodeRoutingTableBytes,
    encodeErrPrincipalReply,
    encodeOkPrincipalReply,
    encodeUnitReply,
    encodeUserLoanPageReply,
    principalFromText,
    principalKey,
    principalText,
    type LoanPageView
} from '../shared/router_codec';
import {
    breakers,
    flushStores,
    getBook,
    getConfig,
    getQueryCounters,
    getRoutingTable,
    queryStatistics,
    RouterConfig,
    setBook,
    setConfig,
    setQueryCounters,
    zeroQueryCounters,
    shards,
    warmCaches
} from '../load_balancer/store';
import { bool, float64, nat32, nat64, opt, principal } from '../shared/candid';
import { validateBreakerConfig } from '../shared/circuit_breaker';
import { slotOf } from '../shared/hash';
import { MAX_COMPOSITE_FANOUT } from '../shared/limits';
import { validateNewLoan } from '../shared/loan';
import { decodeLoanId } from '../shared/loan_id';
import {
    BalancerView,
    MAX_ADMINS,
    MAX_CACHE_TTL_MS,
    MAX_PROBE_INTERVAL_S,
    MAX_WRITERS,
    MIN_PROBE_INTERVAL_S,
    RouterInit
} from '../shared/router_api';
import { planPage, userTag, userTagsOfBytes } from '../shared/router_plan';
import {
    ApiError,
    CacheStatistics,
    CircuitBreakerConfig,
    FarmerDashboard,
    InvestorDashboard,
    LoadBalancerStats,
    LoadBalancingAlgorithm,
    Loan,
    LoanPage,
    LoanUpdate,
    NewLoan,
    Page,
    QueryStatistics,
    RequestType,
    Result,
    RoutingTable,
    ShardEndpoint,
    ShardInfo,
    SystemAnalytics,
    UnitResult
} from '../shared/types';
import { VERSION } from '../shared/version';
import {
    cache,
    encodeAnalyticsReply,
    encodeFarmerReply,
    encodeInvestorReply,
    farmerDashboardOf,
    farmerDashboardReply,
    investorDashboardOf,
    invalidateUsers,
    systemAnalyticsOf,
    userLoansOf
} from './queries';
import {
    acceptTable,
    ownerOfSlot,
    ownerShards,
    refreshFromFactory,
    routedWrite,
    slotMap
} from './routing';
import { invalidInput } from '../shared/errors';

const NOT_AUTHORIZED = { Err: { NotAuthorized: null } } as const;

/** The argument `(principal)` of a manual method: decoded by hand, else by `IDL.decode`. */
function principalArg(): Principal {
    const arg = msgArgData();
    return decodePrincipalArg(arg) ?? (IDL.decode([principal], arg)[0] as unknown as Principal);
}

const invalid = invalidInput;

function isAdmin(caller: Principal): boolean {
    return isController(caller) || getConfig().admins.includes(principalText(caller));
}

function isWriter(caller: Principal): boolean {
    return getConfig().writers.includes(principalText(caller));
}

/** The writers' principal keys, remembered for the config object they came from. */
let writerKeys: { config: RouterConfig; keys: Set<string> } | null = null;

/** `isWriter` by principal key: no text conversion on the read path. */
function isWriterKey(callerKey: string): boolean {
    const config = getConfig();
    if (writerKeys?.config !== config) {
        const keys = new Set(config.writers.map((w) => principalKey(principalFromText(w))));
        writerKeys = { config, keys };
    }
    return writerKeys.keys.has(callerKey);
}

function isFactory(caller: Principal): boolean {
    return getConfig().factory === principalText(caller);
}

/** Operators: admins, allow-listed applications and the factory may read router-wide figures. */
function isObserver(caller: Principal): boolean {
    return isAdmin(caller) || isWriter(caller) || isFactory(caller);
}

/** A user reads their own data; admins and allow-listed applications read anyone's. */
function mayReadUser(caller: Principal, user: Principal, userKey = principalKey(user)): boolean {
    // Cheapest first: the admin check asks the system whether the caller is a controller.
    const callerKey = principalKey(caller);
    return callerKey === userKey || isWriterKey(callerKey) || isAdmin(caller);
}

/** Shards a fan-out would call. */
function shardCount(): number {
    return ownerShards().length;
}

/** A composite query has 5 B instructions for its whole call graph: wider fan-outs use the update. */
function tooWide(): { Err: ApiError } {
    return {
        Err: {
            CapacityExceeded: {
                resource: 'composite_fanout_shards',
                limit: BigInt(MAX_COMPOSITE_FANOUT)
            }
        }
    };
}

let probeTimer: bigint | null = null;

function armProbes(): void {
    if (probeTimer !== null) clearTimer(probeTimer);
    probeTimer = setTimerInterval(getConfig().probe_interval_s, probeAll);
}

/** Applies an init/upgrade argument over `base`; traps on a bad argument (install fails, no change). */
function configFrom(arg: RouterInit, base: RouterConfig): RouterConfig {
    if (arg.admins.length > MAX_ADMINS) throw new Error(`at most ${MAX_ADMINS} admins`);
    if (arg.writers.length > MAX_WRITERS) throw new Error(`at most ${MAX_WRITERS} writers`);
    const probe_interval_s = arg.health_probe_interval_s[0] ?? base.probe_interval_s;
    if (probe_interval_s < MIN_PROBE_INTERVAL_S || probe_interval_s > MAX_PROBE_INTERVAL_S) {
        throw new Error(
            `health_probe_interval_s must be in ${MIN_PROBE_INTERVAL_S}..=${MAX_PROBE_INTERVAL_S}`
        );
    }
    const cache_ttl_ms = Number(arg.cache_ttl_ms[0] ?? BigInt(base.cache_ttl_ms));
    if (cache_ttl_ms < 1 || cache_ttl_ms > MAX_CACHE_TTL_MS) {
        throw new Error(`cache_ttl_ms must be in 1..=${MAX_CACHE_TTL_MS}`);
    }
    const breaker_config = arg.breaker_config[0] ?? base.breaker_config;
    const problems = validateBreakerConfig(breaker_config);
    if (problems.length > 0) throw new Error(`breaker_config: ${JSON.stringify(problems)}`);
    return {
        factory: arg.factory.toText(),
        admins: arg.admins.map((p) => p.toText()),
        writers: arg.writers.map((p) => p.toText()),
        probe_interval_s,
        cache_ttl_ms,
        breaker_config
    };
}

const USER_PAGE_ARGS = new ArgsCodec([principal, opt(Page)], [Principal.anonymous(), []]);

/** A user's page of loans (`get_aggregated_user_loans` and its composite-query variant). */
async function userLoansReply(fill: boolean): Promise<Result<LoanPageView>> {
    const arg = msgArgData();
    const [user, page] = (USER_PAGE_ARGS.decode(arg) ??
        IDL.decode([principal, opt(Page)], arg)) as unknown as [Principal, [] | [Page]];
    if (!mayReadUser(msgCaller(), user)) return NOT_AUTHORIZED;
    const plan = planPage(page);
    if ('Err' in plan) return plan;
    if (!fill && shardCount() > MAX_COMPOSITE_FANOUT) return tooWide();
    return await userLoansOf(user, plan.Ok, fill);
}

/** The `principalKey` of a loan's borrower, from its value bytes (read in place when it can). */
function borrowerKeyOf(loan: Uint8Array): string {
    return loanPeopleKeys(loan)?.[0] ?? principalKey(decodeLoanValue(loan).borrower);
}

/** The shard canister holding loan `id`: the owner of the slot in the id. */
function routeOfLoan(id: bigint): Result<Principal> {
    const parts = decodeLoanId(id);
    if (!parts.ok) return invalid(parts.field, parts.reason);
    const target = ownerOfSlot(parts.value.slot);
    if ('Err' in target) return target;
    return { Ok: principalFromText(target.Ok.canister_id) };
}

export default class {
    /**
     * Without an argument (`dfx deploy router`) the installer is the factory until one is set by an
     * upgrade argument. Example: `dfx deploy router --argument '(opt record { factory =
     * principal "<factory>"; admins = vec {}; writers = vec {}; health_probe_interval_s = null;
     * cache_ttl_ms = null; breaker_config = null; random_seed = null })'`.
     */
    @init([opt(RouterInit)])
    init(arg: [] | [RouterInit]): void {
        const given: RouterInit = arg[0] ?? {
            factory: msgCaller(),
            admins: [],
            writers: [],
            health_probe_interval_s: [],
            cache_ttl_ms: [],
            breaker_config: [],
            random_seed: []
        };
        setConfig(configFrom(given, getConfig()));
        setBook({ ...getBook(), random_state: given.random_seed[0] ?? 1 });
        setQueryCounters({ ...getQueryCounters(), since: time() });
        warmCaches();
        armProbes();
    }

    /**
     * Breakers, configuration, the routing table and statistics are in stable memory; the cache
     * (heap) starts empty. An argument replaces the configuration it names. Re-arms the probes.
     */
    @postUpgrade([opt(RouterInit)])
    postUpgrade(arg: [] | [RouterInit]): void {
        if (arg[0] !== undefined) {
            setConfig(configFrom(arg[0], getConfig()));
            if (arg[0].random_seed[0] !== undefined) {
                setBook({ ...getBook(), random_state: arg[0].random_seed[0] });
            }
        }
        warmCaches();
        armProbes();
    }

    /** Writes the deferred bookkeeping (breaker windows, latencies, counters) to stable memory. */
    @preUpgrade
    preUpgrade(): void {
        flushStores();
    }

    /** The canister's version. Example: `dfx canister call router version` → `("0.1.0")`. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }

    // ---- Routing table ------------------------------------------------------------------------

    /**
     * Update (factory only): the factory pushes each new table; its epoch must grow. Manual: the
     * table is decoded and the reply written by hand (the generic codec cost ~45 M per push).
     */
    @update([RoutingTable], UnitResult, { manual: true })
    update_routing_table(): void {
        const arg = msgArgData();
        const table =
            decodeRoutingTableBytes(arg) ??
            (IDL.decode([RoutingTable], arg)[0] as unknown as RoutingTable);
        msgReply(encodeUnitReply(isFactory(msgCaller()) ? acceptTable(table) : NOT_AUTHORIZED));
    }

    /** Update (admins): pulls the factory's table now (as a `WrongShard` answer does). */
    @update([], UnitResult)
    async refresh_routing_table(): Promise<UnitResult> {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        return await refreshFromFactory();
    }

    /** Query (anyone): the cached table; the same shape the factory serves. */
    @query([], RoutingTable)
    get_routing_table(): RoutingTable {
        return getRoutingTable() ?? { epoch: 0n, ranges: [], shards: [] };
    }

    // ---- Access lists and breaker configuration -------------------------------------------------

    /** Update (admins): allows an application to write loans through the router. */
    @update([principal], UnitResult)
    add_writer(writer: Principal): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        if (writer.isAnonymous()) return invalid('writer', 'the anonymous principal cannot write');
        const config = getConfig();
        if (config.writers.includes(writer.toText())) return { Ok: null };
        if (config.writers.length >= MAX_WRITERS) {
            return {
                Err: { CapacityExceeded: { resource: 'writers', limit: BigInt(MAX_WRITERS) } }
            };
        }
        setConfig({ ...config, writers: [...config.writers, writer.toText()] });
        return { Ok: null };
    }

    /** Update (admins): removes an application from the writers. */
    @update([principal], UnitResult)
    remove_writer(writer: Principal): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        const config = getConfig();
        if (!config.writers.includes(writer.toText())) {
            return { Err: { NotFound: { what: 'writer', id: writer.toText() } } };
        }
        setConfig({ ...config, writers: config.writers.filter((w) => w !== writer.toText()) });
        return { Ok: null };
    }

    /** Update (admins): replaces the breaker configuration of every shard. */
    @update([CircuitBreakerConfig], UnitResult)
    set_breaker_config(config: CircuitBreakerConfig): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        const problems = validateBreakerConfig(config);
        if (problems.length > 0) return invalid(problems[0].field, problems[0].reason);
        setConfig({ ...getConfig(), breaker_config: config });
        return { Ok: null };
    }

    // ---- Data path ------------------------------------------------------------------------------

    /**
     * Update (writers): stores a loan on the shard owning the borrower's slot. `WrongShard` →
     * refresh + one retry; a migration freeze → a few paced retries; an open breaker →
     * `ShardUnavailable` with no call made.
     */
    @update([NewLoan], Result(Loan), { manual: true })
    async create_loan(): Promise<void> {
        // The shard takes the same argument: its bytes are passed on as they came.
        const arg = msgArgData();
        const application =
            decodeNewLoanArg(arg) ?? (IDL.decode([NewLoan], arg)[0] as unknown as NewLoan);
        if (!isWriter(msgCaller())) return replyLoan(NOT_AUTHORIZED);
        // Checked here too, so a bad application costs no shard call.
        const valid = validateNewLoan(application, time());
        if ('Err' in valid) return replyLoan(valid);
        const slot = slotOf(application.borrower.toUint8Array());
        const reply = await routedWrite(slot, 'create_loan', arg);
        // A new loan's only person is its borrower (no funders yet: `newLoanRecord`).
        if ('Ok' in reply) invalidateUsers([userTag(application.borrower)]);
        replyLoan(reply);
    }

    /** Update (writers): applies a transition to a loan on the shard its id names. */
    @update([nat64, LoanUpdate], Result(Loan), { manual: true })
    async update_loan(): Promise<void> {
        const arg = msgArgData();
        const [id] =
            decodeUpdateLoanArgs(arg) ??
            (IDL.decode([nat64, LoanUpdate], arg) as unknown as [bigint, LoanUpdate]);
        if (!isWriter(msgCaller())) return replyLoan(NOT_AUTHORIZED);
        const parts = decodeLoanId(id);
        if (!parts.ok) return replyLoan(invalid(parts.field, parts.reason));
        const reply = await routedWrite(parts.value.slot, 'update_loan', arg);
        if ('Ok' in reply) invalidateUsers(userTagsOfBytes(reply.Ok));
        replyLoan(reply);
    }

    /**
     * Update (the borrower, writers, admins): reads a loan from its shard. An update, not a query,
     * because the call's outcome feeds the shard's breaker.
     */
    @update([nat64], Result(Loan), { manual: true })
    async get_loan(): Promise<void> {
        const arg = msgArgData();
        const id = decodeNat64Arg(arg) ?? (IDL.decode([nat64], arg)[0] as unknown as bigint);
        const caller = msgCaller();
        const parts = decodeLoanId(id);
        if (!parts.ok) return replyLoan(invalid(parts.field, parts.reason));
        const target = ownerOfSlot(parts.value.slot);
        if ('Err' in target) return replyLoan(target);
        const privileged = isWriter(caller) || isAdmin(caller);
        const reply = await callShardForLoan(
            target.Ok.shard_id,
            target.Ok.canister_id,
            'get_loan',
            arg
        );
        if ('Err' in reply) return replyLoan(privileged ? reply : NOT_AUTHORIZED);
        if (!privileged && borrowerKeyOf(reply.Ok) !== principalKey(caller)) {
            return replyLoan(NOT_AUTHORIZED);
        }
        replyLoan(reply);
    }

    // ---- Load balancing -------------------------------------------------------------------------

    /**
     * Update (observers): picks a shard with the configured algorithm; never one whose breaker is
     * open. An update because the pick advances the algorithm's state (round-robin position,
     * random draws).
     */
    @update([RequestType], Result(ShardEndpoint))
    get_optimal_shard(request: RequestType): Result<ShardEndpoint> {
        if (!isObserver(msgCaller())) return NOT_AUTHORIZED;
        return pickShard(request, slotMap());
    }

    /** Query (anyone): whether the shard's breaker would let a request through now. */
    @query([nat32], bool)
    can_execute_request(shard_id: number): boolean {
        return canExecute(shard_id);
    }

    /**
     * Update (admins and the factory only: nobody else may trip a breaker): records an outcome
     * observed elsewhere, e.g. by the factory's own calls.
     */
    @update([nat32, bool, nat64], UnitResult)
    record_request_result(shard_id: number, success: boolean, latency_ms: bigint): UnitResult {
        const caller = msgCaller();
        if (!isAdmin(caller) && !isFactory(caller)) return NOT_AUTHORIZED;
        if (shards.get(shard_id) === undefined && breakers.get(shard_id) === undefined) {
            return invalid('shard_id', `shard ${shard_id} is unknown to the router`);
        }
        if (latency_ms > 86_400_000n) return invalid('latency_ms', 'must be at most one day');
        recordOutcome(shard_id, success, Number(latency_ms));
        return { Ok: null };
    }

    /** Update (admins): adds or replaces a shard in the balancer with a weight > 0. */
    @update([ShardInfo, float64], UnitResult)
    add_shard_to_balancer(info: ShardInfo, weight: number): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        return addShard(info, weight);
    }

    /** Update (admins): stops choosing a shard (its breaker and counters are kept). */
    @update([nat32], UnitResult)
    remove_shard_from_balancer(shard_id: number): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        return removeShard(shard_id);
    }

    /** Update (admins): switches the algorithm; its bookkeeping restarts. */
    @update([LoadBalancingAlgorithm], UnitResult)
    update_load_balancing_algorithm(algorithm: LoadBalancingAlgorithm): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        setAlgorithm(algorithm);
        return { Ok: null };
    }

    /**
     * Query (observers): request counters, breaker states and transitions, routing epoch. Manual
     * reply, encoded by hand from the heap copies: operators poll it after every batch.
     */
    @query([], Result(LoadBalancerStats), { manual: true })
    get_load_balancer_stats(): void {
        msgReply(
            encodeLoadBalancerStatsReply(
                isObserver(msgCaller()) ? { Ok: loadBalancerStats() } : NOT_AUTHORIZED
            )
        );
    }

    /** Query (observers): everything a pick depends on, to replay `choose` outside. */
    @query([], Result(BalancerView))
    get_balancer_view(): Result<BalancerView> {
        if (!isObserver(msgCaller())) return NOT_AUTHORIZED;
        return { Ok: balancerView() };
    }

    // ---- Queries --------------------------------------------------------------------------------

    /**
     * Query (anyone): the shard holding a loan, from the slot in its id (no directory). Manual
     * argument and reply (hand codec), so a lookup costs no generic Candid encoding.
     */
    @query([nat64], Result(principal), { manual: true })
    route_loan_query(): void {
        const arg = msgArgData();
        const id = decodeNat64Arg(arg) ?? (IDL.decode([nat64], arg)[0] as unknown as bigint);
        const routed = routeOfLoan(id);
        msgReply(
            'Ok' in routed ? encodeOkPrincipalReply(routed.Ok) : encodeErrPrincipalReply(routed.Err)
        );
    }

    /**
     * Update (the user, writers, admins): one page of the user's loans as borrower and investor,
     * merged across shards in id order. An update so it can cache and count.
     */
    @update([principal, opt(Page)], Result(LoanPage), { manual: true })
    async get_aggregated_user_loans(): Promise<void> {
        msgReply(encodeUserLoanPageReply(await userLoansReply(true)));
    }

    /**
     * Composite query (same access): the read-only variant of `get_aggregated_user_loans`. Both
     * are manual: arguments and reply by hand (the shards' loan bytes are reused).
     */
    @query([principal, opt(Page)], Result(LoanPage), { composite: true, manual: true })
    async query_aggregated_user_loans(): Promise<void> {
        msgReply(encodeUserLoanPageReply(await userLoansReply(false)));
    }

    /**
     * Update (the farmer, writers, admins): cached (as the encoded reply); one shard call on a
     * miss. Manual reply: a hit sends the cached bytes without encoding anything.
     */
    @update([principal], Result(FarmerDashboard), { manual: true })
    async get_farmer_dashboard_advanced(): Promise<void> {
        const arg = msgArgData();
        const farmer =
            decodePrincipalArg(arg) ?? (IDL.decode([principal], arg)[0] as unknown as Principal);
        const farmerKey = principalKey(farmer);
        if (!mayReadUser(msgCaller(), farmer, farmerKey)) {
            return msgReply(encodeFarmerReply(NOT_AUTHORIZED));
        }
        msgReply(await farmerDashboardReply(farmer, farmerKey));
    }

    /** Composite query (same access): read-only, uncached. Manual reply, encoded by hand. */
    @query([principal], Result(FarmerDashboard), { composite: true, manual: true })
    async query_farmer_dashboard(): Promise<void> {
        const farmer = principalArg();
        if (!mayReadUser(msgCaller(), farmer)) return msgReply(encodeFarmerReply(NOT_AUTHORIZED));
        msgReply(encodeFarmerReply(await farmerDashboardOf(farmer)));
    }

    /**
     * Update (the investor, writers, admins): every shard in parallel; `complete = false` and the
     * failed shards listed when some did not answer. Cached when complete. Manual reply, encoded
     * by hand (the shards' loan bytes are reused).
     */
    @update([principal], Result(InvestorDashboard), { manual: true })
    async get_investor_dashboard_advanced(): Promise<void> {
        const investor = principalArg();
        if (!mayReadUser(msgCaller(), investor)) {
            return msgReply(encodeInvestorReply(NOT_AUTHORIZED));
        }
        msgReply(encodeInvestorReply(await investorDashboardOf(investor, true)));
    }

    /** Composite query (same access): read-only, at most MAX_COMPOSITE_FANOUT shards. Manual. */
    @query([principal], Result(InvestorDashboard), { composite: true, manual: true })
    async query_investor_dashboard(): Promise<void> {
        const investor = principalArg();
        if (!mayReadUser(msgCaller(), investor)) {
            return msgReply(encodeInvestorReply(NOT_AUTHORIZED));
        }
        if (shardCount() > MAX_COMPOSITE_FANOUT) return msgReply(encodeInvestorReply(tooWide()));
        msgReply(encodeInvestorReply(await investorDashboardOf(investor, false)));
    }

    /** Update (observers): every shard's counters summed; cached when complete. Manual reply. */
    @update([], Result(SystemAnalytics), { manual: true })
    async get_system_analytics(): Promise<void> {
        if (!isObserver(msgCaller())) return msgReply(encodeAnalyticsReply(NOT_AUTHORIZED));
        msgReply(encodeAnalyticsReply(await systemAnalyticsOf(true)));
    }

    /** Composite query (observers): read-only, at most MAX_COMPOSITE_FANOUT shards. Manual. */
    @query([], Result(SystemAnalytics), { composite: true, manual: true })
    async query_system_analytics(): Promise<void> {
        if (!isObserver(msgCaller())) return msgReply(encodeAnalyticsReply(NOT_AUTHORIZED));
        if (shardCount() > MAX_COMPOSITE_FANOUT) return msgReply(encodeAnalyticsReply(tooWide()));
        msgReply(encodeAnalyticsReply(await systemAnalyticsOf(false)));
    }

    /** Query (observers): fan-out counts, partial answers and latency since the last reset. */
    @query([], Result(QueryStatistics))
    get_query_statistics(): Result<QueryStatistics> {
        if (!isObserver(msgCaller())) return NOT_AUTHORIZED;
        return { Ok: queryStatistics(getQueryCounters()) };
    }

    /** Update (admins): zeroes the query statistics. */
    @update([], UnitResult)
    reset_query_statistics(): UnitResult {
        if (!isAdmin(msgCaller())) return NOT_AUTHORIZED;
        setQueryCounters(zeroQueryCounters(time()));
        return { Ok: null };
    }

    /** Query (observers): the dashboard cache's hits, misses, evictions and size. */
    @query([], Result(CacheStatistics))
    get_cache_statistics(): Result<CacheStatistics> {
        if (!isObserver(msgCaller())) return NOT_AUTHORIZED;
        const s = cache.stats();
        return {
            Ok: {
                hits: BigInt(s.hits),
                misses: BigInt(s.misses),
                evictions: BigInt(s.evictions),
                expirations: BigInt(s.expirations),
                invalidations: BigInt(s.invalidations),
                entries: BigInt(s.entries),
                size_bytes: BigInt(s.size_bytes),
                max_entries: BigInt(s.max_entries),
                max_size_bytes: BigInt(s.max_size_bytes),
                hit_rate: s.hit_rate
            }
        };
    }
}
