"""Run tests/consumers/gguf_oracle.py (auto-round's GGUF quantizers) on a CPU-only machine.

    apt-get install -y python3-torch python3-packaging python3-psutil   # Debian's torch, CPU
    /usr/bin/python3 tools/autoround_cpu.py OUT.json

auto-round v0.15's source must be in .ar/ (as for tools/autoround_oracle.py). Its GGUF quantizers
need only torch, but importing auto_round pulls in transformers, accelerate and friends; this runner
stubs those packages (any attribute is a harmless callable) and imports the auto_round package
without its __init__, so the quantizer code runs unchanged on whatever torch is installed (1.13 on
Debian 12 works; missing torch._dynamo / torch.compiler get no-op shims). The bytes it writes are
the same as those from the GPU machine's torch 2.11 run (both sum on the CPU in the same order).
"""
import importlib.abc
import importlib.machinery
import runpy
import sys
import types

STUB = ("accelerate", "transformers", "cpuinfo", "datasets", "pydantic", "safetensors", "tqdm",
        "threadpoolctl", "py_cpuinfo", "huggingface_hub", "lm_eval")


class Anything:
    """Stands for any object of a stubbed package: callable, subclassable, iterable, empty."""

    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Anything()

    def __getattr__(self, name):
        return Anything()

    def __mro_entries__(self, bases):
        return (object,)

    def __iter__(self):
        return iter(())

    def __or__(self, other):
        return self


class StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()


class StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in STUB:
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        m = StubModule(spec.name)
        m.__path__ = []
        m.__version__ = "5.17.0"  # the transformers version auto-round checks against
        return m

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, StubFinder())

import torch  # noqa: E402  (after the finder, so torch's optional imports see the stubs too)

if not hasattr(torch, "_dynamo"):
    dynamo = types.ModuleType("torch._dynamo")
    dynamo.disable = lambda *a, **k: (lambda f: f)
    dynamo.config = Anything()
    dynamo.allow_in_graph = lambda f: f
    torch._dynamo = dynamo
    sys.modules["torch._dynamo"] = dynamo
if not hasattr(torch, "compiler"):
    torch.compiler = types.SimpleNamespace(
        disable=lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f)))

package = types.ModuleType("auto_round")
package.__path__ = [".ar/auto_round"]
sys.modules["auto_round"] = package
sys.argv = ["gguf_oracle.py"] + sys.argv[1:]
runpy.run_path("tests/consumers/gguf_oracle.py", run_name="__main__")
