"""Token-sparse decode with plans, on the CPU: MLASparseDecoder, the plan cache behind
flashmla.sparse_decode, FlashMLA's get_mla_metadata(..., topk=...) + flash_mla_with_kvcache,
the binding of sparse plans, and the errors of each. numpy arrays, and torch CPU tensors when
torch is importable."""

from __future__ import annotations

import numpy as np
import pytest

import flashmla
from flashmla import _core
from reference import (assert_close_lse, assert_close_out, dequantize_fp8_ref, sparse_case,
                       sparse_decode_ref)


@pytest.fixture(autouse=True)
def fresh_plan_cache():
    """Each test starts with an empty cache of sparse plans."""
    _core.sparse_plans.clear()
    yield
    _core.sparse_plans.clear()


def fp8_case(case):
    """`case` with its caches quantized to the FP8 cache (uint8 [.., 656])."""
    case.kv_cache = flashmla.quantize_kv_cache_fp8(case.kv_cache)
    if case.extra_kv_cache is not None:
        case.extra_kv_cache = flashmla.quantize_kv_cache_fp8(case.extra_kv_cache)
    return case


def reference(case, head_dim_v=512, softmax_scale=None):
    """float64 reference of `case` (FP8 caches dequantized as MLA.md section 3 says)."""
    def deq(cache):
        if cache is None or cache.shape[-1] != 656:
            return cache
        return dequantize_fp8_ref(cache)

    return sparse_decode_ref(case.q, deq(case.kv_cache), case.indices, case.topk_length,
                             case.attn_sink, deq(case.extra_kv_cache), case.extra_indices,
                             case.extra_topk_length, head_dim_v=head_dim_v,
                             softmax_scale=softmax_scale)


def check(out, lse, want):
    assert_close_out(out, want[0])
    assert_close_lse(lse, want[1])


# ---- MLASparseDecoder -------------------------------------------------------------------------

@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("s_q,extra_topk,lengths,sink", [
    (1, 0, False, False),
    (2, 0, True, True),
    (3, 10, True, True),
    (1, 7, False, False),
])
def test_sparse_decoder_matches_reference(rng, bf16, fp8, s_q, extra_topk, lengths, sink):
    case = sparse_case(rng, bf16, b=2, s_q=s_q, h_q=8, topk=24, extra_topk=extra_topk,
                       lengths=lengths, sink=sink)
    if fp8:
        case = fp8_case(case)
    decoder = flashmla.MLASparseDecoder(batch_size=2, num_heads_q=8, topk=24, s_q=s_q,
                                        extra_topk=extra_topk)
    assert decoder._plan.topk == 24 + extra_topk and decoder._plan.planned
    out, lse = decoder(case.q, case.kv_cache, case.indices, **case.kwargs())
    assert isinstance(out, np.ndarray) and out.dtype == bf16 and out.shape == (2, s_q, 8, 512)
    assert lse.dtype == np.float32 and lse.shape == (2, 8, s_q)
    check(out, lse, reference(case))
    assert len(_core.sparse_plans) == 0  # the decoder's own plan, not the shared cache


def test_sparse_decoder_outputs_scale_and_layers(rng, bf16):
    case = sparse_case(rng, bf16, b=3, s_q=2, h_q=4, topk=16)
    decoder = flashmla.MLASparseDecoder(3, 4, 16, s_q=2, softmax_scale=0.05)
    assert "topk=16" in repr(decoder) and decoder.num_workers >= 1
    out_buf = np.full((3, 2, 4, 512), 7, bf16)
    lse_buf = np.full((3, 2, 4), 7, np.float32).transpose(0, 2, 1)  # [b, h_q, s_q] view
    for _layer in range(3):  # one decoder serves every layer
        kv = rng.standard_normal(case.kv_cache.shape).astype(bf16)
        o, s = decoder(case.q, kv, case.indices, out=out_buf, lse=lse_buf)
        assert o is out_buf and s is lse_buf
        want = sparse_decode_ref(case.q, kv, case.indices, softmax_scale=0.05)
        check(out_buf, lse_buf, want)
    # A per-call scale overrides the decoder's.
    out, lse = decoder(case.q, case.kv_cache, case.indices, softmax_scale=0.2)
    check(out, lse, reference(case, softmax_scale=0.2))


