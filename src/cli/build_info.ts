/**
 * What a built program knows about its build. This file, as checked in, is the source tree's: a
 * built program (`deno task bundle`, `deno task compile`) gets a generated copy with the commit
 * filled in instead (tools/build.ts maps this module onto it with an import map, so the checked-in
 * file never changes).
 */

/** The commit the program was built from (`abc123def456`, `-dirty` when the tree had changes); null when running from source. */
export const BUILD_COMMIT: string | null = null;
