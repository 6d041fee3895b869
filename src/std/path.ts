/**
 * Path helpers. Wraps `node:path` because JSR (@std/path) is unreachable where this project is
 * built; swap this module's body for `export { join, ... } from "@std/path"` where JSR is reachable.
 */
import path from "node:path";

export const join: (...parts: string[]) => string = path.join;
export const dirname: (p: string) => string = path.dirname;
export const basename: (p: string, ext?: string) => string = path.basename;
export const resolve: (...parts: string[]) => string = path.resolve;
export const extname: (p: string) => string = path.extname;
export const relative: (from: string, to: string) => string = path.relative;
export const isAbsolute: (p: string) => boolean = path.isAbsolute;
