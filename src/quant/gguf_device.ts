/** GGUF quantization on the run's device, as the GGUF exporter calls it. */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { GgufDeviceQuantizer } from "../export/exporter.ts";

/**
 * The device GGUF quantizer of a GPU backend (uploads the weight, runs Backend.ggufQuantize), or
 * undefined: on the CPU the exporter runs the host reference itself, whose float64 importance keeps
 * its bytes identical with auto-round's. A weight larger than one device tensor goes in row slices
 * (blocks never cross rows, and the importance is the same for every slice).
 */
export function ggufQuantizerOf(be: Backend): GgufDeviceQuantizer | undefined {
  if (!be.ggufQuantize || be.name === "cpu") return undefined;
  const quantize: GgufDeviceQuantizer = async (type, w, n, k, opts) => {
    using im = opts.imatrix ? be.upload(opts.imatrix, [k]) : undefined;
    const ggufOpts = { optRtn: opts.optRtn, imatrix: im, atExport: opts.atExport };
    if (!(w instanceof Float32Array)) {
      if (w.backend !== be) throw new Error("ggufQuantizer: a weight of another backend");
      return await be.ggufQuantize!(w as Tensor, type, ggufOpts);
    }
    const rows = Math.max(1, Math.min(n, Math.floor((be.maxTensorBytes ?? Infinity) / (4 * k))));
    const parts: Uint8Array[] = [];
    for (let r = 0; r < n; r += rows) {
      const m = Math.min(rows, n - r);
      using wt = be.upload(w.subarray(r * k, (r + m) * k), [m, k]);
      parts.push(
        await be.ggufQuantize!(wt, type, ggufOpts),
      );
    }
    if (parts.length === 1) return parts[0];
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) (out.set(p, at), at += p.length);
    return out;
  };
  return Object.assign(quantize, { backend: be });
}
