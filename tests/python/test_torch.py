"""torch CPU tensors: interop, correctness, the custom op and torch.compile. Skips without
torch (its PyPI wheel is ~2.8 GiB with its CUDA libraries, so CI may not have it)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import flashmla  # noqa: E402
from reference import (assert_close_lse, assert_close_out, dense_case,  # noqa: E402
                       dense_decode_ref, dequantize_fp8_ref, sparse_decode_ref)


def to_torch(case, dtype=torch.bfloat16):
    """The numpy case as torch CPU tensors (q and cache in `dtype`)."""
    return (torch.from_numpy(case.q.astype(np.float32)).to(dtype),
            torch.from_numpy(case.kv_cache.astype(np.float32)).to(dtype),
            torch.from_numpy(case.block_table), torch.from_numpy(case.cache_seqlens))


def as64(t):
    return t.double().numpy()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dense_torch_cpu(rng, dtype):
    case = dense_case(rng, np.float32, [30, 0, 75], s_q=2, h_q=8, h_kv=2, page=16)
    q, kv, bt, sl = to_torch(case, dtype)
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta, causal=True)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype and out.device.type == "cpu"
    assert lse.dtype == torch.float32 and tuple(lse.shape) == (3, 8, 2)
    ref_out, ref_lse = dense_decode_ref(as64(q), as64(kv), case.block_table, case.cache_seqlens,
                                        causal=True)
    assert_close_out(as64(out), ref_out)
    assert_close_lse(as64(lse), ref_lse)


def test_torch_matches_numpy_path_bitwise(rng, bf16):
    case = dense_case(rng, bf16, [40, 90], h_q=4)
    q, kv, bt, sl = to_torch(case)
    out_t, lse_t = flashmla.MLADecoder(2, 4, page_block_size=16).plan(sl)(q, kv, bt, sl)
    out_n, lse_n = flashmla.MLADecoder(2, 4, page_block_size=16).plan(
        case.cache_seqlens)(case.q, case.kv_cache, case.block_table, case.cache_seqlens)
    np.testing.assert_array_equal(out_t.float().numpy(), np.asarray(out_n).astype(np.float32))
    np.testing.assert_array_equal(lse_t.numpy(), lse_n)


def test_zero_copy_views():
    base = torch.zeros(2, 3, 8, 576, dtype=torch.bfloat16)
    view = base[:, :, ::2]
    ptr, dtype, shape, strides, device = flashmla._C.view_info(view)
    assert ptr == view.data_ptr() and dtype == "bf16" and device == "cpu"
    assert shape == list(view.shape) and strides == list(view.stride())
    assert flashmla._C.view_info(base[1:])[0] == base[1:].data_ptr()  # storage offset
    assert flashmla._C.view_info(torch.zeros(3, dtype=torch.float8_e4m3fn))[1] == "fp8_e4m3"


def test_torch_dtype_errors(rng):
    case = dense_case(rng, np.float32, [5])
    q, kv, bt, sl = to_torch(case)
    meta, _ = flashmla.get_mla_metadata()
    with pytest.raises(TypeError, match="q: dtype torch.float64 is not supported"):
        flashmla.flash_mla_with_kvcache(q.double(), kv, bt, sl, 512, meta)
    with pytest.raises(TypeError, match="block_table: dtype torch.int64"):
        flashmla.flash_mla_with_kvcache(q, kv, bt.long(), sl, 512, meta)
    with pytest.raises(TypeError, match="q: .*not taken as bf16"):
        flashmla.flash_mla_with_kvcache(q.view(torch.int16), kv, bt, sl, 512, meta)
    with pytest.raises(TypeError, match="k_cache: is on device meta"):
        flashmla.flash_mla_with_kvcache(q, kv.to("meta"), bt, sl, 512, meta)
    with pytest.raises(ValueError, match="q: the last dimension must be contiguous"):
        flashmla.flash_mla_with_kvcache(q.transpose(2, 3).contiguous().transpose(2, 3), kv, bt,
                                        sl, 512, meta)


def test_fp8_cache_torch(rng, bf16):
    case = dense_case(rng, bf16, [50, 64], h_q=4, page=64)
    q, kv, bt, sl = to_torch(case)
    cache = flashmla.quantize_kv_cache_fp8(kv)
    assert cache.dtype == torch.float8_e4m3fn and tuple(cache.shape) == (kv.shape[0], 64, 1, 656)
    np.testing.assert_array_equal(
        cache.view(torch.uint8).numpy(),
        flashmla.quantize_kv_cache_fp8(case.kv_cache))
    back = flashmla.dequantize_kv_cache_fp8(cache)
    assert back.dtype == torch.bfloat16
    meta, _ = flashmla.get_mla_metadata()
    out, lse = flashmla.flash_mla_with_kvcache(q, cache, bt, sl, 512, meta, is_fp8_kvcache=True)
    deq = dequantize_fp8_ref(cache.view(torch.uint8).numpy())
    ref_out, ref_lse = dense_decode_ref(as64(q), deq, case.block_table, case.cache_seqlens)
    assert_close_out(as64(out), ref_out)
    assert_close_lse(as64(lse), ref_lse)


def test_sparse_torch(rng):
    q = torch.randn(2, 1, 8, 576, dtype=torch.bfloat16) * 0.5
    kv = torch.randn(4, 16, 1, 576, dtype=torch.bfloat16)
    indices = torch.stack([torch.randperm(64)[:20] for _ in range(2)]).view(2, 1, 20).int()
    sink = torch.linspace(-2, 2, 8)
    out, lse = flashmla.sparse_decode(q, kv, indices, attn_sink=sink)
    ref_out, ref_lse = sparse_decode_ref(as64(q), as64(kv), indices.numpy(),
                                         attn_sink=sink.numpy())
    assert_close_out(as64(out), ref_out)
    assert_close_lse(as64(lse), ref_lse)


def test_custom_op_registered_and_opcheck(rng):
    case = dense_case(rng, np.float32, [17, 40], h_q=4)
    q, kv, bt, sl = to_torch(case)
    decoder = flashmla.MLADecoder(2, 4, page_block_size=16).plan(sl)
    out, lse = torch.ops.flashmla.dense_decode(q, kv, bt, sl, decoder._id, 512, 0.0, False,
                                               False)
    ref_out, ref_lse = decoder(q, kv, bt, sl)
    assert torch.equal(out, ref_out) and torch.equal(lse, ref_lse)
    torch.library.opcheck(torch.ops.flashmla.dense_decode.default,
                          (q, kv, bt, sl, decoder._id, 512, 0.0, False, False),
                          test_utils=("test_schema", "test_faketensor"))


@pytest.mark.parametrize("api", ["decoder", "compat"])
def test_torch_compile_traces_the_op(rng, api):
    case = dense_case(rng, np.float32, [33, 64], h_q=4)
    q, kv, bt, sl = to_torch(case)
    decoder = flashmla.MLADecoder(2, 4, page_block_size=16).plan(sl)
    meta, _ = flashmla.get_mla_metadata()

    def attention(q, kv, bt, sl):
        q = q * 2
        if api == "decoder":
            out, lse = decoder(q, kv, bt, sl)
        else:
            out, lse = flashmla.flash_mla_with_kvcache(q, kv, bt, sl, 512, meta)
        return out.float().sum(-1), lse

    torch._dynamo.reset()
    compiled = torch.compile(attention, backend="aot_eager", fullgraph=True)
    got = compiled(q, kv, bt, sl)
    want = attention(q, kv, bt, sl)
    torch.testing.assert_close(got[0], want[0])
    torch.testing.assert_close(got[1], want[1])
