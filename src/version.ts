/** This program's version. */
export const VERSION = "0.1.0";

/** The auto-round release whose formats and defaults this build reproduces (ALGORITHM.md). */
export const AUTOROUND_COMPAT_VERSION = "0.15.0";

/** Recorded in exported configs so a file says what wrote it. */
export const PRODUCER = { name: "autoround (TypeScript/Deno)", version: VERSION };