def test_sparse_decoder_head_dim_v(rng, bf16):
    case = sparse_case(rng, bf16, b=1, h_q=4, topk=8)
    decoder = flashmla.MLASparseDecoder(1, 4, 8, head_dim_v=256)
    out, lse = decoder(case.q, case.kv_cache, case.indices)
    assert out.shape == (1, 1, 4, 256)
    check(out, lse, reference(case, head_dim_v=256))


def test_sparse_decoder_matches_plan_less_function_bitwise(rng, bf16):
    case = sparse_case(rng, bf16, b=2, s_q=2, h_q=8, topk=24, extra_topk=5, lengths=True,
                       sink=True)
    decoder = flashmla.MLASparseDecoder(2, 8, 24, s_q=2, extra_topk=5)
    out, lse = decoder(case.q, case.kv_cache, case.indices, **case.kwargs())
    out2, lse2 = flashmla.sparse_decode(case.q, case.kv_cache, case.indices, **case.kwargs())
    out3, lse3 = (np.empty_like(out), np.empty_like(lse))
    flashmla._C.sparse_decode(None, case.q, case.kv_cache, case.indices, case.topk_length,
                              case.attn_sink, case.extra_kv_cache, case.extra_indices,
                              case.extra_topk_length, out3, lse3, 512, 0.0, 0)
    for o, s in ((out2, lse2), (out3, lse3)):
        np.testing.assert_array_equal(np.asarray(o).view(np.uint16),
                                      np.asarray(out).view(np.uint16))
        np.testing.assert_array_equal(s, lse)


# ---- flashmla.sparse_decode and its plan cache ------------------------------------------------

def test_sparse_decode_reuses_one_plan_per_shape(rng, bf16, monkeypatch):
    made = []
    real = _core.new_sparse_plan

    def counting(key, num_workers=0):
        made.append(key)
        return real(key, num_workers)

    monkeypatch.setattr(_core, "new_sparse_plan", counting)
    case = sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24)
    for _layer in range(3):
        out, lse = flashmla.sparse_decode(case.q, case.kv_cache, case.indices)
        check(out, lse, reference(case))
    assert made == [(2, 1, 8, 24, 512, "cpu", 0)]
    plan = _core.sparse_plans.get(made[0], 0)
    assert plan.topk == 24 and plan.batch_size == 2 and plan.s_q == 1 and plan.h_q == 8

    # Another shape, topk + extra_topk or head_dim_v: one more plan each, then reused.
    other = sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24, extra_topk=4)
    for _ in range(2):
        flashmla.sparse_decode(other.q, other.kv_cache, other.indices, **other.kwargs())
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices, head_dim_v=128)
    assert made[1:] == [(2, 1, 8, 28, 512, "cpu", 0), (2, 1, 8, 24, 128, "cpu", 0)]
    assert len(_core.sparse_plans) == 3


def test_sparse_plan_cache_evicts_least_recently_used(monkeypatch):
    monkeypatch.setattr(_core, "new_sparse_plan", lambda key, num_workers=0: object())
    cache = _core.SparsePlanCache(max_plans=2)
    keys = [(1, 1, 4, k, 512, "cpu", 0) for k in (8, 16, 32)]
    a = cache.get(keys[0], 0)
    b = cache.get(keys[1], 0)
    assert cache.get(keys[0], 0) is a  # keys[0] is now the most recently used
    cache.get(keys[2], 0)  # evicts keys[1]
    assert len(cache) == 2
    assert cache.get(keys[0], 0) is a
    assert cache.get(keys[1], 0) is not b  # made again
    assert cache.get(keys[1], 7) is not cache.get(keys[1], 0)  # one plan per stream


