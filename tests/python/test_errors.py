"""Invalid inputs raise ValueError / TypeError naming the argument; nothing crashes."""

from __future__ import annotations

import numpy as np
import pytest

import flashmla
from reference import dense_case


@pytest.fixture
def case(rng):
    return dense_case(rng, np.float16, [20, 33], h_q=4, page=16)


def call(case, meta=None, **overrides):
    args = dict(q=case.q, k_cache=case.kv_cache, block_table=case.block_table,
                cache_seqlens=case.cache_seqlens, head_dim_v=512,
                tile_scheduler_metadata=meta or flashmla.get_mla_metadata()[0])
    args.update(overrides)
    return flashmla.flash_mla_with_kvcache(**args)


@pytest.mark.parametrize("name,value,error,match", [
    ("q", lambda c: c.q[:, :, :, :100], ValueError, "q: .*576 or 512"),
    ("q", lambda c: c.q[0], ValueError, "q: expected 4 dimensions"),
    ("q", lambda c: c.q.astype(np.float64), TypeError, "q: dtype float64 is not supported"),
    ("q", lambda c: c.q.view(np.uint16), TypeError, "q: .*not taken as bf16"),
    ("q", lambda c: c.q.astype(np.float32), TypeError, "q: expected dtype bf16 or fp16"),
    ("q", lambda c: np.asfortranarray(c.q), ValueError, "q: .*last dimension must be contiguous"),
    ("q", lambda c: None, TypeError, "q: is required"),
    ("q", lambda c: c.q.tolist(), TypeError, "q: expected a tensor or array"),
    ("k_cache", lambda c: c.kv_cache[..., :512], ValueError, "k_cache: .*d, as in q"),
    ("k_cache", lambda c: c.kv_cache.astype(np.float32), TypeError, "k_cache: expected the dtype"),
    ("k_cache", lambda c: c.kv_cache[:, :, :, ::-1], ValueError, "k_cache: "),
    ("block_table", lambda c: c.block_table.astype(np.int64), TypeError,
     "block_table: dtype int64 is not supported"),
    ("block_table", lambda c: c.block_table[:1], ValueError, "block_table: expected dimension 0"),
    ("block_table", lambda c: np.where(c.block_table >= 0, 10_000, 10_000).astype(np.int32),
     ValueError, "block_table: entry"),
    ("block_table", lambda c: c.block_table[:, :1], ValueError, "block_table: sequence"),
    ("cache_seqlens", lambda c: c.cache_seqlens.astype(np.float32), TypeError,
     "cache_seqlens: expected dtype int32"),
    ("cache_seqlens", lambda c: np.array([20, -1], np.int32), ValueError, "cache_seqlens: "),
    ("cache_seqlens", lambda c: None, TypeError, "cache_seqlens: is required"),
    ("head_dim_v", lambda c: 600, ValueError, "head_dim_v: must be in"),
    ("head_dim_v", lambda c: 512.0, TypeError, "head_dim_v: expected an int"),
    ("softmax_scale", lambda c: -1.0, ValueError, "softmax_scale: "),
    ("num_splits", lambda c: np.zeros(3, np.int32), ValueError, "num_splits: must be None"),
    ("tile_scheduler_metadata", lambda c: object(), TypeError, "tile_scheduler_metadata: "),
    ("is_fp8_kvcache", lambda c: True, TypeError, "k_cache: is_fp8_kvcache=True"),
    ("attn_sink", lambda c: np.zeros(4, np.float32), ValueError, "attn_sink: is only used"),
])
def test_invalid_argument(case, name, value, error, match):
    with pytest.raises(error, match=match):
        call(case, **{name: value(case)})


def test_head_dim_v_too_large_for_d512(rng):
    case = dense_case(rng, np.float16, [5], d=512)
    with pytest.raises(ValueError, match="head_dim_v"):
        call(case, head_dim_v=576)


def test_h_kv_must_divide_h_q(rng):
    case = dense_case(rng, np.float16, [5, 6], h_q=4, h_kv=3)
    with pytest.raises(ValueError, match="k_cache: h_k \\(dimension 2\\) = 3 must divide h_q = 4"):
        call(case)


def test_metadata_reused_with_other_batch_raises(case, rng):
    meta, _ = flashmla.get_mla_metadata()
    call(case, meta)
    other = dense_case(rng, np.float16, [20, 33, 4], h_q=4, page=16)
    with pytest.raises(ValueError, match=r"tile_scheduler_metadata: .*b=2 \(now 3\)"):
        call(other, meta)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: .*causal"):
        call(case, meta, causal=True)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: .*h_q=4 \\(now 8\\)"):
        call(dense_case(rng, np.float16, [20, 33], h_q=8, page=16), meta)


