/** What a run of the system benchmark measures: the full plan, or `--quick`'s smaller one. */
export interface SystemPlan {
    /** Router deployments, one per shard count. */
    shardCounts: number[];
    /** The deployment where the per-operation comparisons run. */
    opsShards: number;
    /** Operations averaged per comparison. */
    samples: number;
    /** Loans written and then moved by the migration. */
    loans: number;
}

/** `--quick` keeps every figure but at 1 and 4 shards and with smaller sizes. */
export function planOf(quick: boolean, loans?: number): SystemPlan {
    return quick
        ? { shardCounts: [1, 4], opsShards: 4, samples: 3, loans: loans ?? 200 }
        : { shardCounts: [1, 4, 16, 64], opsShards: 4, samples: 8, loans: loans ?? 1_000 };
}
