import { IDL, query } from 'azle';

import { VERSION } from '../shared/version';

/** A data shard: loans of the slots it owns, in stable memory. */
export default class {
    /** The canister's version. Example: `dfx canister call data_shard version` → `("0.1.0")`. */
    @query([], IDL.Text)
    version(): string {
        return VERSION;
    }
}
