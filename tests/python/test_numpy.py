"""Correctness on the CPU with numpy arrays, against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest

import flashmla
from reference import (assert_close_lse, assert_close_out, dense_case, dense_decode_ref,
                       dequantize_fp8_ref, quantize_fp8_ref, sparse_decode_ref)


def run_compat(case, **kwargs):
    meta, none = flashmla.get_mla_metadata(case.cache_seqlens, 4, 1)
    assert none is None
    return flashmla.flash_mla_with_kvcache(case.q, case.kv_cache, case.block_table,
                                           case.cache_seqlens, kwargs.pop("head_dim_v", 512),
                                           meta, **kwargs)


@pytest.mark.parametrize("dtype_name", ["bf16", "fp16"])
@pytest.mark.parametrize("seqlens,s_q,h_q,h_kv,page,causal", [
    ([37, 1, 130], 1, 4, 1, 16, False),
    ([64, 200], 2, 8, 2, 64, True),
    ([0, 9, 33], 3, 4, 4, 8, True),      # empty sequence, causal with s_k < s_q
    ([100], 1, 16, 1, 33, False),        # page size that is not a power of two
])
def test_dense_matches_reference(rng, dtype_name, seqlens, s_q, h_q, h_kv, page, causal):
    if dtype_name == "bf16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    else:
        dtype = np.float16
    case = dense_case(rng, dtype, seqlens, s_q=s_q, h_q=h_q, h_kv=h_kv, page=page)
    out, lse = run_compat(case, causal=causal)
    assert isinstance(out, np.ndarray) and out.dtype == case.q.dtype
    assert out.shape == (len(seqlens), s_q, h_q, 512)
    assert lse.dtype == np.float32 and lse.shape == (len(seqlens), h_q, s_q)
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens, causal=causal)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)


def test_empty_sequence_gives_zero_and_inf(rng, bf16):
    case = dense_case(rng, bf16, [0, 5])
    out, lse = run_compat(case)
    assert (np.asarray(out[0]).astype(np.float32) == 0).all()
    assert np.isposinf(lse[0]).all()
    assert np.isfinite(lse[1]).all()


def test_softmax_scale_d512_and_head_dim_v(rng, bf16):
    case = dense_case(rng, bf16, [40, 77], d=512)
    out, lse = run_compat(case, softmax_scale=0.1, head_dim_v=256)
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens, head_dim_v=256, softmax_scale=0.1)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)


def test_strided_inputs_are_read_in_place(rng, bf16):
    case = dense_case(rng, bf16, [50, 20], h_q=4)
    wide = np.zeros((2, 1, 8, 576), bf16)
    wide[:, :, ::2] = case.q
    q = wide[:, :, ::2]  # head stride 1152: not contiguous, last dim contiguous
    assert not q.flags.c_contiguous
    info = flashmla._C.view_info(q)
    assert info[0] == q.__array_interface__["data"][0] and info[3] == [4608, 4608, 1152, 1]
    out, lse = run_compat(case)  # contiguous baseline
    meta, _ = flashmla.get_mla_metadata()
    out2, lse2 = flashmla.flash_mla_with_kvcache(q, case.kv_cache, case.block_table,
                                                 case.cache_seqlens, 512, meta)
    np.testing.assert_array_equal(np.asarray(out2).astype(np.float32),
                                  np.asarray(out).astype(np.float32))
    np.testing.assert_array_equal(lse2, lse)


def test_metadata_is_reused_across_layers(rng, bf16):
    case = dense_case(rng, bf16, [70, 3, 129], h_q=8)
    meta, _ = flashmla.get_mla_metadata()
    assert not meta.have_initialized
    for _layer in range(3):
        kv = rng.standard_normal(case.kv_cache.shape).astype(bf16)
        out, lse = flashmla.flash_mla_with_kvcache(case.q, kv, case.block_table,
                                                   case.cache_seqlens, 512, meta)
        ref_out, ref_lse = dense_decode_ref(case.q, kv, case.block_table, case.cache_seqlens)
        assert_close_out(out, ref_out)
        assert_close_lse(lse, ref_lse)
    assert meta.have_initialized and meta.config.b == 3 and meta.config.h_q == 8


def test_decoder_api(rng, bf16):
    case = dense_case(rng, bf16, [33, 80], s_q=2, h_q=4, page=16)
    decoder = flashmla.MLADecoder(batch_size=2, num_heads_q=4, s_q=2, page_block_size=16,
                                  causal=True)
    assert not decoder.planned and "planned=False" in repr(decoder)
    assert decoder.plan(case.cache_seqlens) is decoder and decoder.planned
    out, lse = decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens)
    ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens, causal=True)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)

    # Preallocated outputs, lse with other strides: written in place, returned as given.
    out_buf = np.full((2, 2, 4, 512), 7, bf16)
    lse_buf = np.full((2, 2, 4), 7, np.float32).transpose(0, 2, 1)  # [b, h_q, s_q] view
    o, s = decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens, out=out_buf,
                   lse=lse_buf)
    assert o is out_buf and s is lse_buf
    assert_close_out(out_buf, ref_out)
    assert_close_lse(lse_buf, ref_lse)


def test_decoder_replans_each_step(rng, bf16):
    decoder = flashmla.MLADecoder(batch_size=2, num_heads_q=4, page_block_size=16)
    for seqlens in ([10, 20], [11, 21], [12, 90]):
        case = dense_case(rng, bf16, seqlens)
        decoder.plan(case.cache_seqlens)
        out, lse = decoder(case.q, case.kv_cache, case.block_table, case.cache_seqlens)
        ref_out, ref_lse = dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                            case.cache_seqlens)
        assert_close_out(out, ref_out)
        assert_close_lse(lse, ref_lse)


def test_fp8_quantize_matches_reference(rng, bf16):
    kv = (rng.standard_normal((3, 16, 1, 576)) * rng.uniform(0.01, 100, (3, 16, 1, 1))
          ).astype(bf16)
    kv[0, 0, 0, :128] = 0  # an all-zero group: scale 2^ceil(log2(1e-4))
    cache = flashmla.quantize_kv_cache_fp8(kv)
    assert cache.dtype == np.uint8 and cache.shape == (3, 16, 1, 656)
    np.testing.assert_array_equal(cache, quantize_fp8_ref(kv))
    back = flashmla.dequantize_kv_cache_fp8(cache)
    assert back.dtype == bf16 and back.shape == (3, 16, 1, 576)
    np.testing.assert_array_equal(np.asarray(back).astype(np.float64),
                                  dequantize_fp8_ref(cache).astype(bf16).astype(np.float64))
    # ml_dtypes' float8_e4m3fn view of the cache is accepted too.
    import ml_dtypes
    back2 = flashmla.dequantize_kv_cache_fp8(cache.view(ml_dtypes.float8_e4m3fn))
    np.testing.assert_array_equal(np.asarray(back2).view(np.uint16),
                                  np.asarray(back).view(np.uint16))


def test_dense_with_fp8_cache(rng, bf16):
    case = dense_case(rng, bf16, [45, 130, 0], h_q=8, page=64)
    cache = flashmla.quantize_kv_cache_fp8(case.kv_cache)
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(case.q, cache, case.block_table,
                                               case.cache_seqlens, 512, meta,
                                               is_fp8_kvcache=True)
    ref_out, ref_lse = dense_decode_ref(case.q, dequantize_fp8_ref(cache), case.block_table,
                                        case.cache_seqlens)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)


def _sparse_inputs(rng, bf16, b=2, s_q=2, h_q=8, page=16, num_blocks=6, topk=24):
    q = (rng.standard_normal((b, s_q, h_q, 576)) * 0.5).astype(bf16)
    kv = rng.standard_normal((num_blocks, page, 1, 576)).astype(bf16)
    rows = num_blocks * page
    indices = np.stack([np.stack([rng.choice(rows, topk, replace=False) for _ in range(s_q)])
                        for _ in range(b)]).astype(np.int32)
    indices[0, 0, ::5] = -1
    return q, kv, indices


@pytest.mark.parametrize("fp8", [False, True])
def test_sparse_matches_reference(rng, bf16, fp8):
    q, kv, indices = _sparse_inputs(rng, bf16)
    extra_kv = rng.standard_normal((3, 32, 1, 576)).astype(bf16)
    extra_indices = rng.integers(-1, 96, size=(2, 2, 10)).astype(np.int32)
    topk_length = np.array([24, 7], np.int32)
    extra_topk_length = np.array([3, 10], np.int32)
    attn_sink = np.array([0.5, -1, np.inf, 2, 0, 0, -np.inf, 1], np.float32)
    cache = flashmla.quantize_kv_cache_fp8(kv) if fp8 else kv
    extra_cache = flashmla.quantize_kv_cache_fp8(extra_kv) if fp8 else extra_kv
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(
        q, cache, None, None, 512, meta, is_fp8_kvcache=fp8, indices=indices,
        attn_sink=attn_sink, extra_k_cache=extra_cache, extra_indices_in_kvcache=extra_indices,
        topk_length=topk_length, extra_topk_length=extra_topk_length)
    deq = (lambda c: dequantize_fp8_ref(c)) if fp8 else (lambda c: c)
    ref_out, ref_lse = sparse_decode_ref(q, deq(cache), indices, topk_length, attn_sink,
                                         deq(extra_cache), extra_indices, extra_topk_length)
    assert_close_out(out, ref_out)
    assert_close_lse(lse, ref_lse)


def test_sparse_pythonic_and_all_invalid(rng, bf16):
    q, kv, indices = _sparse_inputs(rng, bf16, b=1, s_q=1)
    indices[0, 0, :] = -1
    out, lse = flashmla.sparse_decode(q, kv, indices)
    assert (np.asarray(out).astype(np.float32) == 0).all() and np.isposinf(lse).all()


def test_zero_copy_numpy_views(bf16):
    x = np.zeros((2, 3, 4, 576), bf16)
    ptr, dtype, shape, strides, device = flashmla._C.view_info(x)
    assert ptr == x.__array_interface__["data"][0]
    assert (dtype, shape, strides, device) == ("bf16", [2, 3, 4, 576],
                                               [6912, 2304, 576, 1], "cpu")
    assert flashmla._C.view_info(np.zeros(3, np.float16))[1] == "fp16"
    assert flashmla._C.view_info(np.zeros(3, np.int32))[1] == "int32"
