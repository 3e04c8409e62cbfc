import {
    ALGORITHMS,
    choose,
    initialBalancerState,
    updatePeakEwma,
    type AlgorithmName,
    type ShardSnapshot
} from '../../src/shared/balancing';
import { SLOT_COUNT } from '../../src/shared/hash';
import type { BenchRow, BenchSection } from './types';
import { mulberry32 } from '../prng';

/*
 * Discrete-event simulation of the classic "one slow backend" scenario, driving the real `choose`.
 * Model: each backend is k = SERVERS_PER_BACKEND identical servers with one FIFO queue (M/M/k),
 * a canister-like message queue with bounded parallelism. Service times are exponential, mean
 * 10 ms, except backend 0 whose mean is 50 ms. Arrivals are Poisson at LOAD of total capacity.
 * Every algorithm sees the same arrival times and the same per-request work (common random
 * numbers), so differences come from the choice alone. The router's view is exact and live:
 * inFlight counts dispatched-not-completed requests, resourceUsage is busy servers / k, and
 * ewmaLatencyMs is the peak-EWMA of completed latencies, updated on each completion. All weights
 * are 1: the balancer is not told which backend is slow, it has to notice.
 */

const BACKENDS = 10;
const SERVERS_PER_BACKEND = 4;
const FAST_MEAN_MS = 10;
const SLOW_MEAN_MS = 50;
const SLOW_BACKEND = 0;
const LOAD = 0.75;
/** Finagle's and Linkerd's default peak-EWMA decay time. */
const EWMA_DECAY_MS = 10_000;
const REQUESTS_FULL = 200_000;
const REQUESTS_QUICK = 10_000;
/** ResponseTimeBased must reach a p99 within this factor of the best algorithm of the run. */
const TARGET_FACTOR = 1.1;
const KEY_BYTES = 29;

/** Result of simulating one algorithm. */
interface SimResult {
    p99Ms: number;
    slowShare: number;
}

/** Exponential draw with mean 1 from a 32-bit uniform (never ln 0). */
function expUnit(u32: number): number {
    return -Math.log(1 - u32 / 4294967296);
}

/** The arrival sequence shared by every algorithm: times, work in units of a mean, user keys. */
interface Workload {
    arrivalMs: Float64Array;
    work: Float64Array;
    keys: Uint8Array[];
}

function makeWorkload(seed: number, requests: number): Workload {
    const rand = mulberry32(seed);
    const capacityPerMs = SERVERS_PER_BACKEND * ((BACKENDS - 1) / FAST_MEAN_MS + 1 / SLOW_MEAN_MS);
    const rateMs = LOAD * capacityPerMs;
    const arrivalMs = new Float64Array(requests);
    const work = new Float64Array(requests);
    const keys: Uint8Array[] = [];
    let t = 0;
    for (let i = 0; i < requests; i++) {
        t += expUnit(rand()) / rateMs;
        arrivalMs[i] = t;
        work[i] = expUnit(rand());
        const key = new Uint8Array(KEY_BYTES);
        for (let b = 0; b < KEY_BYTES; b++) key[b] = rand() & 0xff;
        keys.push(key);
    }
    return { arrivalMs, work, keys };
}

/** Binary min-heap of completions keyed by time; holds at most BACKENDS × k entries. */
class CompletionHeap {
    private readonly timeMs: number[] = [];
    private readonly request: number[] = [];

    get size(): number {
        return this.timeMs.length;
    }

    peekTimeMs(): number {
        return this.timeMs.length > 0 ? this.timeMs[0] : Infinity;
    }

    push(timeMs: number, request: number): void {
        let i = this.timeMs.length;
        this.timeMs.push(timeMs);
        this.request.push(request);
        while (i > 0) {
            const parent = (i - 1) >> 1;
            if (this.timeMs[parent] <= timeMs) break;
            this.swap(i, parent);
            i = parent;
        }
    }

    /** Removes the earliest completion and returns its request index. */
    pop(): number {
        const top = this.request[0];
        const lastTime = this.timeMs.pop()!;
        const lastRequest = this.request.pop()!;
        if (this.timeMs.length > 0) {
            this.timeMs[0] = lastTime;
            this.request[0] = lastRequest;
            let i = 0;
            for (;;) {
                const l = 2 * i + 1;
                const r = l + 1;
                let m = i;
                if (l < this.timeMs.length && this.timeMs[l] < this.timeMs[m]) m = l;
                if (r < this.timeMs.length && this.timeMs[r] < this.timeMs[m]) m = r;
                if (m === i) break;
                this.swap(i, m);
                i = m;
            }
        }
        return top;
    }

    private swap(i: number, j: number): void {
        [this.timeMs[i], this.timeMs[j]] = [this.timeMs[j], this.timeMs[i]];
        [this.request[i], this.request[j]] = [this.request[j], this.request[i]];
    }
}

function meanServiceMs(backend: number): number {
    return backend === SLOW_BACKEND ? SLOW_MEAN_MS : FAST_MEAN_MS;
}

