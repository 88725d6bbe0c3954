#include "common/dense_case.h"

#include <sstream>

namespace flashmla::test {

std::string DenseCase::describe() const {
  std::ostringstream s;
  s << "seed=" << seed << " b=" << seqlens.size() << " seqlens=[";
  for (size_t i = 0; i < seqlens.size() && i < 16; ++i) s << (i ? "," : "") << seqlens[i];
  if (seqlens.size() > 16) s << ",...";
  s << "] s_q=" << s_q << " h_q=" << h_q << " h_kv=" << h_kv << " d=" << d << " dv=" << dv
    << " page=" << page_block_size << " " << (fp8 ? "fp8" : dtype_name(dtype))
    << (causal ? " causal" : "") << " scale=" << softmax_scale << " workers=" << num_workers;
  return s.str();
}

DenseInputs make_dense_inputs(const DenseCase& c) {
  Rng rng(c.seed);
  DenseInputs in;
  const int64_t b = static_cast<int64_t>(c.seqlens.size());
  in.q = random_half_tensor(rng, c.dtype, {b, c.s_q, c.h_q, c.d});
  in.kv = make_paged_kv(rng, c.seqlens, c.page_block_size, c.h_kv, c.d, c.dtype);
  if (c.fp8) in.kv.cache = quantize_cache_fp8(in.kv.cache);
  return in;
}

DecodeShape decode_shape(const DenseCase& c) {
  DecodeShape shape;
  shape.batch_size = static_cast<int>(c.seqlens.size());
  shape.s_q = c.s_q;
  shape.h_q = c.h_q;
  shape.h_kv = c.h_kv;
  shape.page_block_size = c.page_block_size;
  return shape;
}

DenseOutputs run_dense_library(const DenseCase& c, DenseInputs& in, int num_workers) {
  const int64_t b = static_cast<int64_t>(c.seqlens.size());
  DenseOutputs o;
  o.out = HalfTensor(c.dtype, {b, c.s_q, c.h_q, c.dv}, kOutPoison);
  o.lse.assign(static_cast<size_t>(b * c.h_q * c.s_q), lse_poison());

  DecodePlan plan(decode_shape(c), Device::cpu(), c.dv, num_workers);
  plan.update(in.kv.seqlens_view());

  DenseDecodeArgs args;
  args.q = in.q.view();
  args.kv_cache = in.kv.cache.view();
  args.block_table = in.kv.block_table_view();
  args.cache_seqlens = in.kv.seqlens_view();
  args.out = o.out.view();
  args.lse = contiguous_view(o.lse.data(), DType::kFP32, {b, c.h_q, c.s_q});
  args.head_dim_v = c.dv;
  args.softmax_scale = c.softmax_scale;
  args.causal = c.causal;
  mla_decode(args, plan);
  return o;
}

::testing::AssertionResult check_dense_case(const DenseCase& c) {
  DenseInputs in = make_dense_inputs(c);
  const DenseOutputs o = run_dense_library(c, in, c.num_workers);
  const ReferenceResult ref = reference_dense_decode(in.q, in.kv, c.dv, c.softmax_scale, c.causal);
  return matches_reference(o.out, o.lse, ref);
}

}  // namespace flashmla::test
