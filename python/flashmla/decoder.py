"""The Pythonic API: explicit decoder objects per decoding shape (dense and token-sparse), a
stateless sparse decode, and the FP8 cache conversions.

Shapes (MLA.md sections 2-4): b sequences, s_q new tokens each, h_q query heads, h_kv KV heads
(dividing h_q), d = 576 (or 512) values per cache row, dv = head_dim_v = 512 value dims.
Arrays may be torch tensors, numpy arrays (bf16 through ml_dtypes.bfloat16), cupy or jax
arrays, on the CPU or a CUDA GPU; they are read in place, and outputs are allocated with the
same framework on the same device.
"""

from __future__ import annotations

import operator
from typing import Any, Optional, Tuple

from . import _core
from ._backend import _C
from ._interop import ACT, BF16, F32, FP8, DLPackAdapter, adapter_for, resolve_stream, shape_of

Array = Any  # a torch.Tensor, numpy.ndarray, cupy.ndarray, jax.Array, ...

__all__ = ["MLADecoder", "MLASparseDecoder", "sparse_decode", "quantize_kv_cache_fp8",
           "dequantize_kv_cache_fp8"]


class MLADecoder:
    """Dense MLA decode for one shape: owns the split-KV schedule of one decoding step.

    Make one per (batch size, shape, device), call :meth:`plan` once per decoding step with
    that step's ``cache_seqlens``, then call the decoder once per layer::

        decoder = flashmla.MLADecoder(batch_size=b, num_heads_q=16, device="cuda")
        decoder.plan(cache_seqlens)                        # per step
        for layer in range(num_layers):                    # per layer: launches only
            out, lse = decoder(q[layer], kv_cache[layer], block_table, cache_seqlens)

    Arguments of ``__call__`` (all on the decoder's device):

    - ``q``: ``[b, s_q, h_q, d]`` bf16 or fp16, ``d`` 576 or 512, last dim contiguous;
    - ``kv_cache``: ``[num_blocks, page_block_size, h_kv, d]``, dtype of q; or the FP8 cache
      ``[num_blocks, page_block_size, 1, 656]`` float8_e4m3fn/uint8 (with bf16 q, d = 576);
    - ``block_table``: ``[b, max_blocks_per_seq]`` int32;
    - ``cache_seqlens``: ``[b]`` int32, the values :meth:`plan` saw.

    Returns ``(out, lse)``: ``out [b, s_q, h_q, dv]`` dtype of q, ``lse [b, h_q, s_q]`` float32
    (``+inf`` for a query that sees no key). Pass ``out=``/``lse=`` to write into your own
    arrays (then nothing is allocated; any strides with a contiguous last dim).

    The per-layer call neither allocates (given ``out``/``lse``) nor synchronizes, so with
    torch it can be captured in a ``torch.cuda.CUDAGraph`` once the decoder is planned.
    """

    def __init__(self, batch_size: int, num_heads_q: int, *, s_q: int = 1,
                 num_heads_kv: int = 1, page_block_size: int = 64, head_dim_v: int = 512,
                 device: Any = "cpu", softmax_scale: Optional[float] = None,
                 causal: bool = False, num_workers: int = 0) -> None:
        """
        Args:
            batch_size: b, the number of sequences.
            num_heads_q: h_q, query heads.
            s_q: new tokens per sequence (1, or more with speculative decoding).
            num_heads_kv: h_kv, KV heads (divides h_q; 1 for DeepSeek's MLA).
            page_block_size: tokens per KV-cache page (any size >= 1).
            head_dim_v: dv, value dims (512 for DeepSeek).
            device: "cpu", "cuda", "cuda:N" or a torch.device: where the arrays live.
            softmax_scale: default scale of the scores (None: 1/sqrt(d)).
            causal: default causal masking (matters only for s_q > 1).
            num_workers: parallel work units of the schedule (0: the backend's choice).
        """
        self.device: Tuple[str, int] = _core.parse_device(device)
        self._plan = _C.Plan(batch_size, s_q, num_heads_q, num_heads_kv, page_block_size,
                             self.device[0], self.device[1], head_dim_v, num_workers)
        self.batch_size = batch_size
        self.s_q = s_q
        self.num_heads_q = num_heads_q
        self.num_heads_kv = num_heads_kv
        self.page_block_size = page_block_size
        self.head_dim_v = head_dim_v
        self.softmax_scale = softmax_scale
        self.causal = causal
        self._id = _core.register_owner(self)

    def __repr__(self) -> str:
        dev = _core.device_str(self.device)
        return (f"MLADecoder(batch_size={self.batch_size}, num_heads_q={self.num_heads_q}, "
                f"s_q={self.s_q}, num_heads_kv={self.num_heads_kv}, "
                f"page_block_size={self.page_block_size}, head_dim_v={self.head_dim_v}, "
                f"device='{dev}', planned={self.planned})")

    @property
    def planned(self) -> bool:
        """Whether :meth:`plan` was called."""
        return bool(self._plan.planned)

    @property
    def num_workers(self) -> int:
        """Parallel work units the schedule is made for."""
        return int(self._plan.num_workers)

    def plan(self, cache_seqlens: Array, *, stream: Any = None) -> "MLADecoder":
        """Plans this step's split-KV schedule from ``cache_seqlens [b]`` int32.

        On CUDA this is one small kernel on ``stream`` (None: the framework's current stream;
        or an int cudaStream_t, a torch.cuda.Stream, a cupy stream), without a host
        synchronization. Call it outside ``torch.compile``d code. Returns ``self``.
        """
        adapter = adapter_for(cache_seqlens, "cache_seqlens")
        self._plan.update(cache_seqlens, resolve_stream(stream, adapter, cache_seqlens))
        return self

    def __call__(self, q: Array, kv_cache: Array, block_table: Array, cache_seqlens: Array, *,
                 out: Optional[Array] = None, lse: Optional[Array] = None,
                 softmax_scale: Optional[float] = None, causal: Optional[bool] = None,
                 stream: Any = None) -> Tuple[Array, Array]:
        """One layer's decode: ``(out [b, s_q, h_q, dv], lse [b, h_q, s_q] float32)``."""
        scale = self.softmax_scale if softmax_scale is None else softmax_scale
        causal_ = self.causal if causal is None else causal
        if _core.compiling():
            return self._compiled_call(q, kv_cache, block_table, cache_seqlens, out, lse,
                                       scale, causal_)
        return self._decode(q, kv_cache, block_table, cache_seqlens, out, lse, scale, causal_,
                            stream)

    def _decode(self, q: Array, kv_cache: Array, block_table: Array, cache_seqlens: Array,
                out: Optional[Array], lse: Optional[Array], softmax_scale: Optional[float],
                causal: bool, stream: Any = None) -> Tuple[Array, Array]:
        adapter = adapter_for(q)
        b, s_q, h_q, dv = self.batch_size, self.s_q, self.num_heads_q, self.head_dim_v
        wrap = isinstance(adapter, DLPackAdapter)
        out_ = adapter.empty(q, (b, s_q, h_q, dv), ACT) if out is None else out
        lse_ = adapter.empty(q, (b, h_q, s_q), F32) if lse is None else lse
        _C.dense_decode(self._plan, q, kv_cache, block_table, cache_seqlens, out_, lse_, dv,
                        softmax_scale or 0.0, causal, resolve_stream(stream, adapter, q))
        if wrap:
            out_ = out_ if out is not None else adapter.wrap(out_, q)
            lse_ = lse_ if lse is not None else adapter.wrap(lse_, q)
        return out_, lse_

    def _decode_eager(self, q: Array, kv_cache: Array, block_table: Array, cache_seqlens: Array,
                      head_dim_v: int, softmax_scale: float, causal: bool,
                      is_fp8: bool) -> Tuple[Array, Array]:
        """The torch op's implementation (see _torch_ops)."""
        del head_dim_v, is_fp8  # fixed by the decoder / the cache's dtype
        return self._decode(q, kv_cache, block_table, cache_seqlens, None, None, softmax_scale,
                            causal)

    def _compiled_call(self, q: Array, kv_cache: Array, block_table: Array,
                       cache_seqlens: Array, out: Optional[Array], lse: Optional[Array],
                       softmax_scale: Optional[float], causal: bool) -> Tuple[Array, Array]:
        from ._torch_ops import ops

        o, s = ops().dense_decode(q, kv_cache, block_table, cache_seqlens, self._id,
                                  self.head_dim_v, float(softmax_scale or 0.0), causal, False)
        return _copy_into(o, out), _copy_into(s, lse)