def test_sparse_plan_cache_pins_plans_used_in_graph_capture(monkeypatch):
    monkeypatch.setattr(_core, "new_sparse_plan", lambda key, num_workers=0: object())
    capturing = {"now": False}
    monkeypatch.setattr(flashmla._C, "stream_is_capturing", lambda stream: capturing["now"])
    cache = _core.SparsePlanCache(max_plans=1)
    key = (1, 1, 4, 8, 512, "cuda", 0)
    warm = cache.get(key, 5)  # warm-up outside capture
    capturing["now"] = True
    assert cache.get(key, 5) is warm  # used in capture: pinned from now on
    capturing["now"] = False
    for k in (16, 32, 64):
        cache.get((1, 1, 4, k, 512, "cuda", 0), 5)
    cache.clear()
    assert cache.get(key, 5) is warm and len(cache) == 1
    # Without CUDA (or outside capture) the query says no.
    monkeypatch.undo()
    if not flashmla.built_with_cuda():
        assert flashmla._C.stream_is_capturing(0) is False


# ---- FlashMLA's API: get_mla_metadata(..., topk=...) + flash_mla_with_kvcache -----------------

def compat(case, meta, fp8, **kwargs):
    return flashmla.flash_mla_with_kvcache(
        case.q, case.kv_cache, None, None, kwargs.pop("head_dim_v", 512), meta, None,
        is_fp8_kvcache=fp8, indices=case.indices, attn_sink=case.attn_sink,
        extra_k_cache=case.extra_kv_cache, extra_indices_in_kvcache=case.extra_indices,
        topk_length=case.topk_length, extra_topk_length=case.extra_topk_length, **kwargs)


@pytest.mark.parametrize("fp8", [False, True])
@pytest.mark.parametrize("s_q", [1, 2])
def test_metadata_with_topk_carries_the_plan(rng, bf16, fp8, s_q, monkeypatch):
    case = sparse_case(rng, bf16, b=3, s_q=s_q, h_q=8, topk=24, lengths=True, sink=True)
    if fp8:
        case = fp8_case(case)
    cache_seqlens = np.full(3, 24, np.int32)
    meta, num_splits = flashmla.get_mla_metadata(cache_seqlens, s_q * 8, 1, num_heads_q=8,
                                                 is_fp8_kvcache=fp8, topk=24)
    assert num_splits is None and not meta.have_initialized
    plan = meta._plan
    assert plan is not None and plan.topk == 24 and plan.planned
    assert (plan.batch_size, plan.s_q, plan.h_q, plan.head_dim_v) == (3, s_q, 8, 512)

    def no_new_plans(key, num_workers=0):
        raise AssertionError(f"a plan was made at the call: {key}")

    monkeypatch.setattr(_core, "new_sparse_plan", no_new_plans)
    for _layer in range(2):
        out, lse = compat(case, meta, fp8)
        check(out, lse, reference(case))
    assert meta.have_initialized and meta._plan is plan and meta.config.topk == 24


def test_metadata_with_topk_and_extra_cache_plans_at_first_call(rng, bf16, monkeypatch):
    """FlashMLA's metadata does not know extra_topk: the first call makes the plan for
    topk + extra_topk, the next metadata objects of the step reuse it."""
    case = fp8_case(sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24, extra_topk=10,
                                lengths=True, sink=True))
    made = []
    real = _core.new_sparse_plan
    monkeypatch.setattr(_core, "new_sparse_plan",
                        lambda key, num_workers=0: made.append(key) or real(key, num_workers))
    for _step in range(2):
        meta, _ = flashmla.get_mla_metadata(np.full(2, 34, np.int32), 8, 1, 8, True, 24)
        assert meta._plan.topk == 24
        out, lse = compat(case, meta, True)
        check(out, lse, reference(case))
        assert meta._plan.topk == 34
    assert made == [(2, 1, 8, 24, 512, "cpu", 0), (2, 1, 8, 34, 512, "cpu", 0)]


def test_metadata_without_arguments_plans_sparse_at_first_call(rng, bf16):
    """FlashMLA's newer usage: get_mla_metadata() without arguments."""
    case = sparse_case(rng, bf16, b=2, s_q=2, h_q=4, topk=16, extra_topk=3)
    meta, _ = flashmla.get_mla_metadata()
    assert meta._plan is None
    out, lse = compat(case, meta, False)
    check(out, lse, reference(case))
    assert meta._plan.topk == 19 and len(_core.sparse_plans) == 1
    # A fresh object for the next step finds the plan in the cache.
    plan = meta._plan
    meta2, _ = flashmla.get_mla_metadata()
    compat(case, meta2, False)
    assert meta2._plan is plan and len(_core.sparse_plans) == 1


