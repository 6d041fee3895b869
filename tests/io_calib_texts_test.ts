/**
 * Reading calibration texts (src/io/calib_texts.ts) as AutoRound reads them: .jsonl and .json row
 * rules, .txt documents, a .parquet text column, folders, and Python's `str.rstrip()`. The parquet
 * reference texts are tests/fixtures/calib/references.json (written with pyarrow by
 * make_references.py).
 */
import { FormatError } from "../src/errors.ts";
import { pyRstrip, readTexts } from "../src/io/calib_texts.ts";
import { assert, assertEquals, assertRejects } from "./assert.ts";

const FIX = new URL("./fixtures/calib", import.meta.url).pathname;
const REF = JSON.parse(Deno.readTextFileSync(`${FIX}/references.json`)) as { parquet_texts: string[] };

Deno.test("pyRstrip strips what Python's str.rstrip() strips (U+001C..1F, U+0085, U+3000) but not U+FEFF", () => {
  assertEquals(pyRstrip("a \t\n\x1c\x85\u3000"), "a");
  assertEquals(pyRstrip("a\ufeff"), "a\ufeff");
  assertEquals(pyRstrip("  "), "");
});

Deno.test(".jsonl rows: strings, one-key objects and objects with text, rstripped", async () => {
  const texts = await readTexts(`${FIX}/docs.jsonl`);
  assertEquals(texts.length, 42);
  const lines = Deno.readTextFileSync(`${FIX}/docs.jsonl`).trim().split("\n").map((l) => JSON.parse(l));
  assertEquals(texts[3], lines[3]); // a plain string row
  assertEquals(texts[5], lines[5].content); // {"content": ...}: its only value
  assertEquals(texts[0], lines[0].text); // {"text": ..., "n": 0}
  assertEquals(texts[36], lines[0].text); // trailing "  \n\n" stripped
  assertEquals(texts[37], lines[1].text); // trailing \x1c\x85\u3000 stripped
  assertEquals(texts[38], lines[2].text + "\ufeff");
});

Deno.test(".json as a dict (values in file order) and as a list", async () => {
  const dict = JSON.parse(Deno.readTextFileSync(`${FIX}/docs_dict.json`));
  assertEquals(await readTexts(`${FIX}/docs_dict.json`), [dict.first, dict.second.text, dict.third]);
  const list = JSON.parse(Deno.readTextFileSync(`${FIX}/docs_list.json`));
  assertEquals(await readTexts(`${FIX}/docs_list.json`), [list[0], list[1].text, list[2].body]);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/k.json`, '{"b": "x", "10": "y", "2": "z"}');
    assertEquals(await readTexts(`${dir}/k.json`), ["x", "y", "z"]); // Python's dict order, not JS's
    await Deno.writeTextFile(`${dir}/bad.jsonl`, '{"text": "ok"}\n{"input_ids": [1, 2], "n": 3}\n');
    const err = await assertRejects(() => readTexts(`${dir}/bad.jsonl`), FormatError);
    assert(err.file?.endsWith("bad.jsonl:2"), err.file);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test(".txt: documents are separated by one or more blank (whitespace-only) lines", async () => {
  const texts = await readTexts(`${FIX}/docs.txt`);
  const list = (await readTexts(`${FIX}/docs.jsonl`)).slice(3, 8);
  assertEquals(texts.length, 4);
  assertEquals(texts[0], list[0] + "\n" + list[1]); // two lines, one document
  assertEquals(texts[1], list[2]);
  assertEquals(texts[2], list[3]);
  assertEquals(texts[3], "  " + list[4]); // leading spaces kept, like rstrip
});

Deno.test(".parquet: the text column (pyarrow-written, snappy, two row groups)", async () => {
  assertEquals(await readTexts(`${FIX}/docs.parquet`), REF.parquet_texts);
});

Deno.test("a folder reads every .jsonl/.json/.txt/.parquet below it in path order", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.copyFile(`${FIX}/docs.txt`, `${dir}/b.txt`);
    await Deno.copyFile(`${FIX}/docs_list.json`, `${dir}/a.json`);
    await Deno.copyFile(`${FIX}/docs.parquet`, `${dir}/sub/c.parquet`);
    await Deno.writeTextFile(`${dir}/notes.md`, "ignored");
    const expected = [
      ...(await readTexts(`${FIX}/docs_list.json`)),
      ...(await readTexts(`${FIX}/docs.txt`)),
      ...(await readTexts(`${FIX}/docs.parquet`)),
    ];
    assertEquals(await readTexts(dir), expected);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
