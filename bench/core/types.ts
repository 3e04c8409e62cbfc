/** One measured figure of a benchmark, printed as a table row and written to JSON. */
export interface BenchRow {
    /** Dotted key, e.g. `placement.n100.max_over_mean`. */
    key: string;
    value: number;
    /** Unit of `value`, e.g. `ratio`, `ns`, `ms`, `fraction`. */
    unit: string;
    /** Present when the figure has a target; `pass` says whether this run met it. */
    target?: { text: string; pass: boolean };
}

/** A benchmark section: runs itself and returns its rows. `seed` makes every random draw reproducible. */
export type BenchSection = (options: { seed: number; quick: boolean }) => Promise<BenchRow[]>;
