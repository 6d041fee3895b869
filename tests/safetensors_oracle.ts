/**
 * Shared by the safetensors tests: an independent parse of a file's raw bytes, written from the
 * format description and used as the oracle, and small file helpers.
 */
import { assert, assertEquals } from "./assert.ts";

// ---------------------------------------------------------------------------------------------------
// An independent parse of the raw bytes, written from the format description, used as the oracle.
// ---------------------------------------------------------------------------------------------------

interface RawEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

export function rawParse(bytes: Uint8Array) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
  const json = JSON.parse(text) as Record<string, RawEntry | Record<string, string>>;
  const tensors = Object.entries(json).filter(([k]) => k !== "__metadata__") as [string, RawEntry][];
  return {
    n,
    text,
    keys: topLevelKeys(text),
    tensors,
    metadata: json.__metadata__ as Record<string, string>,
  };
}

/** Keys of the outer JSON object in the order written (Object.keys would put "10" before "a"). */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1 && /^\s*:/.test(text.slice(j + 1))) keys.push(JSON.parse(text.slice(i, j + 1)));
      i = j;
    }
  }
  return keys;
}

/** What safetensors' Rust loader insists on: `{` first, ranges contiguous from 0 to the end of file. */
export function assertStrictlyLoadable(bytes: Uint8Array, file: string) {
  const { n, text, tensors } = rawParse(bytes);
  assertEquals(text[0], "{", `${file}: header starts with {`);
  assertEquals((8 + n) % 8, 0, `${file}: data area 8-byte aligned`);
  assert(/^[^]*\}\x20*$/.test(text), `${file}: header padded only with spaces`);
  const ranges = tensors.map(([, e]) => e.data_offsets).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let at = 0;
  for (const [b, e] of ranges) {
    assertEquals(b, at, `${file}: ranges contiguous`);
    at = e;
  }
  assertEquals(8 + n + at, bytes.byteLength, `${file}: data area ends at end of file`);
}

export const list = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

export async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "autoround-io-test-" });
}

/** n random bytes. */
export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let off = 0; off < n; off += 65536) {
    crypto.getRandomValues(out.subarray(off, Math.min(n, off + 65536)));
  }
  return out;
}
