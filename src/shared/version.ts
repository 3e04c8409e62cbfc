/** The version every canister reports from its `version` query. */
export const VERSION = '0.1.0';