def test_metadata_with_topk_accepts_flashmla_keywords(rng, bf16):
    sl = np.full(1, 16, np.int32)
    meta, _ = flashmla.get_mla_metadata(cache_seqlens=sl, num_q_tokens_per_head_k=3 * 4,
                                        num_heads_k=1, num_heads_q=4, topk=16,
                                        is_fp8_kvcache=False, some_future_option=True)
    assert meta._hint == (1, 3, 4, 16, ("cpu", 0))
    case = sparse_case(rng, bf16, b=1, s_q=3, h_q=4, topk=16)
    out, lse = compat(case, meta, False)
    check(out, lse, reference(case))
    # numpy integers are fine.
    meta, _ = flashmla.get_mla_metadata(sl, np.int64(12), np.int32(1), np.int64(4),
                                        topk=np.int32(16))
    compat(case, meta, False)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(topk=16), ValueError, "num_heads_q: is required with topk"),
    (dict(topk=16, num_heads_q=4, num_heads_k=2), ValueError, "num_heads_k: must be 1"),
    (dict(topk=16, num_heads_q=4, num_q_tokens_per_head_k=6), ValueError,
     "num_q_tokens_per_head_k: 6 is not s_q \\* num_heads_q"),
    (dict(topk=16, num_heads_q=4, num_q_tokens_per_head_k=None), ValueError,
     "num_q_tokens_per_head_k: is required"),
    (dict(topk=0, num_heads_q=4), ValueError, "topk: must be >= 1, got 0"),
    (dict(topk=16.0, num_heads_q=4), TypeError, "topk: expected an int"),
    (dict(topk=16, num_heads_q=4, cache_seqlens=None), TypeError,
     "cache_seqlens: is required with topk"),
    (dict(topk=16, num_heads_q=4, cache_seqlens=np.zeros((2, 2), np.int32)), ValueError,
     "cache_seqlens: expected 1 dimensions"),
    (dict(topk=16, num_heads_q=4, cache_seqlens=np.zeros(0, np.int32)), ValueError,
     "cache_seqlens: expected at least one sequence"),
])
def test_metadata_with_topk_errors(kwargs, error, match):
    args = dict(cache_seqlens=np.zeros(2, np.int32), num_q_tokens_per_head_k=4, num_heads_k=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        flashmla.get_mla_metadata(**args)


def test_metadata_with_topk_used_for_another_shape_raises(rng, bf16):
    case = sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24)
    meta, _ = flashmla.get_mla_metadata(np.zeros(3, np.int32), 8, 1, 8, topk=24)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: get_mla_metadata made it "
                                         "for b=3, s_q=1, h_q=8 on cpu, but this call has b=2"):
        compat(case, meta, False)
    meta, _ = flashmla.get_mla_metadata(np.zeros(2, np.int32), 16, 1, 8, topk=24)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: .*s_q=2, h_q=8 on cpu, "
                                         "but this call has b=2, s_q=1"):
        compat(case, meta, False)
    # Filled by a first call, then reused with another extra_topk or topk.
    meta, _ = flashmla.get_mla_metadata(np.zeros(2, np.int32), 8, 1, 8, topk=24)
    compat(case, meta, False)
    extra = sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24, extra_topk=4)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: was filled for other "
                                         "arguments: extra_page_block_size=None.*extra_topk"):
        compat(extra, meta, False)
    case.indices = case.indices[:, :, :12]
    with pytest.raises(ValueError, match="tile_scheduler_metadata: .*topk=24 \\(now 12\\)"):
        compat(case, meta, False)


def test_sparse_metadata_used_for_dense_call_raises(rng, bf16):
    from reference import dense_case

    case = dense_case(rng, bf16, [20, 33], h_q=4)
    meta, _ = flashmla.get_mla_metadata(case.cache_seqlens, 4, 1, 4, topk=16)
    with pytest.raises(ValueError, match="tile_scheduler_metadata: get_mla_metadata made it "
                                         "for sparse attention \\(topk=16\\), but this call "
                                         "has no indices"):
        flashmla.flash_mla_with_kvcache(case.q, case.kv_cache, case.block_table,
                                        case.cache_seqlens, 512, meta)


