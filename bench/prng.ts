/**
 * The seeded PRNG of the benchmarks and the statistical tests (mulberry32), so every run with the
 * same seed sees the same inputs.
 */

/** mulberry32: uniform 32-bit unsigned integers. */
export function mulberry32(seed: number): () => number {
    let a = seed >>> 0;
    return () => {
        a = (a + 0x6d2b79f5) >>> 0;
        let t = a;
        t = Math.imul(t ^ (t >>> 15), t | 1);
        t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
        return (t ^ (t >>> 14)) >>> 0;
    };
}

/** The same stream as uniform numbers in [0, 1). */
export function mulberry32Unit(seed: number): () => number {
    const next = mulberry32(seed);
    return () => next() / 4294967296;
}
