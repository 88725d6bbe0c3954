"""FlashMLA's Python API (``flash_mla``), with its semantics: ``import flashmla as flash_mla``.

``get_mla_metadata()`` returns an empty scheduling object; the first
``flash_mla_with_kvcache`` call that gets it fills it (makes and plans a flashmla DecodePlan
for that call's shapes and ``cache_seqlens``). Reuse it only while the shapes and the values
of ``cache_seqlens`` (and ``topk_length``) stay the same, e.g. across the layers of one
decoding step; a call with other shapes raises ValueError.

Token-sparse calls (``indices=...``) use a sparse plan, whose schedule depends on the shape
alone (every query attends ``topk + extra_topk`` index slots). Sparse plans live in a cache
with one plan per shape, device and stream (``flashmla._core.sparse_plans``);
``get_mla_metadata(..., topk=K)`` (FlashMLA's older signature) makes the plan for ``topk = K``
and ``head_dim_v = 512`` right away, so that the decode calls make none. FlashMLA's metadata
does not know ``extra_topk``: a first call with an extra cache (or another ``head_dim_v``)
makes the plan for its actual ``topk + extra_topk`` then, once per shape and stream.
"""

from __future__ import annotations

import operator
import weakref
from typing import Any, NamedTuple, Optional, Tuple

from . import _core
from ._backend import _C
from ._interop import ACT, F32, DLPackAdapter, adapter_for, dtype_name, shape_of
from .decoder import _sparse_eager

Array = Any

__all__ = ["FlashMLASchedMeta", "get_mla_metadata", "flash_mla_with_kvcache"]

# The C++ layer's argument names -> FlashMLA's.
_NAMES = {
    "kv_cache": "k_cache",
    "extra_kv_cache": "extra_k_cache",
    "extra_indices": "extra_indices_in_kvcache",
    "plan": "tile_scheduler_metadata",
}
_ERRORS = (ValueError, TypeError, NotImplementedError)


class SchedConfig(NamedTuple):
    """What a scheduling object was filled for (FlashMLASchedMeta.Config's fields)."""

    b: int
    s_q: int
    h_q: int
    page_block_size: int
    h_k: int
    causal: bool
    is_fp8_kvcache: bool
    topk: Optional[int]
    extra_page_block_size: Optional[int]
    extra_topk: Optional[int]
    head_dim_v: int
    device: Tuple[str, int]


class SparseHint(NamedTuple):
    """What ``get_mla_metadata(..., topk=...)`` was told about the sparse calls to come."""

    b: int
    s_q: int
    h_q: int
    topk: int
    device: Tuple[str, int]