def test_dense_metadata_arguments_are_still_ignored(rng, bf16):
    from reference import dense_case, dense_decode_ref

    case = dense_case(rng, bf16, [20, 33], h_q=4)
    meta, _ = flashmla.get_mla_metadata(case.cache_seqlens, 4, 1, num_heads_q=4)
    assert meta._plan is None  # dense: planned by the first call, as before
    out, lse = flashmla.flash_mla_with_kvcache(case.q, case.kv_cache, case.block_table,
                                               case.cache_seqlens, 512, meta)
    check(out, lse, dense_decode_ref(case.q, case.kv_cache, case.block_table,
                                     case.cache_seqlens))
    assert meta._plan.topk == 0


# ---- The binding and errors -------------------------------------------------------------------

def test_plan_binding_topk():
    plan = flashmla._C.Plan(2, 3, 8, 1, 64, "cpu", 0, 512, 0, 40)
    assert plan.topk == 40 and plan.planned and plan.s_q == 3 and plan.num_workers >= 1
    with pytest.raises(ValueError, match="plan: is a sparse plan \\(topk = 40\\): it is planned "
                                         "when made and takes no cache_seqlens"):
        plan.update(np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="plan: a sparse plan \\(topk > 0\\) needs h_kv = 1"):
        flashmla._C.Plan(2, 1, 8, 2, 64, "cpu", 0, 512, topk=8)
    with pytest.raises(ValueError, match="plan: topk must be >= 0"):
        flashmla._C.Plan(2, 1, 8, 1, 64, "cpu", 0, 512, topk=-1)
    assert flashmla._C.Plan(2, 1, 8, 1, 64, "cpu", 0, 512).topk == 0


def test_dense_and_sparse_plans_are_not_interchangeable(rng, bf16):
    from reference import dense_case

    case = sparse_case(rng, bf16, b=2, h_q=8, topk=24)
    out, lse = np.empty((2, 1, 8, 512), bf16), np.empty((2, 8, 1), np.float32)
    dense_plan = flashmla._C.Plan(2, 1, 8, 1, 16, "cpu", 0, 512)
    with pytest.raises(ValueError, match="plan: is a dense plan; sparse decode needs a plan "
                                         "made with topk = 24"):
        flashmla._C.sparse_decode(dense_plan, case.q, case.kv_cache, case.indices, None, None,
                                  None, None, None, out, lse, 512, 0.0, 0)
    dense = dense_case(rng, bf16, [10, 20], h_q=8)
    sparse_plan = flashmla._C.Plan(2, 1, 8, 1, 16, "cpu", 0, 512, topk=24)
    with pytest.raises(ValueError, match="plan: is a sparse plan \\(topk = 24\\)"):
        flashmla._C.dense_decode(sparse_plan, dense.q, dense.kv_cache, dense.block_table,
                                 dense.cache_seqlens, out, lse, 512, 0.0, False, 0)


@pytest.mark.parametrize("name,make,match", [
    ("batch", lambda r, t: sparse_case(r, t, b=3, h_q=8, topk=24),
     "plan: was made for b=2, s_q=1, h_q=8, topk=24, head_dim_v=512 on cpu, but this call "
     "has b=3"),
    ("s_q", lambda r, t: sparse_case(r, t, b=2, s_q=2, h_q=8, topk=24), "s_q=2"),
    ("heads", lambda r, t: sparse_case(r, t, b=2, h_q=16, topk=24), "h_q=16"),
    ("topk", lambda r, t: sparse_case(r, t, b=2, h_q=8, topk=20),
     "topk=24.*topk \\+ extra_topk=20"),
    ("extra", lambda r, t: sparse_case(r, t, b=2, h_q=8, topk=24, extra_topk=3),
     "topk \\+ extra_topk=27"),
])
def test_sparse_decoder_shape_mismatch(rng, bf16, name, make, match):
    decoder = flashmla.MLASparseDecoder(2, 8, 24)
    case = make(rng, bf16)
    with pytest.raises(ValueError, match=match):
        decoder(case.q, case.kv_cache, case.indices, **case.kwargs())