class MLASparseDecoder:
    """Token-sparse MLA decode (DeepSeek-V3.2) for one shape: owns its sparse plan.

    Each query token attends an explicit set of cache rows (``indices``) instead of a prefix
    of its sequence, so the split schedule depends on the shape alone: it is made, together
    with its workspace, when the decoder is constructed (on CUDA this allocates), and a call
    only launches (and allocates ``out``/``lse`` unless given). There is no per-step ``plan``;
    with torch a call can be captured in a ``torch.cuda.CUDAGraph`` straight away, and
    ``torch.compile`` traces it as ``torch.ops.flashmla.sparse_decode``::

        decoder = flashmla.MLASparseDecoder(batch_size=b, num_heads_q=64, topk=2048,
                                            device="cuda")     # once per shape
        for layer in range(num_layers):                        # per layer: launches only
            out, lse = decoder(q[layer], kv_cache[layer], indices)

    Arguments of ``__call__`` (all on the decoder's device):

    - ``q``: ``[b, s_q, h_q, d]`` bf16, ``d`` = 576 (512 works on the CPU), last dim
      contiguous;
    - ``kv_cache``: ``[num_blocks, page_block_size, 1, d]`` bf16 (any page size), or the FP8
      cache ``[num_blocks, page_block_size, 1, 656]`` float8_e4m3fn/uint8 (d = 576);
    - ``indices``: ``[b, s_q, topk]`` int32, ``page * page_block_size + offset``; -1 is skipped;
    - ``topk_length``: ``[b]`` int32, optional: only the first ``topk_length[i]`` indices count;
    - ``attn_sink``: ``[h_q]`` float32, optional: out is scaled by
      ``exp(lse) / (exp(lse) + exp(sink))`` (lse itself is unchanged);
    - ``extra_kv_cache`` (stored like ``kv_cache``), ``extra_indices [b, s_q, extra_topk]``
      int32 and ``extra_topk_length [b]`` int32, optional: a second cache attended in the
      same softmax. Give them exactly when the decoder was made with ``extra_topk > 0``.

    Returns ``(out [b, s_q, h_q, dv] dtype of q, lse [b, h_q, s_q] float32)``; a query whose
    every index is invalid gets ``out = 0``, ``lse = +inf``. Pass ``out=``/``lse=`` to write
    into your own arrays (then nothing is allocated).

    A call whose ``b``, ``s_q``, ``h_q``, ``topk + extra_topk`` or ``head_dim_v`` differ from
    the decoder's raises ValueError (``plan: was made for ...``). The workspace belongs to the
    decoder: calls that may run concurrently (other streams) need decoders of their own.
    """

    def __init__(self, batch_size: int, num_heads_q: int, topk: int, *, s_q: int = 1,
                 extra_topk: int = 0, head_dim_v: int = 512, device: Any = "cpu",
                 softmax_scale: Optional[float] = None, num_workers: int = 0) -> None:
        """
        Args:
            batch_size: b, the number of sequences.
            num_heads_q: h_q, query heads (the cache has one KV head).
            topk: index slots per query token (``indices.shape[-1]``), >= 1.
            s_q: query tokens per sequence (1, or more with speculative decoding).
            extra_topk: index slots per query token into ``extra_kv_cache``
                (``extra_indices.shape[-1]``); 0 without an extra cache.
            head_dim_v: dv, value dims (512 for DeepSeek).
            device: "cpu", "cuda", "cuda:N" or a torch.device: where the arrays live.
            softmax_scale: default scale of the scores (None: 1/sqrt(d)).
            num_workers: parallel work units of the schedule (0: the backend's choice).
        """
        for name, value, low in (("topk", topk, 1), ("extra_topk", extra_topk, 0)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
            if value < low:
                raise ValueError(f"{name}: must be >= {low}, got {value}")
        self.device: Tuple[str, int] = _core.parse_device(device)
        self._plan = _C.Plan(batch_size, s_q, num_heads_q, 1, 64, self.device[0],
                             self.device[1], head_dim_v, num_workers, topk + extra_topk)
        self.batch_size = batch_size
        self.s_q = s_q
        self.num_heads_q = num_heads_q
        self.topk = topk
        self.extra_topk = extra_topk
        self.head_dim_v = head_dim_v
        self.softmax_scale = softmax_scale
        self._id = _core.register_owner(self)

    def __repr__(self) -> str:
        dev = _core.device_str(self.device)
        return (f"MLASparseDecoder(batch_size={self.batch_size}, "
                f"num_heads_q={self.num_heads_q}, topk={self.topk}, s_q={self.s_q}, "
                f"extra_topk={self.extra_topk}, head_dim_v={self.head_dim_v}, device='{dev}')")

    @property
    def num_workers(self) -> int:
        """Parallel work units the schedule is made for."""
        return int(self._plan.num_workers)

    def __call__(self, q: Array, kv_cache: Array, indices: Array, *,
                 topk_length: Optional[Array] = None, attn_sink: Optional[Array] = None,
                 extra_kv_cache: Optional[Array] = None, extra_indices: Optional[Array] = None,
                 extra_topk_length: Optional[Array] = None, out: Optional[Array] = None,
                 lse: Optional[Array] = None, softmax_scale: Optional[float] = None,
                 stream: Any = None) -> Tuple[Array, Array]:
        """One layer's sparse decode: ``(out [b, s_q, h_q, dv], lse [b, h_q, s_q] float32)``.

        ``stream``: None for the framework's current stream, or an int cudaStream_t, a
        torch.cuda.Stream, a cupy stream.
        """
        scale = self.softmax_scale if softmax_scale is None else softmax_scale
        if _core.compiling():
            from ._torch_ops import ops

            o, s = ops().sparse_decode(q, kv_cache, indices, topk_length, attn_sink,
                                       extra_kv_cache, extra_indices, extra_topk_length,
                                       self.head_dim_v, float(scale or 0.0), self._id)
            return _copy_into(o, out), _copy_into(s, lse)
        return _sparse_eager(q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                             extra_indices, extra_topk_length, self.head_dim_v, scale, out, lse,
                             stream, self._plan)

    def _sparse_decode_eager(self, q: Array, kv_cache: Array, indices: Array,
                             topk_length: Optional[Array], attn_sink: Optional[Array],
                             extra_kv_cache: Optional[Array], extra_indices: Optional[Array],
                             extra_topk_length: Optional[Array], head_dim_v: int,
                             softmax_scale: float) -> Tuple[Array, Array]:
        """The torch op's implementation (see _torch_ops)."""
        return _sparse_eager(q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                             extra_indices, extra_topk_length, head_dim_v, softmax_scale,
                             plan=self._plan)


def sparse_decode(q: Array, kv_cache: Array, indices: Array, *,
                  topk_length: Optional[Array] = None, attn_sink: Optional[Array] = None,
                  extra_kv_cache: Optional[Array] = None, extra_indices: Optional[Array] = None,
                  extra_topk_length: Optional[Array] = None, head_dim_v: int = 512,
                  softmax_scale: Optional[float] = None, out: Optional[Array] = None,
                  lse: Optional[Array] = None, stream: Any = None) -> Tuple[Array, Array]:
    """Token-sparse decode (DeepSeek-V3.2): each query attends an explicit set of cache rows.

    Args:
        q: ``[b, s_q, h_q, d]`` bf16 (d = 576 for the FP8 cache).
        kv_cache: ``[num_blocks, page_block_size, 1, d]`` bf16, or the FP8 cache
            ``[num_blocks, page_block_size, 1, 656]`` float8_e4m3fn/uint8.
        indices: ``[b, s_q, topk]`` int32, ``page * page_block_size + offset``; -1 is skipped.
        topk_length: ``[b]`` int32: only the first ``topk_length[i]`` indices count.
        attn_sink: ``[h_q]`` float32: out is scaled by ``exp(lse) / (exp(lse) + exp(sink))``.
        extra_kv_cache, extra_indices ``[b, s_q, extra_topk]``, extra_topk_length ``[b]``:
            a second cache attended in the same softmax.
        head_dim_v: dv.
        softmax_scale: None for ``1/sqrt(d)``.
        out, lse: optional preallocated outputs.
        stream: None for the framework's current stream, or a raw/torch/cupy stream.

    Returns:
        ``(out [b, s_q, h_q, dv] dtype of q, lse [b, h_q, s_q] float32)``; a query whose every
        index is invalid gets ``out = 0``, ``lse = +inf``.

    The sparse plan (schedule and split workspace) comes from a process-wide cache with one
    plan per (b, s_q, h_q, topk + extra_topk, head_dim_v, device, stream): the first call of a
    shape on a stream makes it (on CUDA that allocates), later calls allocate nothing but the
    outputs (nothing with ``out``/``lse``). So with torch, make one warm-up call on the stream
    that will be captured, then capture the call in a ``torch.cuda.CUDAGraph``; plans used by
    a captured graph are kept for the life of the process. :class:`MLASparseDecoder` owns its
    plan instead.
    """
    if _core.compiling():
        from ._torch_ops import ops

        o, s = ops().sparse_decode(q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                                   extra_indices, extra_topk_length, head_dim_v,
                                   float(softmax_scale or 0.0))
        return _copy_into(o, out), _copy_into(s, lse)
    return _sparse_eager(q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                         extra_indices, extra_topk_length, head_dim_v, softmax_scale, out, lse,
                         stream)


def _copy_into(result: Array, dest: Optional[Array]) -> Array:
    """`result`, or `dest` with `result` copied into it (torch.compile path)."""
    if dest is None:
        return result
    dest.copy_(result)
    return dest


def sparse_key(q: Array, adapter: Any, indices: Any, extra_indices: Any,
               head_dim_v: Any) -> Optional[_core.SparseKey]:
    """The sparse plan key of a call (b, s_q, h_q, topk + extra_topk, dv, device), or None
    when the arguments cannot make a valid plan (then the C++ checks name what is wrong)."""
    try:
        b, s_q, h_q = (int(n) for n in q.shape[:3])
        slots = int(indices.shape[-1])
        if extra_indices is not None:
            slots += int(extra_indices.shape[-1])
        dv = operator.index(head_dim_v)
        device = adapter.device(q)
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
    if min(b, s_q, h_q, slots, dv) < 1:
        return None
    return (b, s_q, h_q, slots, dv, device[0], device[1])


def _shared_sparse_plan(key: Optional[_core.SparseKey], stream: int) -> Optional[Any]:
    """The cached plan for `key` on `stream`; None (the plan-less call) when it cannot be made,
    so that the C++ argument checks report the error."""
    if key is None:
        return None
    try:
        return _core.sparse_plans.get(key, stream)
    except (ValueError, TypeError, NotImplementedError):
        return None


def _sparse_eager(q: Array, kv_cache: Array, indices: Array, topk_length: Optional[Array],
                  attn_sink: Optional[Array], extra_kv_cache: Optional[Array],
                  extra_indices: Optional[Array], extra_topk_length: Optional[Array],
                  head_dim_v: int, softmax_scale: Optional[float], out: Optional[Array] = None,
                  lse: Optional[Array] = None, stream: Any = None,
                  plan: Optional[Any] = None) -> Tuple[Array, Array]:
    """Sparse decode with `plan`, or (None) the shared plan of this shape and stream."""
    adapter = adapter_for(q)
    b, s_q, h_q, _ = shape_of(q, "q", 4, "[b, s_q, h_q, d]")
    raw_stream = resolve_stream(stream, adapter, q)
    if plan is None:
        plan = _shared_sparse_plan(sparse_key(q, adapter, indices, extra_indices, head_dim_v),
                                   raw_stream)
    out_ = adapter.empty(q, (b, s_q, h_q, head_dim_v), ACT) if out is None else out
    lse_ = adapter.empty(q, (b, h_q, s_q), F32) if lse is None else lse
    _C.sparse_decode(plan, q, kv_cache, indices, topk_length, attn_sink, extra_kv_cache,
                     extra_indices, extra_topk_length, out_, lse_, head_dim_v,
                     softmax_scale or 0.0, raw_stream)
    if isinstance(adapter, DLPackAdapter):
        out_ = out_ if out is not None else adapter.wrap(out_, q)
        lse_ = lse_ if lse is not None else adapter.wrap(lse_, q)
    return out_, lse_


def quantize_kv_cache_fp8(kv_cache: Array, *, out: Optional[Array] = None,
                          stream: Any = None) -> Array:
    """bf16 cache ``[num_blocks, page_block_size, 1, 576]`` -> FP8 cache
    ``[num_blocks, page_block_size, 1, 656]`` ("FP8 with scale", byte-compatible with FlashMLA).

    Each row: 512 float8_e4m3 latent values, 4 float32 scales (one per 128 values, powers of
    two), 64 bf16 RoPE values. The result is torch.float8_e4m3fn for torch tensors, uint8
    otherwise (numpy has no fp8 dtype; ml_dtypes.float8_e4m3fn arrays are accepted as input).
    """
    adapter = adapter_for(kv_cache, "kv_cache")
    nb, page, h_kv, _ = shape_of(kv_cache, "kv_cache", 4, "[num_blocks, page_block_size, 1, 576]")
    dst = adapter.empty(kv_cache, (nb, page, h_kv, _C.FP8_ROW_BYTES), FP8) if out is None else out
    try:
        _C.quantize_fp8(kv_cache, dst, resolve_stream(stream, adapter, kv_cache))
    except (ValueError, TypeError, NotImplementedError) as e:
        raise _core.renamed(e, {"src": "kv_cache", "dst": "out"}) from None
    if out is None and isinstance(adapter, DLPackAdapter):
        return adapter.wrap(dst, kv_cache)
    return dst


def dequantize_kv_cache_fp8(fp8_cache: Array, *, out: Optional[Array] = None,
                            stream: Any = None) -> Array:
    """FP8 cache ``[num_blocks, page_block_size, 1, 656]`` -> bf16
    ``[num_blocks, page_block_size, 1, 576]`` (numpy: ml_dtypes.bfloat16)."""
    adapter = adapter_for(fp8_cache, "fp8_cache")
    nb, page, h_kv, _ = shape_of(fp8_cache, "fp8_cache", 4,
                                 "[num_blocks, page_block_size, 1, 656]")
    dst = adapter.empty(fp8_cache, (nb, page, h_kv, 576), BF16) if out is None else out
    try:
        _C.dequantize_fp8(fp8_cache, dst, resolve_stream(stream, adapter, fp8_cache))
    except (ValueError, TypeError, NotImplementedError) as e:
        raise _core.renamed(e, {"src": "fp8_cache", "dst": "out"}) from None
    if out is None and isinstance(adapter, DLPackAdapter):
        return adapter.wrap(dst, fp8_cache)
    return dst
