/**
 * The IC's certified hash tree (interface spec, "Certification"): Empty, Fork, Labeled, Leaf and
 * Pruned nodes, labels sorted bytewise, digests with the `ic-hashtree-*` domain separators, and
 * the CBOR shape `[tag, ...]` agents decode.
 */
import { sha256 } from '@noble/hashes/sha2';
import { concatBytes } from '@noble/hashes/utils';
import { compareBytes, domainSeparator } from './encoding';

/** A hash tree node in the spec's CBOR form. */
export type HashTree =
    [0] | [1, HashTree, HashTree] | [2, Uint8Array, HashTree] | [3, Uint8Array] | [4, Uint8Array];

/** A labeled subtree as plain data: a leaf value or labels mapping to subtrees. */
export type LabeledTree = Uint8Array | Map<string, { label: Uint8Array; sub: LabeledTree }>;

/** Bound on the number of labels under one node while building (a certificate holds far fewer). */
const MAX_CHILDREN = 100_000;

/** Builds a map node of a `LabeledTree` from (label, subtree) pairs. */
export function node(
    ...children: [Uint8Array | string, LabeledTree][]
): Map<string, { label: Uint8Array; sub: LabeledTree }> {
    const m = new Map<string, { label: Uint8Array; sub: LabeledTree }>();
    for (const [l, sub] of children) {
        const label = typeof l === 'string' ? new TextEncoder().encode(l) : l;
        m.set(Buffer.from(label).toString('hex'), { label, sub });
    }
    if (m.size > MAX_CHILDREN) throw new Error('too many labels under one node');
    return m;
}

/**
 * Adds `value` at `path` inside `tree` (creating nodes), so several paths share their prefixes.
 * A leaf already there is replaced.
 */
export function insert(
    tree: Map<string, { label: Uint8Array; sub: LabeledTree }>,
    path: Uint8Array[],
    value: LabeledTree
): void {
    let cur = tree;
    for (let i = 0; i < path.length; i++) {
        const key = Buffer.from(path[i]).toString('hex');
        const last = i === path.length - 1;
        const existing = cur.get(key);
        if (last) {
            if (existing && existing.sub instanceof Map && value instanceof Map) {
                for (const [k, v] of value) existing.sub.set(k, v);
            } else {
                cur.set(key, { label: path[i], sub: value });
            }
            return;
        }
        if (!existing || !(existing.sub instanceof Map)) {
            const fresh = new Map<string, { label: Uint8Array; sub: LabeledTree }>();
            cur.set(key, { label: path[i], sub: fresh });
            cur = fresh;
        } else {
            cur = existing.sub;
        }
        if (cur.size > MAX_CHILDREN) throw new Error('too many labels under one node');
    }
}

/** Converts a `LabeledTree` to the spec's tree: labels sorted, forks balanced. */
export function toHashTree(t: LabeledTree): HashTree {
    if (t instanceof Uint8Array) return [3, t];
    const children = [...t.values()].sort((a, b) => compareBytes(a.label, b.label));
    const labeled = children.map((c): HashTree => [2, c.label, toHashTree(c.sub)]);
    return forkAll(labeled);
}

function forkAll(nodes: HashTree[]): HashTree {
    if (nodes.length === 0) return [0];
    if (nodes.length === 1) return nodes[0];
    const mid = Math.ceil(nodes.length / 2);
    return [1, forkAll(nodes.slice(0, mid)), forkAll(nodes.slice(mid))];
}

/** The root hash of a tree (spec `reconstruct`). */
export function digest(t: HashTree): Uint8Array {
    switch (t[0]) {
        case 0:
            return sha256(domainSeparator('ic-hashtree-empty'));
        case 1:
            return sha256(
                concatBytes(domainSeparator('ic-hashtree-fork'), digest(t[1]), digest(t[2]))
            );
        case 2:
            return sha256(concatBytes(domainSeparator('ic-hashtree-labeled'), t[1], digest(t[2])));
        case 3:
            return sha256(concatBytes(domainSeparator('ic-hashtree-leaf'), t[1]));
        case 4:
            return t[1];
    }
}
