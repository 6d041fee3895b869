/**
 * The kernels' PTX, embedded in the program as text (built by ffi/cuda/build.sh from the .cu files
 * beside this one). `deno compile` and `deno task bundle` inline these imports, so a built program
 * needs only the driver and cuBLASLt at run time. The driver JIT-compiles the PTX for the device at
 * module load and keeps the result in its compute cache (~/.nv/ComputeCache) for later runs.
 */
import core80 from "./kernels_sm80.ptx" with { type: "text" };
import core90 from "./kernels_sm90.ptx" with { type: "text" };
import flash80 from "./flash_sm80.ptx" with { type: "text" };
import flash90 from "./flash_sm90.ptx" with { type: "text" };
import gguf80 from "./gguf_sm80.ptx" with { type: "text" };
import gguf90 from "./gguf_sm90.ptx" with { type: "text" };

/**
 * The modules: everything but tensor-core attention and the GGUF quantizer, tensor-core attention,
 * and the GGUF quantizer (separate so that their JIT compile happens only in programs that use them).
 */
export type KernelModuleName = "core" | "flash" | "gguf";

const MODULES: Readonly<Record<KernelModuleName, readonly [sm80: string, sm90: string]>> = {
  core: [core80, core90],
  flash: [flash80, flash90],
  gguf: [gguf80, gguf90],
};

/**
 * Every PTX file as the program carries it, by its path in the repository (`ffi/cuda/<name>.ptx`):
 * what `autoround --version` hashes, and what tests compare with the files on disk.
 */
export const PTX_FILES: Readonly<Record<string, string>> = {
  "ffi/cuda/flash_sm80.ptx": flash80,
  "ffi/cuda/flash_sm90.ptx": flash90,
  "ffi/cuda/gguf_sm80.ptx": gguf80,
  "ffi/cuda/gguf_sm90.ptx": gguf90,
  "ffi/cuda/kernels_sm80.ptx": core80,
  "ffi/cuda/kernels_sm90.ptx": core90,
};

/**
 * PTX for a device of compute capability `cc`: the sm_90 build on Hopper and newer (the driver
 * JIT-compiles it forward), the sm_80 build on Ampere and Ada; null below 8.0 (the tensor-core
 * instructions the kernels use need sm_80).
 */
export function ptxFor(cc: readonly [number, number], module: KernelModuleName): string | null {
  const major = cc[0];
  if (major < 8) return null;
  return MODULES[module][major >= 9 ? 1 : 0];
}
