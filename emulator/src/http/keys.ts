/**
 * The network's keys: a BLS12-381 root key (public key in G2, signatures in G1, as the IC's
 * threshold key) that signs certificates over `\x0Dic-state-root ‖ root hash`, and one emulated
 * node's Ed25519 key that signs query responses over `\x0Bic-response ‖ hash`. Generated once per
 * network and kept in its state folder, so agents that trusted the root key keep trusting it.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode as cborEncode, encodeWithSelfDescribedTag } from '@dfinity/cbor';
import { Principal } from '@dfinity/principal';
import { bls12_381 } from '@noble/curves/bls12-381';
import { ed25519 } from '@noble/curves/ed25519';
import { concatBytes } from '@noble/hashes/utils';
import { domainSeparator, hashOfMap, wrapDer } from './encoding';
import { digest, type HashTree } from './hash_tree';

/** File name of the keys inside a state folder. */
export const KEYS_FILE = 'network_keys.json';

interface StoredKeys {
    root_secret_hex: string;
    node_secret_hex: string;
}

/**
 * Keys of one emulated network.
 *
 * @example
 * const keys = NetworkKeys.loadOrCreate('.emulator');
 * keys.rootKeyDer; // 133 bytes, what /api/v2/status returns
 */
export class NetworkKeys {
    /** DER of the BLS root public key (37-byte prefix + 96 bytes). */
    readonly rootKeyDer: Uint8Array;
    /** The subnet id agents derive from the root key (self-authenticating id of its DER). */
    readonly subnetId: Principal;
    /** DER of the node's Ed25519 public key (44 bytes). */
    readonly nodeKeyDer: Uint8Array;
    /** The node id (self-authenticating id of its key). */
    readonly nodeId: Principal;

    private constructor(
        private readonly rootSecret: Uint8Array,
        private readonly nodeSecret: Uint8Array
    ) {
        this.rootKeyDer = wrapDer('bls', bls12_381.getPublicKeyForShortSignatures(rootSecret));
        this.subnetId = Principal.selfAuthenticating(this.rootKeyDer);
        this.nodeKeyDer = wrapDer('ed25519', ed25519.getPublicKey(nodeSecret));
        this.nodeId = Principal.selfAuthenticating(this.nodeKeyDer);
    }

    /** Fresh random keys (not saved). */
    static generate(): NetworkKeys {
        return new NetworkKeys(
            bls12_381.utils.randomPrivateKey(),
            ed25519.utils.randomPrivateKey()
        );
    }

    /** Keys from `dir/network_keys.json`, created and saved there if missing. */
    static loadOrCreate(dir: string): NetworkKeys {
        const file = join(dir, KEYS_FILE);
        if (existsSync(file)) {
            const s = JSON.parse(readFileSync(file, 'utf8')) as StoredKeys;
            return new NetworkKeys(
                Uint8Array.from(Buffer.from(s.root_secret_hex, 'hex')),
                Uint8Array.from(Buffer.from(s.node_secret_hex, 'hex'))
            );
        }
        const k = NetworkKeys.generate();
        mkdirSync(dir, { recursive: true });
        const stored: StoredKeys = {
            root_secret_hex: Buffer.from(k.rootSecret).toString('hex'),
            node_secret_hex: Buffer.from(k.nodeSecret).toString('hex')
        };
        writeFileSync(file, JSON.stringify(stored, null, 2), { mode: 0o600 });
        return k;
    }

    /** A CBOR certificate `{ tree, signature }` over `tree` (no delegation: the root subnet). */
    certify(tree: HashTree): Uint8Array {
        const msg = concatBytes(domainSeparator('ic-state-root'), digest(tree));
        const signature = bls12_381.signShortSignature(msg, this.rootSecret);
        return encodeWithSelfDescribedTag({ tree, signature } as never);
    }

    /**
     * The node signature of a query response: Ed25519 over `\x0Bic-response ‖ hashOfMap(fields)`,
     * where `fields` is the response (status, reply or reject fields), `timestamp` and `request_id`.
     */
    signQueryResponse(fields: Record<string, unknown>): Uint8Array {
        return ed25519.sign(
            concatBytes(domainSeparator('ic-response'), hashOfMap(fields)),
            this.nodeSecret
        );
    }
}

/** CBOR (without self-describe tag) of a value, for tree leaves such as `canister_ranges`. */
export function cborLeaf(v: unknown): Uint8Array {
    return cborEncode(v as never);
}
