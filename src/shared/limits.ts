/**
 * Every bound of the system in one place, with its unit in the name. Canisters validate input
 * against these; tests read them instead of repeating numbers.
 */

/** Number of hash slots; a user's slot is `hash(principal) mod SLOT_COUNT` (Redis Cluster's size). */
export const SLOT_COUNT = 16_384;

/** A loan keeps at most this many repayment records; older ones are folded into `total_repaid`. */
export const MAX_REPAYMENT_HISTORY = 64;
/** A loan has at most this many distinct funders. */
export const MAX_FUNDERS_PER_LOAN = 32;

/** Page size bounds for every paginated read. */
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 500;
/** Opaque cursors longer than this are rejected before decoding. */
export const MAX_CURSOR_LENGTH_CHARS = 512;

/** Free text fields (regions, reasons) are bounded so a caller cannot grow our state. */
export const MAX_REGION_LENGTH_CHARS = 32;
export const MAX_TEXT_FIELD_LENGTH_CHARS = 256;

/** Annual percentage rate in basis points: 0..=100_000 (0%..1000%). */
export const MAX_APR_BPS = 100_000n;

/** Shards per factory (the seed's MAX_SHARDS_PER_FACTORY). */
export const MAX_SHARDS = 1_000;

/** Migration batches stay well under the 2 MiB cross-subnet message limit. */
export const MAX_MIGRATION_BATCH_BYTES = 1_500_000;
export const MAX_MIGRATION_BATCH_LOANS = 1_000;

/** Fan-out width of one composite query: 5 B instructions for the whole call graph, ~50 M per call. */
export const MAX_COMPOSITE_FANOUT = 32;

/** The audit log keeps the newest entries only. */
export const MAX_AUDIT_LOG_ENTRIES = 10_000;

/** Chunked Wasm upload: the management canister's chunk limit. */
export const MAX_WASM_CHUNK_BYTES = 1_048_576;
/** The shard Wasm is ≈3.5 MB; 100 MiB is the IC's total Wasm limit. */
export const MAX_WASM_TOTAL_BYTES = 100 * 1_048_576;

/** Regions the factory maps to subnets (`set_region_subnet`). */
export const MAX_REGIONS = 64;