def test_sparse_decoder_errors(rng, bf16):
    with pytest.raises(ValueError, match="topk: must be >= 1, got 0"):
        flashmla.MLASparseDecoder(2, 8, 0)
    with pytest.raises(ValueError, match="extra_topk: must be >= 0, got -1"):
        flashmla.MLASparseDecoder(2, 8, 16, extra_topk=-1)
    with pytest.raises(TypeError, match="topk: expected an int"):
        flashmla.MLASparseDecoder(2, 8, 16.0)
    with pytest.raises(ValueError, match="plan: batch_size must be >= 1"):
        flashmla.MLASparseDecoder(0, 8, 16)
    with pytest.raises(ValueError, match="device: expected"):
        flashmla.MLASparseDecoder(2, 8, 16, device="tpu")
    decoder = flashmla.MLASparseDecoder(2, 8, 24)
    case = sparse_case(rng, bf16, b=2, h_q=8, topk=24)
    with pytest.raises(ValueError, match="indices: entry \\[1, 0, 3\\] = 96"):
        bad = case.indices.copy()
        bad[1, 0, 3] = 96
        decoder(case.q, case.kv_cache, bad)
    with pytest.raises(ValueError, match="out: expected dimension 3"):
        decoder(case.q, case.kv_cache, case.indices, out=np.empty((2, 1, 8, 256), bf16))
    with pytest.raises(TypeError, match="indices: dtype int64 is not supported"):
        decoder(case.q, case.kv_cache, case.indices.astype(np.int64))
    with pytest.raises(ValueError, match="attn_sink: expected dimension 0"):
        decoder(case.q, case.kv_cache, case.indices, attn_sink=np.zeros(3, np.float32))


def test_sparse_decode_errors_still_name_the_argument(rng, bf16):
    case = sparse_case(rng, bf16, b=2, h_q=8, topk=24)
    with pytest.raises(ValueError, match="indices: topk must be >= 1"):
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices[:, :, :0])
    with pytest.raises(TypeError, match="indices: is required, got None"):
        flashmla.sparse_decode(case.q, case.kv_cache, None)
    with pytest.raises(TypeError, match="indices: expected a tensor or array"):
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices.tolist())
    with pytest.raises(ValueError, match="indices: expected dimension 0"):
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices[:1])
    with pytest.raises(ValueError, match="head_dim_v: must be in"):
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices, head_dim_v=600)
    with pytest.raises(ValueError, match="extra_kv_cache: is required with extra_indices"):
        flashmla.sparse_decode(case.q, case.kv_cache, case.indices, extra_indices=case.indices)
    with pytest.raises(ValueError, match="q: expected 4 dimensions"):
        flashmla.sparse_decode(case.q[0], case.kv_cache, case.indices)


def test_sparse_cuda_without_backend_is_not_implemented():
    if flashmla.built_with_cuda():
        pytest.skip("this build has the CUDA backend")
    with pytest.raises(NotImplementedError, match="no CUDA backend"):
        flashmla.MLASparseDecoder(1, 4, 16, device="cuda")
    with pytest.raises(NotImplementedError, match="cache_seqlens: .*no CUDA backend"):
        flashmla.get_mla_metadata(_CudaLike(), 4, 1, 4, topk=16)


class _CudaLike:
    """A stand-in array on a CUDA device (DLPack device type 2), for builds without CUDA."""

    shape = (1,)
    dtype = "int32"

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):  # pragma: no cover - never read
        raise BufferError


# ---- torch CPU tensors ------------------------------------------------------------------------

def torch_case(torch, case):
    """`case` as torch CPU tensors (bf16 arrays as torch.bfloat16, FP8 caches as fp8)."""
    def conv(x):
        if x is None:
            return None
        if x.dtype == np.uint8:
            return torch.from_numpy(x).view(torch.float8_e4m3fn)
        if x.dtype in (np.int32, np.float32):
            return torch.from_numpy(x)
        return torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)

    from reference import SparseCase

    return SparseCase(*(conv(getattr(case, f)) for f in SparseCase.__dataclass_fields__))


