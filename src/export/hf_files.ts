/**
 * The non-weight files of a Hugging Face model folder that every safetensors-based export copies:
 * tokenizer, chat template, generation config, and a vision-language model's processor files
 * (auto-round's processor/image_processor.save_pretrained; copied byte for byte, spec/MODELS.md § 9.3).
 */
import { writeErrorOf } from "../errors.ts";
import { join } from "../std/path.ts";

/** Files copied unchanged from the source folder when present. */
export const COPIED_FILES = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "added_tokens.json",
  "chat_template.jinja",
  "chat_template.json",
  "generation_config.json",
  "preprocessor_config.json",
  "processor_config.json",
  "video_preprocessor_config.json",
];

/** Copy the tokenizer/generation files that exist in `src` into `dst`; returns the names copied. */
export async function copyModelSideFiles(src: string, dst: string): Promise<string[]> {
  const copied: string[] = [];
  for (const f of COPIED_FILES) {
    try {
      await Deno.copyFile(join(src, f), join(dst, f));
      copied.push(f);
    } catch (e) {
      // A missing source file is skipped; a full or read-only disk is the user's to fix.
      if (!(e instanceof Deno.errors.NotFound)) throw writeErrorOf(e, join(dst, f));
    }
  }
  return copied;
}

/** Write a JSON file with 2-space indentation and a final newline (as transformers does). */
export async function writeJson(path: string, value: unknown): Promise<void> {
  try {
    await Deno.writeTextFile(path, JSON.stringify(value, null, 2) + "\n");
  } catch (e) {
    throw writeErrorOf(e, path);
  }
}
