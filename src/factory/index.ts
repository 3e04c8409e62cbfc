import { IDL, query } from 'azle';

import { VERSION } from '../shared/version';

/** The factory: shard registry and lifecycle, the routing table, auto-scaling and migration. */
export default class {
    /** The canister's version. Example: `dfx canister call factory version` → `("0.1.0")`. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }
}