function simulate(algorithm: AlgorithmName, w: Workload, seed: number): SimResult {
    const requests = w.arrivalMs.length;
    const rand = mulberry32(seed ^ 0x9e3779b9);
    const busy = new Int32Array(BACKENDS);
    const inFlight = new Int32Array(BACKENDS);
    const ewmaMs = new Float64Array(BACKENDS);
    const ewmaAtMs = new Float64Array(BACKENDS);
    // FIFO per backend; each holds at most `requests` indices in total, so the queues are bounded.
    const queues: number[][] = Array.from({ length: BACKENDS }, () => []);
    const queueHead = new Int32Array(BACKENDS);
    const backendOf = new Int32Array(requests).fill(-1);
    const latencyMs = new Float64Array(requests);
    const heap = new CompletionHeap();
    let state = initialBalancerState();
    let completed = 0;
    let slowPicks = 0;
    let next = 0;

    const start = (request: number, backend: number, nowMs: number) => {
        busy[backend]++;
        heap.push(nowMs + w.work[request] * meanServiceMs(backend), request);
    };

    // Each request is one arrival and at most one completion: 2 × requests events bound the loop.
    for (let event = 0; event < 2 * requests && (next < requests || heap.size > 0); event++) {
        if (heap.peekTimeMs() <= (next < requests ? w.arrivalMs[next] : Infinity)) {
            const nowMs = heap.peekTimeMs();
            const request = heap.pop();
            const backend = backendOf[request];
            busy[backend]--;
            inFlight[backend]--;
            latencyMs[completed++] = nowMs - w.arrivalMs[request];
            ewmaMs[backend] = updatePeakEwma(
                ewmaMs[backend],
                nowMs - w.arrivalMs[request],
                nowMs - ewmaAtMs[backend],
                EWMA_DECAY_MS
            );
            ewmaAtMs[backend] = nowMs;
            const queue = queues[backend];
            if (queueHead[backend] < queue.length)
                start(queue[queueHead[backend]++], backend, nowMs);
            continue;
        }
        const request = next++;
        const nowMs = w.arrivalMs[request];
        const snapshot: ShardSnapshot[] = [];
        for (let b = 0; b < BACKENDS; b++) {
            snapshot.push({
                shardId: b,
                healthy: true,
                breakerOpen: false,
                weight: 1,
                inFlight: inFlight[b],
                ewmaLatencyMs: ewmaMs[b],
                resourceUsage: busy[b] / SERVERS_PER_BACKEND,
                region: 'local'
            });
        }
        const picked = choose(algorithm, state, snapshot, {
            key: w.keys[request],
            region: 'local',
            randomU32: rand,
            // Slot ranges split evenly, as a fresh slot map would assign them.
            ownerOfSlot: (slot) => Math.floor((slot * BACKENDS) / SLOT_COUNT)
        });
        // Every backend is healthy here, so a refusal is a bug in the balancer.
        if (!picked.ok) throw new Error(`${algorithm} refused: ${picked.reason}`);
        state = picked.state;
        const backend = picked.shardId;
        backendOf[request] = backend;
        inFlight[backend]++;
        if (backend === SLOW_BACKEND) slowPicks++;
        if (busy[backend] < SERVERS_PER_BACKEND) start(request, backend, nowMs);
        else queues[backend].push(request);
    }

    const done = latencyMs.subarray(0, completed).sort();
    return {
        p99Ms:
            done.length > 0
                ? done[Math.min(done.length - 1, Math.ceil(0.99 * done.length) - 1)]
                : NaN,
        slowShare: slowPicks / requests
    };
}

function round(value: number, digits: number): number {
    const f = 10 ** digits;
    return Math.round(value * f) / f;
}

/**
 * Simulated p99 latency per balancing algorithm with 10 backends, one 5× slower.
 * Rows: `balancing.slow_backend.p99_ms.<Algorithm>` (target on ResponseTimeBased: within 1.1× of
 * the best algorithm of the same run) and `balancing.slow_backend.slow_share.<Algorithm>`.
 */
export const run: BenchSection = async ({ seed, quick }) => {
    const requests = quick ? REQUESTS_QUICK : REQUESTS_FULL;
    const workload = makeWorkload(seed, requests);
    const results = new Map<AlgorithmName, SimResult>();
    for (const algorithm of ALGORITHMS) results.set(algorithm, simulate(algorithm, workload, seed));

    const bestMs = Math.min(...[...results.values()].map((r) => r.p99Ms));
    const rows: BenchRow[] = [];
    for (const [algorithm, r] of results) {
        const row: BenchRow = {
            key: `balancing.slow_backend.p99_ms.${algorithm}`,
            value: round(r.p99Ms, 2),
            unit: 'ms'
        };
        if (algorithm === 'ResponseTimeBased') {
            row.target = {
                text: `≤ ${TARGET_FACTOR} × best (${round(bestMs, 2)} ms)`,
                pass: r.p99Ms <= TARGET_FACTOR * bestMs
            };
        }
        rows.push(row);
    }
    for (const [algorithm, r] of results) {
        rows.push({
            key: `balancing.slow_backend.slow_share.${algorithm}`,
            value: round(r.slowShare, 4),
            unit: 'fraction'
        });
    }
    return rows;
};