class FlashMLASchedMeta:
    """Scheduling metadata of one decoding step (FlashMLA's class of the same name).

    Empty until its first use by :func:`flash_mla_with_kvcache`, which fills it for that call's
    shapes and ``cache_seqlens``. ``tile_scheduler_metadata`` and ``num_splits`` exist for
    compatibility and stay None: the schedule lives in a flashmla DecodePlan. One made by
    ``get_mla_metadata(..., topk=K)`` already holds the sparse plan for that shape.
    """

    def __init__(self) -> None:
        self.have_initialized = False
        self.config: Optional[SchedConfig] = None
        self.tile_scheduler_metadata: Optional[Any] = None
        self.num_splits: Optional[Any] = None
        self._plan: Optional[_C.Plan] = None
        self._hint: Optional[SparseHint] = None
        self._sparse_key: Optional[_core.SparseKey] = None
        self._id = _core.register_owner(self)

    def __repr__(self) -> str:
        return f"FlashMLASchedMeta(have_initialized={self.have_initialized}, config={self.config})"

    # -- first use ------------------------------------------------------------------------

    def _initialize(self, config: SchedConfig, q: Array, k_cache: Array,
                    cache_seqlens: Array, stream: int) -> None:
        if config.topk is None and self._hint is not None:
            raise ValueError(
                f"tile_scheduler_metadata: get_mla_metadata made it for sparse attention "
                f"(topk={self._hint.topk}), but this call has no indices; call "
                "get_mla_metadata without topk for dense attention")
        if config.topk is None:
            key: _core.PlanKey = (config.b, config.s_q, config.h_q, config.h_k,
                                  config.page_block_size, config.head_dim_v, *config.device)
            captured = _core.capturing(config.device)
            plan = _core.new_plan(key) if captured else _core.plan_pool.acquire(key)
            if captured:
                _core.plan_pool.captured.append(plan)  # the graph keeps using its buffers
            else:
                weakref.finalize(self, _core.plan_pool.release, key, plan)
            try:
                plan.update(cache_seqlens, stream)
            except _ERRORS as e:
                raise _core.renamed(e, _NAMES) from None
            self._plan = plan
        else:
            hint = self._hint
            if hint is not None and (hint.b, hint.s_q, hint.h_q, hint.device) != (
                    config.b, config.s_q, config.h_q, config.device):
                raise ValueError(
                    f"tile_scheduler_metadata: get_mla_metadata made it for b={hint.b}, "
                    f"s_q={hint.s_q}, h_q={hint.h_q} on {_core.device_str(hint.device)}, but this "
                    f"call has b={config.b}, s_q={config.s_q}, h_q={config.h_q} on "
                    f"{_core.device_str(config.device)}; call get_mla_metadata with this batch's "
                    "cache_seqlens, num_q_tokens_per_head_k and num_heads_q")
            slots = config.topk + (config.extra_topk or 0)
            self._sparse_key = (config.b, config.s_q, config.h_q, slots, config.head_dim_v,
                                *config.device)
        self.config = config
        self.have_initialized = True

    def _check(self, config: SchedConfig) -> None:
        if config != self.config:
            assert self.config is not None
            diffs = ", ".join(f"{f}={getattr(self.config, f)!r} (now {getattr(config, f)!r})"
                              for f in SchedConfig._fields
                              if getattr(self.config, f) != getattr(config, f))
            raise ValueError(
                f"tile_scheduler_metadata: was filled for other arguments: {diffs}. Reuse it "
                "only while shapes and cache_seqlens stay the same; call get_mla_metadata() "
                "for a new batch or shape")

    # -- one call -------------------------------------------------------------------------

    def _run(self, q: Array, k_cache: Array, block_table: Optional[Array],
             cache_seqlens: Optional[Array], head_dim_v: int, softmax_scale: Optional[float],
             causal: bool, is_fp8_kvcache: bool, indices: Optional[Array],
             attn_sink: Optional[Array], extra_k_cache: Optional[Array],
             extra_indices: Optional[Array], topk_length: Optional[Array],
             extra_topk_length: Optional[Array]) -> Tuple[Array, Array]:
        adapter = adapter_for(q)
        if self.have_initialized:
            try:
                config = self._config(q, k_cache, head_dim_v, causal, is_fp8_kvcache, indices,
                                      extra_k_cache, extra_indices, adapter)
            except (AttributeError, IndexError):  # not an array: let the full checks say so
                self._first_config(q, k_cache, head_dim_v, causal, is_fp8_kvcache, indices,
                                   attn_sink, extra_k_cache, extra_indices, topk_length,
                                   extra_topk_length, adapter)
                raise
            if config != self.config:
                self._check(config)
        else:
            config = self._first_config(q, k_cache, head_dim_v, causal, is_fp8_kvcache,
                                        indices, attn_sink, extra_k_cache, extra_indices,
                                        topk_length, extra_topk_length, adapter)
        stream = adapter.stream(q)
        if not self.have_initialized:
            self._initialize(config, q, k_cache, cache_seqlens, stream)
        if config.topk is not None:
            plan = None
            if self._sparse_key is not None:
                try:
                    plan = self._plan = _core.sparse_plans.get(self._sparse_key, stream)
                except _ERRORS:
                    plan = None  # _sparse_eager's argument checks say what is wrong
            try:
                return _sparse_eager(q, k_cache, indices, topk_length, attn_sink, extra_k_cache,
                                     extra_indices, extra_topk_length, head_dim_v,
                                     softmax_scale, stream=stream, plan=plan)
            except _ERRORS as e:
                raise _core.renamed(e, _NAMES) from None
        b, s_q, h_q = config.b, config.s_q, config.h_q
        assert self._plan is not None  # made by _initialize for dense calls
        out = adapter.empty(q, (b, s_q, h_q, head_dim_v), ACT)
        lse = adapter.empty(q, (b, h_q, s_q), F32)
        try:
            _C.dense_decode(self._plan, q, k_cache, block_table, cache_seqlens, out, lse,
                            head_dim_v, softmax_scale or 0.0, causal, stream)
        except _ERRORS as e:
            raise _core.renamed(e, _NAMES) from None
        if isinstance(adapter, DLPackAdapter):
            return adapter.wrap(out, q), adapter.wrap(lse, q)
        return out, lse

    def _decode_eager(self, q: Array, k_cache: Array, block_table: Array,
                      cache_seqlens: Array, head_dim_v: int, softmax_scale: float,
                      causal: bool, is_fp8: bool) -> Tuple[Array, Array]:
        """The torch op's implementation (see _torch_ops)."""
        return self._run(q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale,
                         causal, is_fp8, None, None, None, None, None, None)

    def _sparse_decode_eager(self, q: Array, k_cache: Array, indices: Array,
                             topk_length: Optional[Array], attn_sink: Optional[Array],
                             extra_k_cache: Optional[Array], extra_indices: Optional[Array],
                             extra_topk_length: Optional[Array], head_dim_v: int,
                             softmax_scale: float) -> Tuple[Array, Array]:
        """The sparse torch op's implementation (see _torch_ops)."""
        is_fp8 = dtype_name(k_cache) in ("float8_e4m3fn", "uint8")
        return self._run(q, k_cache, None, None, head_dim_v, softmax_scale, False, is_fp8,
                         indices, attn_sink, extra_k_cache, extra_indices, topk_length,
                         extra_topk_length)

    @staticmethod
    def _config(q: Array, k_cache: Array, head_dim_v: int, causal: bool, is_fp8: bool,
                indices: Optional[Array], extra_k_cache: Optional[Array],
                extra_indices: Optional[Array], adapter: Any) -> SchedConfig:
        qs = q.shape
        ks = k_cache.shape
        if len(qs) != 4 or len(ks) != 4:
            shape_of(q, "q", 4, "[b, s_q, h_q, d]")
            shape_of(k_cache, "k_cache", 4, "[num_blocks, page_block_size, h_k, d]")
        return SchedConfig(
            qs[0], qs[1], qs[2], ks[1], ks[2], bool(causal), bool(is_fp8),
            None if indices is None else indices.shape[-1],
            None if extra_k_cache is None else extra_k_cache.shape[1],
            None if extra_indices is None else extra_indices.shape[-1],
            head_dim_v, adapter.device(q))

    def _first_config(self, q: Array, k_cache: Array, head_dim_v: int, causal: bool,
                      is_fp8: bool, indices: Optional[Array], attn_sink: Optional[Array],
                      extra_k_cache: Optional[Array], extra_indices: Optional[Array],
                      topk_length: Optional[Array], extra_topk_length: Optional[Array],
                      adapter: Any) -> SchedConfig:
        """Sanity checks done once per scheduling object, as FlashMLA does."""
        shape_of(q, "q", 4, "[b, s_q, h_q, d]")
        if k_cache is None:
            raise TypeError("k_cache: is required, got None")
        shape_of(k_cache, "k_cache", 4, "[num_blocks, page_block_size, h_k, d]")
        if indices is not None:
            shape_of(indices, "indices", 3, "[b, s_q, topk]")
        if extra_indices is not None:
            shape_of(extra_indices, "extra_indices_in_kvcache", 3, "[b, s_q, extra_topk]")
        if extra_k_cache is not None:
            shape_of(extra_k_cache, "extra_k_cache", 4, "[num_blocks, page_block_size, 1, d]")
        if not isinstance(head_dim_v, int) or isinstance(head_dim_v, bool):
            raise TypeError(f"head_dim_v: expected an int, got {type(head_dim_v).__name__}")
        h_q, h_k = q.shape[2], k_cache.shape[2]
        if h_k < 1 or h_q % h_k != 0:
            raise ValueError(f"k_cache: h_k (dimension 2) = {h_k} must divide h_q = {h_q}")
        fp8_dtype = dtype_name(k_cache) in ("float8_e4m3fn", "uint8")
        if bool(is_fp8) != fp8_dtype:
            raise TypeError(
                f"k_cache: is_fp8_kvcache={bool(is_fp8)} but k_cache has dtype "
                f"{dtype_name(k_cache)} (the FP8 cache is float8_e4m3fn or uint8, 656 bytes "
                "per token)")
        if indices is None:
            for name, value in (("attn_sink", attn_sink), ("extra_k_cache", extra_k_cache),
                                ("extra_indices_in_kvcache", extra_indices),
                                ("topk_length", topk_length),
                                ("extra_topk_length", extra_topk_length)):
                if value is not None:
                    raise ValueError(f"{name}: is only used by sparse attention (with indices)")
        elif causal:
            raise ValueError("causal: must be False with indices (sparse attention)")
        return self._config(q, k_cache, head_dim_v, causal, is_fp8, indices, extra_k_cache,
                            extra_indices, adapter)


