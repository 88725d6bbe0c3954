"""Host overhead of one decode call from Python: call time minus kernel time, small case.

    python tests/python/bench_overhead.py            # CUDA if available, else CPU
    python tests/python/bench_overhead.py --json     # one JSON line

On CUDA (torch): the kernel time is measured by replaying the same calls from a CUDA graph;
the call time by issuing many eager calls back to back (the small case keeps the GPU idle, so
the loop is bound by the host). Overhead = eager time per call - graph time per call, for
  - MLADecoder with preallocated out/lse (the per-layer fast path),
  - MLADecoder allocating out/lse with torch.empty,
  - flash_mla_with_kvcache (FlashMLA's API; allocates out/lse, checks the metadata).
On the CPU (numpy / torch CPU) the kernel cannot be timed separately; the script reports the
per-call time of an empty case (every sequence of length 0) as an upper bound of the overhead.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, Callable, Dict

import flashmla


def _per_call_us(fn: Callable[[], Any], iters: int, sync: Callable[[], None]) -> float:
    for _ in range(10):
        fn()
    sync()
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        sync()
        best = min(best, (time.perf_counter() - t0) / iters * 1e6)
    return best


def measure_cuda(iters: int = 5000, batch: int = 1, heads: int = 16,
                 s_k: int = 64) -> Dict[str, float]:
    import torch

    dev = "cuda"
    q = torch.randn(batch, 1, heads, 576, dtype=torch.bfloat16, device=dev)
    pages = (s_k + 63) // 64
    kv = torch.randn(batch * pages, 64, 1, 576, dtype=torch.bfloat16, device=dev)
    bt = torch.arange(batch * pages, dtype=torch.int32, device=dev).view(batch, pages)
    sl = torch.full((batch,), s_k, dtype=torch.int32, device=dev)
    out = torch.empty(batch, 1, heads, 512, dtype=torch.bfloat16, device=dev)
    lse = torch.empty(batch, heads, 1, dtype=torch.float32, device=dev)
    decoder = flashmla.MLADecoder(batch, heads, device=dev).plan(sl)
    meta, _ = flashmla.get_mla_metadata()

    calls: Dict[str, Callable[[], Any]] = {
        "decoder_prealloc": lambda: decoder(q, kv, bt, sl, out=out, lse=lse),
        "decoder": lambda: decoder(q, kv, bt, sl),
        "flash_mla_with_kvcache": lambda: flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512,
                                                                          meta),
    }
    sync = torch.cuda.synchronize
    result: Dict[str, float] = {}
    for name, fn in calls.items():
        eager = _per_call_us(fn, iters, sync)
        fn()
        sync()
        graph = torch.cuda.CUDAGraph()
        reps = 50
        with torch.cuda.graph(graph):
            for _ in range(reps):
                fn()
        replay = _per_call_us(graph.replay, max(iters // reps, 20), sync) / reps
        result[f"{name}_call_us"] = eager
        result[f"{name}_kernel_us"] = replay
        result[f"{name}_overhead_us"] = eager - replay
    return result


def measure_cpu(iters: int = 5000, batch: int = 1, heads: int = 16) -> Dict[str, float]:
    import numpy as np

    q = np.zeros((batch, 1, heads, 576), np.float16)
    kv = np.zeros((1, 64, 1, 576), np.float16)
    bt = np.zeros((batch, 1), np.int32)
    sl = np.zeros(batch, np.int32)
    out = np.empty((batch, 1, heads, 512), np.float16)
    lse = np.empty((batch, heads, 1), np.float32)
    decoder = flashmla.MLADecoder(batch, heads).plan(sl)
    meta, _ = flashmla.get_mla_metadata()
    noop = lambda: None  # noqa: E731
    return {
        "cpu_decoder_prealloc_empty_case_us": _per_call_us(
            lambda: decoder(q, kv, bt, sl, out=out, lse=lse), iters, noop),
        "cpu_flash_mla_with_kvcache_empty_case_us": _per_call_us(
            lambda: flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta), iters, noop),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    try:
        import torch

        on_cuda = torch.cuda.is_available() and flashmla.cuda_available()
    except ImportError:
        on_cuda = False
    result = measure_cuda(args.iters) if on_cuda else measure_cpu(args.iters)
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        print(f"{key:45s} {value:8.2f}")
    if on_cuda:
        verdict = "OK" if result["decoder_prealloc_overhead_us"] < 10 else "ABOVE 10 us"
        print(f"host overhead (MLADecoder, preallocated): "
              f"{result['decoder_prealloc_overhead_us']:.2f} us  {verdict}")


if __name__ == "__main__":
    main()
