/**
 * Errors of the CUDA bindings. `ffi/` imports nothing from the program (ARCHITECTURE.md § Layers), so
 * these are plain typed errors; src/backend/cuda turns them into a BackendError where a user can act.
 */

/** A driver or cuBLASLt call returned an error status; the message is the library's own. */
export class CudaError extends Error {
  constructor(
    /** The C function that failed, e.g. `cuMemAlloc_v2`. */
    readonly call: string,
    /** Its status code (CUresult or cublasStatus_t). */
    readonly code: number,
    /** The library's name for the code, e.g. `CUDA_ERROR_OUT_OF_MEMORY`. */
    readonly codeName: string,
    detail: string,
  ) {
    super(`${call} failed: ${codeName} (${code})${detail ? `: ${detail}` : ""}`);
    this.name = "CudaError";
  }
}

/** The library cannot be loaded or no device can be used: the reason in one line. */
export class CudaUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CudaUnavailableError";
  }
}
