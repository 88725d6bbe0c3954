"""flashmla's decode as torch custom ops, so that torch.compile can trace code that calls it.

Eager calls do not go through these ops (their dispatch costs several microseconds); the public
functions switch to them only while torch.compile traces. The ops refer to the object that
owns the schedule (an MLADecoder, MLASparseDecoder or FlashMLASchedMeta) by an integer id:
create those objects, and plan an MLADecoder, outside the compiled function.

    torch.ops.flashmla.dense_decode(q, kv_cache, block_table, cache_seqlens, owner_id,
                                    head_dim_v, softmax_scale, causal, is_fp8) -> (out, lse)
    torch.ops.flashmla.sparse_decode(q, kv_cache, indices, topk_length, attn_sink,
                                     extra_kv_cache, extra_indices, extra_topk_length,
                                     head_dim_v, softmax_scale, owner_id=0) -> (out, lse)

The sparse op's owner_id 0 means no owner: the plan comes from flashmla's cache of sparse
plans (one per shape and stream, see flashmla.sparse_decode).
"""

# No `from __future__ import annotations`: torch.library reads the annotations as objects.
from types import SimpleNamespace
from typing import Any, Optional, Tuple, TypeAlias

from . import _core
from ._backend import torch_module

_ops: Optional[SimpleNamespace] = None


def _register(torch: Any) -> SimpleNamespace:
    Tensor: TypeAlias = torch.Tensor

    @torch.library.custom_op("flashmla::dense_decode", mutates_args=())
    def dense_decode(q: Tensor, kv_cache: Tensor, block_table: Tensor, cache_seqlens: Tensor,
                     owner_id: int, head_dim_v: int, softmax_scale: float, causal: bool,
                     is_fp8: bool) -> Tuple[Tensor, Tensor]:
        return _core.owner(owner_id)._decode_eager(q, kv_cache, block_table, cache_seqlens,
                                                   head_dim_v, softmax_scale, causal, is_fp8)

    @dense_decode.register_fake
    def _(q: Tensor, kv_cache: Tensor, block_table: Tensor, cache_seqlens: Tensor,
          owner_id: int, head_dim_v: int, softmax_scale: float, causal: bool,
          is_fp8: bool) -> Tuple[Tensor, Tensor]:
        b, s_q, h_q, _ = q.shape
        return (q.new_empty((b, s_q, h_q, head_dim_v)),
                q.new_empty((b, h_q, s_q), dtype=torch.float32))

    @torch.library.custom_op("flashmla::sparse_decode", mutates_args=())
    def sparse_decode(q: Tensor, kv_cache: Tensor, indices: Tensor,
                      topk_length: Optional[Tensor], attn_sink: Optional[Tensor],
                      extra_kv_cache: Optional[Tensor], extra_indices: Optional[Tensor],
                      extra_topk_length: Optional[Tensor], head_dim_v: int,
                      softmax_scale: float, owner_id: int = 0) -> Tuple[Tensor, Tensor]:
        if owner_id:
            return _core.owner(owner_id)._sparse_decode_eager(
                q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache, extra_indices,
                extra_topk_length, head_dim_v, softmax_scale)
        from .decoder import _sparse_eager

        return _sparse_eager(q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                             extra_indices, extra_topk_length, head_dim_v, softmax_scale)

    @sparse_decode.register_fake
    def _(q: Tensor, kv_cache: Tensor, indices: Tensor, topk_length: Optional[Tensor],
          attn_sink: Optional[Tensor], extra_kv_cache: Optional[Tensor],
          extra_indices: Optional[Tensor], extra_topk_length: Optional[Tensor],
          head_dim_v: int, softmax_scale: float, owner_id: int = 0) -> Tuple[Tensor, Tensor]:
        b, s_q, h_q, _ = q.shape
        return (q.new_empty((b, s_q, h_q, head_dim_v)),
                q.new_empty((b, h_q, s_q), dtype=torch.float32))

    return SimpleNamespace(dense_decode=dense_decode, sparse_decode=sparse_decode)


def ops() -> SimpleNamespace:
    """The registered ops (registered when flashmla is imported with torch present)."""
    if _ops is None:
        raise RuntimeError("flashmla's torch ops are not registered (torch was not importable "
                           "when flashmla was imported)")
    return _ops


def _supported(torch: Any) -> bool:
    library = getattr(torch, "library", None)
    return library is not None and hasattr(library, "custom_op") and hasattr(
        library, "register_fake")


if torch_module is not None and _supported(torch_module):
    _ops = _register(torch_module)
