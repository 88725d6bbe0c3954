"""flashmla: Multi-head Latent Attention decode over a paged KV cache, on CPU and CUDA.

Two APIs over the same C++ library:

- FlashMLA's (``import flashmla as flash_mla``): :func:`get_mla_metadata`,
  :func:`flash_mla_with_kvcache`, plus :func:`quantize_kv_cache_fp8` /
  :func:`dequantize_kv_cache_fp8` for the "FP8 with scale" cache;
- a Pythonic one: :class:`MLADecoder` (plan once per step, call once per layer),
  :class:`MLASparseDecoder` (token-sparse, planned when made) and :func:`sparse_decode`.

Arrays are torch tensors, numpy arrays (bf16 via ``ml_dtypes.bfloat16``), cupy or jax arrays,
on the CPU or a CUDA GPU; inputs are read in place (DLPack-style, no copies) and outputs come
back in the caller's framework on the caller's device. Invalid arguments raise ValueError or
TypeError naming the argument; what a backend does not implement raises NotImplementedError.
"""

from __future__ import annotations

from typing import Any, NoReturn

from ._backend import _C
from . import _torch_ops  # noqa: F401  (registers torch.ops.flashmla.* when torch is present)
from .decoder import (MLADecoder, MLASparseDecoder, dequantize_kv_cache_fp8,
                      quantize_kv_cache_fp8, sparse_decode)
from .interface import FlashMLASchedMeta, flash_mla_with_kvcache, get_mla_metadata

__version__ = "0.1.0"

__all__ = [
    "FlashMLASchedMeta",
    "MLADecoder",
    "MLASparseDecoder",
    "built_with_cuda",
    "cuda_available",
    "dequantize_kv_cache_fp8",
    "flash_mla_with_kvcache",
    "get_mla_metadata",
    "quantize_kv_cache_fp8",
    "sparse_decode",
]


def cuda_available() -> bool:
    """True when this build has the CUDA backend and a usable GPU is present."""
    return bool(_C.cuda_available())


def built_with_cuda() -> bool:
    """True when the CUDA kernels were compiled into this build."""
    return bool(_C.BUILT_WITH_CUDA)


def _not_implemented(name: str) -> Any:
    def stub(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(f"flashmla does not implement flash_mla.{name} (prefill) yet")

    stub.__name__ = name
    stub.__doc__ = f"FlashMLA's {name}: not implemented by flashmla yet (raises)."
    return stub


# FlashMLA's prefill entry points, so that `import flashmla as flash_mla` fails loudly on use.
flash_mla_sparse_fwd = _not_implemented("flash_mla_sparse_fwd")
flash_attn_varlen_func = _not_implemented("flash_attn_varlen_func")
flash_attn_varlen_qkvpacked_func = _not_implemented("flash_attn_varlen_qkvpacked_func")
flash_attn_varlen_kvpacked_func = _not_implemented("flash_attn_varlen_kvpacked_func")