def _int_arg(name: str, value: Any, low: int) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if value < low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")
    return value


def get_mla_metadata(cache_seqlens: Optional[Array] = None,
                     num_q_tokens_per_head_k: Optional[int] = None,
                     num_heads_k: Optional[int] = None, num_heads_q: Optional[int] = None,
                     is_fp8_kvcache: bool = False, topk: Optional[int] = None,
                     **kwargs: Any) -> Tuple[FlashMLASchedMeta, None]:
    """A scheduling object for :func:`flash_mla_with_kvcache`: ``(FlashMLASchedMeta, None)``.

    Without ``topk`` the object is empty and filled by its first call (the arguments, those of
    FlashMLA's older interface, are then not needed and ignored; ``get_mla_metadata()`` works).

    With ``topk`` (token-sparse decode, FlashMLA's scheduler treating every query as attending
    ``topk`` tokens) the object carries the sparse plan for that shape, made now (on CUDA this
    allocates) for the current stream of ``cache_seqlens``' device, so that the decode calls on
    that stream, and a CUDA graph capturing them, allocate only their outputs.

    Args:
        cache_seqlens: ``[b]`` int32 on the decode's device (only its length and device are
            used for sparse plans).
        num_q_tokens_per_head_k: ``s_q * num_heads_q // num_heads_k``.
        num_heads_k: 1 (sparse attention has one KV head).
        num_heads_q: h_q; required with ``topk``.
        is_fp8_kvcache: accepted for compatibility (the plan does not depend on it).
        topk: index slots per query, ``indices.shape[-1]``.

    The plan assumes ``head_dim_v = 512`` and no extra cache: FlashMLA's metadata does not know
    ``extra_topk``, so a first call with ``extra_k_cache`` (or another ``head_dim_v``) makes the
    plan for its ``topk + extra_topk`` then (once per shape and stream; keep that first call
    out of CUDA-graph capture). A call whose ``b``, ``s_q``, ``h_q`` or device differ from
    these arguments raises ValueError naming ``tile_scheduler_metadata``. Other keyword
    arguments of FlashMLA versions are accepted and ignored.
    """
    del kwargs, is_fp8_kvcache
    meta = FlashMLASchedMeta()
    if topk is None:
        return meta, None
    topk = _int_arg("topk", topk, 1)
    if cache_seqlens is None:
        raise TypeError("cache_seqlens: is required with topk (its length is the batch size)")
    if num_heads_q is None:
        raise ValueError("num_heads_q: is required with topk")
    h_q = _int_arg("num_heads_q", num_heads_q, 1)
    h_k = 1 if num_heads_k is None else _int_arg("num_heads_k", num_heads_k, 1)
    if h_k != 1:
        raise ValueError(f"num_heads_k: must be 1 with topk (sparse attention has one KV "
                         f"head), got {h_k}")
    if num_q_tokens_per_head_k is None:
        raise ValueError("num_q_tokens_per_head_k: is required with topk (s_q * num_heads_q)")
    tokens = _int_arg("num_q_tokens_per_head_k", num_q_tokens_per_head_k, 1)
    if tokens % h_q != 0:
        raise ValueError(f"num_q_tokens_per_head_k: {tokens} is not s_q * num_heads_q "
                         f"// num_heads_k for num_heads_q = {h_q}, num_heads_k = 1")
    (b,) = shape_of(cache_seqlens, "cache_seqlens", 1, "[b]")
    if b < 1:
        raise ValueError("cache_seqlens: expected at least one sequence, got shape (0,)")
    adapter = adapter_for(cache_seqlens, "cache_seqlens")
    device = adapter.device(cache_seqlens)
    meta._hint = SparseHint(int(b), tokens // h_q, h_q, topk, device)
    key: _core.SparseKey = (int(b), tokens // h_q, h_q, topk, 512, *device)
    try:
        meta._plan = _core.sparse_plans.get(key, adapter.stream(cache_seqlens))
    except _ERRORS as e:
        raise _core.renamed(e, {"plan": "cache_seqlens"}) from None
    return meta, None


def flash_mla_with_kvcache(
    q: Array,
    k_cache: Array,
    block_table: Optional[Array],
    cache_seqlens: Optional[Array],
    head_dim_v: int,
    tile_scheduler_metadata: FlashMLASchedMeta,
    num_splits: None = None,
    softmax_scale: Optional[float] = None,
    causal: bool = False,
    is_fp8_kvcache: bool = False,
    indices: Optional[Array] = None,
    attn_sink: Optional[Array] = None,
    extra_k_cache: Optional[Array] = None,
    extra_indices_in_kvcache: Optional[Array] = None,
    topk_length: Optional[Array] = None,
    extra_topk_length: Optional[Array] = None,
) -> Tuple[Array, Array]:
    """MLA decode over a paged KV cache, as ``flash_mla.flash_mla_with_kvcache``.

    Args:
        q: ``[b, s_q, h_q, d]`` bf16/fp16 (d = 576 for DeepSeek; 512 also works).
        k_cache: ``[num_blocks, page_block_size, h_k, d]`` dtype of q; with
            ``is_fp8_kvcache`` the FP8 cache ``[num_blocks, page_block_size, 1, 656]``
            float8_e4m3fn/uint8 ("FP8 with scale").
        block_table: ``[b, max_blocks_per_seq]`` int32 (dense attention; None with indices).
        cache_seqlens: ``[b]`` int32 (dense attention; None with indices).
        head_dim_v: dv (512).
        tile_scheduler_metadata: from :func:`get_mla_metadata`.
        num_splits: must be None.
        softmax_scale: None for ``1/sqrt(d)``.
        causal: causal mask for s_q > 1 (dense only).
        is_fp8_kvcache: whether ``k_cache`` is the FP8 cache.
        indices: ``[b, s_q, topk]`` int32 token indices (``page * page_block_size + offset``,
            -1 skipped): token-sparse attention, no block table. ``k_cache`` then has one KV
            head; bf16 and FP8 caches both work.
        attn_sink: ``[h_q]`` float32 (sparse only).
        extra_k_cache: a second cache, stored like ``k_cache`` (sparse only).
        extra_indices_in_kvcache: ``[b, s_q, extra_topk]`` int32 into ``extra_k_cache``.
        topk_length, extra_topk_length: ``[b]`` int32: only the first so many indices count.

    Sparse calls run with the sparse plan of their shape (made by ``get_mla_metadata(...,
    topk=...)`` or by the first call; see :func:`get_mla_metadata`), so after that first call
    they allocate only the outputs and can be captured in a CUDA graph.

    Returns:
        ``(out [b, s_q, h_q, head_dim_v] dtype of q, softmax_lse [b, h_q, s_q] float32)``,
        as arrays of q's framework on q's device.
    """
    meta = tile_scheduler_metadata
    if type(meta) is not FlashMLASchedMeta:
        raise TypeError("tile_scheduler_metadata: expected the object get_mla_metadata() "
                        f"returns, got {type(meta).__qualname__}")
    if num_splits is not None:
        raise ValueError("num_splits: must be None (the schedule lives in "
                         "tile_scheduler_metadata)")
    if _core.compiling():
        from ._torch_ops import ops

        scale = float(softmax_scale or 0.0)
        if indices is not None:
            return ops().sparse_decode(q, k_cache, indices, topk_length, attn_sink,
                                       extra_k_cache, extra_indices_in_kvcache,
                                       extra_topk_length, head_dim_v, scale, meta._id)
        return ops().dense_decode(q, k_cache, block_table, cache_seqlens, meta._id,
                                  head_dim_v, scale, causal, is_fp8_kvcache)
    return meta._run(q, k_cache, block_table, cache_seqlens, head_dim_v, softmax_scale, causal,
                     is_fp8_kvcache, indices, attn_sink, extra_k_cache, extra_indices_in_kvcache,
                     topk_length, extra_topk_length)
