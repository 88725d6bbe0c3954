"""float64 numpy references for the tests, written from MLA.md sections 2-4 (independent of the
C++ code), and random test cases."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

try:
    import ml_dtypes
except ImportError:  # the bf16 and fp8 tests skip without it
    ml_dtypes = None

# MLA.md section 2: |out - ref| <= 8e-4 + 2/128 |ref|; lse within 8/65536 relative.
OUT_ATOL, OUT_RTOL, LSE_RTOL = 8e-4, 2.0 / 128, 8.0 / 65536


def assert_close_out(out: Any, ref: np.ndarray, atol: float = OUT_ATOL,
                     rtol: float = OUT_RTOL) -> None:
    got = np.asarray(out).astype(np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    err = np.abs(got - ref)
    bound = atol + rtol * np.abs(ref)
    bad = err > bound
    assert not bad.any(), (f"{bad.sum()} of {bad.size} elements off; worst error "
                           f"{err.max():.3g} at {np.unravel_index(err.argmax(), err.shape)}")


def assert_close_lse(lse: Any, ref: np.ndarray, rtol: float = LSE_RTOL) -> None:
    got = np.asarray(lse).astype(np.float64)
    assert got.shape == ref.shape, (got.shape, ref.shape)
    inf = np.isinf(ref)
    assert np.array_equal(np.isinf(got), inf), "lse: +inf where no key is seen, only there"
    assert (got[inf] > 0).all()
    err = np.abs(got[~inf] - ref[~inf])
    assert (err <= rtol * np.maximum(np.abs(ref[~inf]), 1.0)).all(), err.max()


def _softmax_rows(scores: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(probabilities, lse) over the last axis of `scores` (at least one entry)."""
    m = scores.max(axis=-1, keepdims=True)
    p = np.exp(scores - m)
    s = p.sum(axis=-1, keepdims=True)
    return p / s, (m + np.log(s))[..., 0]


