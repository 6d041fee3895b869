/** Path helpers for the tests (node:path; JSR's @std/path is unreachable here). */
import path from "node:path";
import { fileURLToPath } from "node:url";

export const join: (...parts: string[]) => string = path.join;
export const dirname: (p: string) => string = path.dirname;
export const fromFileUrl = (u: string): string => fileURLToPath(u);