@pytest.mark.parametrize("fp8", [False, True])
def test_torch_sparse_decoder_and_function(rng, bf16, fp8):
    torch = pytest.importorskip("torch")
    case = sparse_case(rng, bf16, b=2, s_q=2, h_q=8, topk=24, extra_topk=6, lengths=True,
                       sink=True)
    if fp8:
        case = fp8_case(case)
    want = reference(case)
    t = torch_case(torch, case)
    decoder = flashmla.MLASparseDecoder(2, 8, 24, s_q=2, extra_topk=6)
    out, lse = decoder(t.q, t.kv_cache, t.indices, **t.kwargs())
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bfloat16
    check(out.double().numpy(), lse.double().numpy(), want)
    out2, lse2 = flashmla.sparse_decode(t.q, t.kv_cache, t.indices, **t.kwargs())
    assert torch.equal(out2, out) and torch.equal(lse2, lse)
    meta, _ = flashmla.get_mla_metadata(torch.zeros(2, dtype=torch.int32), 16, 1, 8, fp8, 24)
    out3, lse3 = flashmla.flash_mla_with_kvcache(
        t.q, t.kv_cache, None, None, 512, meta, is_fp8_kvcache=fp8, indices=t.indices,
        attn_sink=t.attn_sink, extra_k_cache=t.extra_kv_cache,
        extra_indices_in_kvcache=t.extra_indices, topk_length=t.topk_length,
        extra_topk_length=t.extra_topk_length)
    assert torch.equal(out3, out) and torch.equal(lse3, lse)


def test_torch_sparse_op_and_opcheck(rng, bf16):
    torch = pytest.importorskip("torch")
    if not hasattr(torch.ops.flashmla, "sparse_decode"):
        pytest.skip("this torch has no torch.library.custom_op")
    t = torch_case(torch, sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24, sink=True))
    decoder = flashmla.MLASparseDecoder(2, 8, 24)
    want = decoder(t.q, t.kv_cache, t.indices, attn_sink=t.attn_sink)
    op = torch.ops.flashmla.sparse_decode
    for owner in (0, decoder._id):
        args = (t.q, t.kv_cache, t.indices, None, t.attn_sink, None, None, None, 512, 0.0, owner)
        out, lse = op(*args)
        assert torch.equal(out, want[0]) and torch.equal(lse, want[1])
        torch.library.opcheck(op.default, args, test_utils=("test_schema", "test_faketensor"))
    # The pre-existing schema, without owner_id, still works.
    out, lse = op(t.q, t.kv_cache, t.indices, None, t.attn_sink, None, None, None, 512, 0.0)
    assert torch.equal(out, want[0])


@pytest.mark.parametrize("api", ["decoder", "function", "compat"])
def test_torch_compile_traces_the_sparse_op(rng, bf16, api):
    torch = pytest.importorskip("torch")
    t = torch_case(torch, sparse_case(rng, bf16, b=2, s_q=1, h_q=8, topk=24, sink=True))
    decoder = flashmla.MLASparseDecoder(2, 8, 24)
    meta, _ = flashmla.get_mla_metadata(torch.zeros(2, dtype=torch.int32), 8, 1, 8, topk=24)

    def attention(q, kv, indices, sink):
        q = q * 2
        if api == "decoder":
            out, lse = decoder(q, kv, indices, attn_sink=sink)
        elif api == "function":
            out, lse = flashmla.sparse_decode(q, kv, indices, attn_sink=sink)
        else:
            out, lse = flashmla.flash_mla_with_kvcache(q, kv, None, None, 512, meta,
                                                       indices=indices, attn_sink=sink)
        return out.float().sum(-1), lse

    torch._dynamo.reset()
    compiled = torch.compile(attention, backend="aot_eager", fullgraph=True)
    got = compiled(t.q, t.kv_cache, t.indices, t.attn_sink)
    want = attention(t.q, t.kv_cache, t.indices, t.attn_sink)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