def test_metadata_reused_with_invalid_arguments(case):
    meta, _ = flashmla.get_mla_metadata()
    call(case, meta)
    with pytest.raises(TypeError, match="k_cache: is required, got None"):
        call(case, meta, k_cache=None)
    with pytest.raises(TypeError, match="k_cache: expected a tensor or array"):
        call(case, meta, k_cache=[1, 2])
    with pytest.raises(ValueError, match="q: expected 4 dimensions"):
        call(case, meta, q=case.q[0])


def test_metadata_reused_with_other_seqlens_raises_on_cpu(case):
    meta, _ = flashmla.get_mla_metadata()
    call(case, meta)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: .*cache_seqlens"):
        call(case, meta, cache_seqlens=np.array([21, 33], np.int32))


def test_sparse_errors(rng):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    q = np.zeros((1, 1, 4, 576), ml_dtypes.bfloat16)
    kv = np.zeros((2, 16, 1, 576), ml_dtypes.bfloat16)
    indices = np.zeros((1, 1, 8), np.int32)
    meta = flashmla.get_mla_metadata()[0]
    with pytest.raises(ValueError, match="causal: must be False"):
        flashmla.flash_mla_with_kvcache(q, kv, None, None, 512, meta, causal=True,
                                        indices=indices)
    with pytest.raises(ValueError, match="indices: entry"):
        flashmla.sparse_decode(q, kv, np.full((1, 1, 8), 32, np.int32))
    with pytest.raises(ValueError, match="indices: expected 3 dimensions"):
        flashmla.flash_mla_with_kvcache(q, kv, None, None, 512, flashmla.get_mla_metadata()[0],
                                        indices=indices[0])
    with pytest.raises(ValueError, match="extra_k_cache: is required"):
        flashmla.flash_mla_with_kvcache(q, kv, None, None, 512, flashmla.get_mla_metadata()[0],
                                        indices=indices, extra_indices_in_kvcache=indices)
    with pytest.raises(ValueError, match="attn_sink: expected dimension 0"):
        flashmla.sparse_decode(q, kv, indices, attn_sink=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="topk_length: entry"):
        flashmla.sparse_decode(q, kv, indices, topk_length=np.array([9], np.int32))


def test_decoder_errors(case):
    with pytest.raises(ValueError, match="plan: h_kv = 3 must be >= 1 and divide h_q"):
        flashmla.MLADecoder(batch_size=2, num_heads_q=4, num_heads_kv=3)
    with pytest.raises(ValueError, match="device: expected"):
        flashmla.MLADecoder(batch_size=2, num_heads_q=4, device="tpu")
    decoder = flashmla.MLADecoder(batch_size=2, num_heads_q=4, page_block_size=16)
    with pytest.raises(ValueError, match="plan: update"):
        decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens)
    with pytest.raises(ValueError, match="cache_seqlens: expected dimension 0"):
        decoder.plan(np.zeros(3, np.int32))
    decoder.plan(case.cache_seqlens)
    with pytest.raises(ValueError, match="plan: was made for b=2.*page_block_size=16.*"
                                         "page_block_size=8"):
        decoder(case.q, case.kv_cache.reshape(-1, 8, 1, 576), case.block_table,
                case.cache_seqlens)
    with pytest.raises(ValueError, match="out: expected dimension 3"):
        decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens,
                out=np.empty((2, 1, 4, 576), np.float16))
    with pytest.raises(TypeError, match="lse: expected dtype fp32"):
        decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens,
                lse=np.empty((2, 4, 1), np.float16))
    readonly = np.empty((2, 1, 4, 512), np.float16)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="out: is read-only"):
        decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens, out=readonly)
    with pytest.raises(TypeError, match="stream: expected"):
        decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens, stream="s")


def test_quantize_errors(rng):
    with pytest.raises(TypeError, match="kv_cache: expected dtype bf16"):
        flashmla.quantize_kv_cache_fp8(np.zeros((1, 4, 1, 576), np.float16))
    with pytest.raises(ValueError, match="kv_cache: expected 4 dimensions"):
        flashmla.quantize_kv_cache_fp8(np.zeros((4, 1, 576), np.float16))
    with pytest.raises(ValueError, match="fp8_cache: expected dimension 3"):
        flashmla.dequantize_kv_cache_fp8(np.zeros((1, 4, 1, 576), np.uint8))


def test_cuda_without_backend_is_not_implemented():
    if flashmla.built_with_cuda():
        pytest.skip("this build has the CUDA backend")
    with pytest.raises(NotImplementedError, match="no CUDA backend"):
        flashmla.MLADecoder(batch_size=1, num_heads_q=4, device="cuda")


def test_prefill_entry_points_are_not_implemented():
    with pytest.raises(NotImplementedError, match="flash_mla_sparse_fwd"):
        flashmla.flash_mla_sparse_fwd()