def dense_decode_ref(q: Any, kv_cache: Any, block_table: Any, cache_seqlens: Any,
                     head_dim_v: int = 512, softmax_scale: Optional[float] = None,
                     causal: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """MLA.md section 2: out [b, s_q, h_q, dv] and lse [b, h_q, s_q], float64."""
    qf = np.asarray(q).astype(np.float64)
    kv = np.asarray(kv_cache).astype(np.float64)
    bt = np.asarray(block_table)
    b, s_q, h_q, d = qf.shape
    _, page, h_kv, _ = kv.shape
    scale = softmax_scale if softmax_scale else 1.0 / np.sqrt(d)
    group = h_q // h_kv
    out = np.zeros((b, s_q, h_q, head_dim_v))
    lse = np.full((b, h_q, s_q), np.inf)
    for i in range(b):
        s_k = int(cache_seqlens[i])
        t = np.arange(s_k)
        rows = kv[bt[i, t // page], t % page]  # [s_k, h_kv, d]
        for h in range(h_q):
            keys = rows[:, h // group, :]
            scores = scale * (qf[i, :, h, :] @ keys.T)  # [s_q, s_k]
            for j in range(s_q):
                n = s_k - s_q + j + 1 if causal else s_k
                n = max(0, min(n, s_k))
                if n == 0:
                    continue
                p, lse_ij = _softmax_rows(scores[j, :n])
                lse[i, h, j] = lse_ij
                out[i, j, h] = p @ keys[:n, :head_dim_v]
    return out, lse


def sparse_decode_ref(q: Any, kv_cache: Any, indices: Any, topk_length: Any = None,
                      attn_sink: Any = None, extra_kv_cache: Any = None,
                      extra_indices: Any = None, extra_topk_length: Any = None,
                      head_dim_v: int = 512, softmax_scale: Optional[float] = None
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """MLA.md section 4 on already-dequantized float caches [num_blocks, page, 1, d]."""
    qf = np.asarray(q).astype(np.float64)
    b, s_q, h_q, d = qf.shape
    flat = np.asarray(kv_cache).astype(np.float64).reshape(-1, d)
    extra_flat = (None if extra_kv_cache is None
                  else np.asarray(extra_kv_cache).astype(np.float64).reshape(-1, d))
    scale = softmax_scale if softmax_scale else 1.0 / np.sqrt(d)
    out = np.zeros((b, s_q, h_q, head_dim_v))
    lse = np.full((b, h_q, s_q), np.inf)

    def gather(table: np.ndarray, idx: np.ndarray, n: Optional[int]) -> np.ndarray:
        idx = idx[:n] if n is not None else idx
        return table[idx[idx >= 0]]

    for i in range(b):
        for j in range(s_q):
            n = None if topk_length is None else int(topk_length[i])
            rows = gather(flat, np.asarray(indices)[i, j], n)
            if extra_flat is not None:
                n2 = None if extra_topk_length is None else int(extra_topk_length[i])
                rows = np.concatenate([rows, gather(extra_flat, np.asarray(extra_indices)[i, j],
                                                    n2)])
            if len(rows) == 0:
                continue
            p, lse_ij = _softmax_rows(scale * (qf[i, j] @ rows.T))  # [h_q, n]
            o = p @ rows[:, :head_dim_v]
            if attn_sink is not None:
                sink = np.asarray(attn_sink, np.float64)
                with np.errstate(over="ignore"):
                    o = o / (1.0 + np.exp(sink - lse_ij))[:, None]
            out[i, j] = o
            lse[i, :, j] = lse_ij
    return out, lse


def quantize_fp8_ref(kv_bf16: np.ndarray) -> np.ndarray:
    """MLA.md section 3: [nb, page, 1, 576] bf16 -> [nb, page, 1, 656] uint8."""
    assert ml_dtypes is not None
    nb, page, h, _ = kv_bf16.shape
    x = kv_bf16.astype(np.float32)
    nope = x[..., :512].reshape(nb, page, h, 4, 128)
    amax = np.abs(nope).max(axis=-1)
    scale = np.exp2(np.ceil(np.log2(np.maximum(amax / 448.0, 1e-4)))).astype(np.float32)
    fp8 = (nope / scale[..., None]).astype(ml_dtypes.float8_e4m3fn)
    out = np.empty((nb, page, h, 656), np.uint8)
    out[..., :512] = fp8.view(np.uint8).reshape(nb, page, h, 512)
    out[..., 512:528] = scale.astype("<f4").view(np.uint8).reshape(nb, page, h, 16)
    out[..., 528:] = np.ascontiguousarray(kv_bf16[..., 512:]).view(np.uint8)
    return out


def dequantize_fp8_ref(cache: np.ndarray) -> np.ndarray:
    """MLA.md section 3: [nb, page, 1, 656] uint8 -> float64 [nb, page, 1, 576]."""
    assert ml_dtypes is not None
    raw = np.ascontiguousarray(np.asarray(cache).view(np.uint8))
    nb, page, h, _ = raw.shape
    fp8 = raw[..., :512].copy().view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    scale = raw[..., 512:528].copy().view("<f4").astype(np.float64)  # [nb, page, h, 4]
    rope = raw[..., 528:].copy().view(ml_dtypes.bfloat16).astype(np.float64)
    nope = (fp8.reshape(nb, page, h, 4, 128) * scale[..., None]).reshape(nb, page, h, 512)
    return np.concatenate([nope, rope], axis=-1)


@dataclass
class DenseCase:
    q: np.ndarray
    kv_cache: np.ndarray
    block_table: np.ndarray
    cache_seqlens: np.ndarray


def dense_case(rng: np.random.Generator, dtype: Any, seqlens: Sequence[int], s_q: int = 1,
               h_q: int = 4, h_kv: int = 1, d: int = 576, page: int = 16,
               spare_pages: int = 3) -> DenseCase:
    """Random q and paged cache; pages shuffled, unused block-table slots hold garbage ids."""
    b = len(seqlens)
    pages_per_seq = [(s + page - 1) // page for s in seqlens]
    max_pages = max(max(pages_per_seq), 1) + 1
    num_blocks = sum(pages_per_seq) + spare_pages
    perm = rng.permutation(num_blocks).astype(np.int32)
    block_table = rng.integers(-1000, 1000, size=(b, max_pages)).astype(np.int32)
    start = 0
    for i, n in enumerate(pages_per_seq):
        block_table[i, :n] = perm[start:start + n]
        start += n
    q = (rng.standard_normal((b, s_q, h_q, d)) * 0.5).astype(dtype)
    kv = rng.standard_normal((num_blocks, page, h_kv, d)).astype(dtype)
    return DenseCase(q, kv, block_table, np.asarray(seqlens, np.int32))


@dataclass
class SparseCase:
    q: np.ndarray
    kv_cache: np.ndarray
    indices: np.ndarray
    topk_length: Optional[np.ndarray] = None
    attn_sink: Optional[np.ndarray] = None
    extra_kv_cache: Optional[np.ndarray] = None
    extra_indices: Optional[np.ndarray] = None
    extra_topk_length: Optional[np.ndarray] = None

    def kwargs(self) -> dict:
        """The optional arguments, as flashmla.sparse_decode's keywords."""
        return dict(topk_length=self.topk_length, attn_sink=self.attn_sink,
                    extra_kv_cache=self.extra_kv_cache, extra_indices=self.extra_indices,
                    extra_topk_length=self.extra_topk_length)


def sparse_case(rng: np.random.Generator, dtype: Any, b: int = 2, s_q: int = 1, h_q: int = 8,
                topk: int = 24, page: int = 16, num_blocks: int = 6, extra_topk: int = 0,
                lengths: bool = False, sink: bool = False, kv_scale: float = 1.0) -> SparseCase:
    """Random sparse inputs: distinct indices per query with some -1 slots; optionally
    topk_length, an attn_sink (with +-inf entries) and an extra cache of extra_topk slots.
    Cache values are N(0, kv_scale^2)."""
    rows = num_blocks * page
    q = (rng.standard_normal((b, s_q, h_q, 576)) * 0.5).astype(dtype)
    kv = (rng.standard_normal((num_blocks, page, 1, 576)) * kv_scale).astype(dtype)
    indices = np.stack([np.stack([rng.choice(rows, topk, replace=False) for _ in range(s_q)])
                        for _ in range(b)]).astype(np.int32)
    indices[0, 0, ::5] = -1
    case = SparseCase(q, kv, indices)
    if lengths:
        case.topk_length = rng.integers(0, topk + 1, size=b).astype(np.int32)
        case.topk_length[0] = topk
    if sink:
        case.attn_sink = rng.standard_normal(h_q).astype(np.float32)
        case.attn_sink[0] = np.inf
        case.attn_sink[-1] = -np.inf
    if extra_topk:
        extra_blocks = 3
        case.extra_kv_cache = (rng.standard_normal((extra_blocks, 32, 1, 576)) *
                               kv_scale).astype(dtype)
        case.extra_indices = rng.integers(-1, extra_blocks * 32,
                                          size=(b, s_q, extra_topk)).astype(np.int32)
        if lengths:
            case.extra_topk_length = rng.integers(0, extra_topk + 1, size=b).astype(np.int32)
    return case
