/**
 * Chat-template mutations: Jinja syntax damage (tags cut, doubled, unbalanced; blocks without their
 * end), expressions that fail at render time (unknown filters, missing members, out-of-range indexes,
 * raise_exception), and templates that try to run forever or build huge strings (nested ranges,
 * runaway recursion, repeated doubling), on top of byte-level edits of the template text.
 */
import { mutateBytes } from "./bytes.ts";
import type { Rng } from "./rng.ts";

const TOKENS = ["{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "(", ")", "[", "]", "'", '"', "|", "."];

/** Statements and expressions spliced in at a random position. */
const INSERTS = [
  "{% for m in messages %}",
  "{% endfor %}",
  "{% if %}",
  "{% endif %}",
  "{% else %}",
  "{% set x = %}",
  "{{ messages[1000].content }}",
  "{{ messages[0]['nope']['deeper'] }}",
  "{{ messages | unknown_filter }}",
  "{{ undefined_function() }}",
  "{{ raise_exception('template says no') }}",
  "{{ 1 / 0 }}",
  "{{ 'a' + 1 }}",
  "{{ messages[::0] }}",
  "{{ range(0, 10, 0) }}",
  "{{ 10 ** 400 }}",
  "{{ messages | tojson(indent=100000000) }}",
  "{{ ' ' | indent(1000000000) }}",
  "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
  "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
  "{% for i in range(1000000000) %}x{% endfor %}",
  "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
  "{{ messages[0].content * 1000000000 }}",
  "{% include 'other.jinja' %}",
  "{% extends 'base.jinja' %}",
  "{% raw %}",
  "\u0000",
  "{{ bos_token ~ eos_token ~ unk_token }}",
  "{{ strftime_now('%Y-%m-%d') }}",
];

/** A few real chat templates (transformers-era Llama 2, ChatML, Zephyr) to seed from when a folder has none. */
export const SEED_TEMPLATES = [
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}" +
  "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n" +
  "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n" +
  "{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
];

/** A mutated chat template and the steps that made it. */
export function mutateTemplate(rng: Rng, template: string): { text: string; steps: string[] } {
  let t = template;
  const steps: string[] = [];
  for (let k = rng.range(1, 3); k > 0; k--) {
    const op = rng.weighted([3, 3, 2, 2, 2, 1]);
    if (op === 0) { // delete one occurrence of a syntax token
      const tok = rng.pick(TOKENS);
      const at = nthIndex(t, tok, rng);
      if (at < 0) continue;
      t = t.slice(0, at) + t.slice(at + tok.length);
      steps.push(`delete "${tok}" at ${at}`);
    } else if (op === 1) { // insert a statement or expression
      const at = rng.int(t.length + 1), ins = rng.pick(INSERTS);
      t = t.slice(0, at) + ins + t.slice(at);
      steps.push(`insert ${JSON.stringify(ins.slice(0, 50))} at ${at}`);
    } else if (op === 2) { // duplicate a token
      const tok = rng.pick(TOKENS);
      const at = nthIndex(t, tok, rng);
      if (at < 0) continue;
      t = t.slice(0, at) + tok + t.slice(at);
      steps.push(`double "${tok}" at ${at}`);
    } else if (op === 3) { // swap two keywords
      const [a, b] = [
        rng.pick(["for", "if", "endfor", "endif", "set", "in", "not", "and"]),
        rng.pick(["endfor", "endif", "elif", "macro", "loop", "", "for"]),
      ];
      const at = nthIndex(t, a, rng);
      if (at < 0) continue;
      t = t.slice(0, at) + b + t.slice(at + a.length);
      steps.push(`"${a}" -> "${b}" at ${at}`);
    } else if (op === 4) { // cut the template
      const at = rng.int(t.length + 1);
      t = t.slice(0, at);
      steps.push(`truncate at ${at}`);
    } else { // byte damage
      const m = mutateBytes(rng, new TextEncoder().encode(t));
      t = new TextDecoder().decode(m.bytes);
      steps.push(...m.steps);
    }
  }
  return { text: t, steps };
}

function nthIndex(s: string, tok: string, rng: Rng): number {
  const at: number[] = [];
  for (let i = s.indexOf(tok); i >= 0 && at.length < 1000; i = s.indexOf(tok, i + 1)) at.push(i);
  return at.length ? rng.pick(at) : -1;
}
