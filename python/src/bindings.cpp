// flashmla._C: nanobind bindings of the public C++ API (include/flashmla/decode.h).
//
// Tensors arrive as framework objects and become flashmla::TensorView without a copy:
//  - torch.Tensor: a fast path that reads data_ptr(), shape, stride(), dtype and the device
//    through a few attribute look-ups (much cheaper than a DLPack capsule per tensor);
//  - numpy.ndarray: through __array_interface__, which also covers ml_dtypes' bfloat16 and
//    float8_e4m3fn arrays (numpy cannot export those through DLPack or the buffer protocol);
//  - anything else with __dlpack__ (cupy, jax, ...) or the buffer protocol: nanobind's ndarray.
// The Python layer (flashmla/*.py) registers torch's and numpy's types and dtypes at import.
//
// flashmla::Error becomes ValueError / TypeError / NotImplementedError / RuntimeError by its
// kind(); its message starts with the name of the offending argument.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "flashmla/decode.h"
#include "flashmla/error.h"
#include "flashmla/tensor.h"

#if defined(FLASHMLA_WITH_CUDA)
#include <cuda_runtime_api.h>
#endif

namespace nb = nanobind;

namespace {

using flashmla::DecodePlan;
using flashmla::DecodeShape;
using flashmla::Device;
using flashmla::DType;
using flashmla::Error;
using flashmla::ErrorKind;
using flashmla::OptionalTensor;
using flashmla::TensorView;

[[noreturn]] void fail(ErrorKind kind, const std::string& argument, const std::string& message) {
  throw Error(kind, argument, message);
}

std::string str_of(nb::handle h) {
  PyObject* s = PyObject_Str(h.ptr());
  if (s == nullptr) {
    PyErr_Clear();
    return "?";
  }
  nb::str str = nb::steal<nb::str>(s);
  return str.c_str();
}

std::string type_name_of(nb::handle h) {
  return nb::type_name(h.type()).c_str();
}

// ---- Frameworks registered by the Python layer --------------------------------------------

struct DTypeEntry {
  PyObject* object;  // a torch.dtype or numpy.dtype (a strong reference, never released)
  DType dtype;
};

struct Registry {
  PyTypeObject* torch_tensor = nullptr;
  std::vector<DTypeEntry> torch_dtypes;
  PyTypeObject* numpy_ndarray = nullptr;
  std::vector<DTypeEntry> numpy_dtypes;
};

// Leaked on purpose: it holds references to types that live as long as the interpreter, and
// must not be destroyed after the interpreter is gone.
Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// Interned attribute names.
struct Names {
  PyObject* dtype = PyUnicode_InternFromString("dtype");
  PyObject* data_ptr = PyUnicode_InternFromString("data_ptr");
  PyObject* shape = PyUnicode_InternFromString("shape");
  PyObject* stride = PyUnicode_InternFromString("stride");
  PyObject* is_cuda = PyUnicode_InternFromString("is_cuda");
  PyObject* is_cpu = PyUnicode_InternFromString("is_cpu");
  PyObject* get_device = PyUnicode_InternFromString("get_device");
  PyObject* device = PyUnicode_InternFromString("device");
  PyObject* array_interface = PyUnicode_InternFromString("__array_interface__");
};

const Names& names() {
  static Names* n = new Names();
  return *n;
}

DType dtype_from_name(const std::string& name) {
  if (name == "bf16") return DType::kBF16;
  if (name == "fp16") return DType::kFP16;
  if (name == "fp32") return DType::kFP32;
  if (name == "int32") return DType::kInt32;
  if (name == "uint8") return DType::kUInt8;
  if (name == "fp8_e4m3") return DType::kFP8E4M3;
  throw nb::value_error(("unknown flashmla dtype name " + name).c_str());
}

std::vector<DTypeEntry> make_entries(const std::vector<std::pair<nb::object, std::string>>& list) {
  std::vector<DTypeEntry> entries;
  for (const auto& [object, name] : list) {
    entries.push_back({object.inc_ref().ptr(), dtype_from_name(name)});
  }
  return entries;
}

void register_torch(nb::handle tensor_type,
                    const std::vector<std::pair<nb::object, std::string>>& dtypes) {
  if (!PyType_Check(tensor_type.ptr())) throw nb::type_error("expected torch.Tensor");
  registry().torch_tensor = reinterpret_cast<PyTypeObject*>(tensor_type.inc_ref().ptr());
  registry().torch_dtypes = make_entries(dtypes);
}

void register_numpy(nb::handle ndarray_type,
                    const std::vector<std::pair<nb::object, std::string>>& dtypes) {
  if (!PyType_Check(ndarray_type.ptr())) throw nb::type_error("expected numpy.ndarray");
  registry().numpy_ndarray = reinterpret_cast<PyTypeObject*>(ndarray_type.inc_ref().ptr());
  registry().numpy_dtypes = make_entries(dtypes);
}

constexpr const char* kSupportedDTypes =
    "flashmla takes bf16, fp16, fp32, int32, uint8 and float8_e4m3fn tensors";

[[noreturn]] void unsupported_dtype(const char* name, const std::string& dtype) {
  std::string message = "dtype " + dtype + " is not supported (" + kSupportedDTypes + ")";
  if (dtype.find("uint16") != std::string::npos || dtype.find("int16") != std::string::npos) {
    message +=
        "; 16-bit integer arrays are not taken as bf16: use torch.bfloat16 or "
        "ml_dtypes.bfloat16";
  }
  fail(ErrorKind::kType, name, message);
}

// ---- Object -> TensorView -----------------------------------------------------------------

nb::object get_attr(PyObject* o, PyObject* attr) {
  PyObject* r = PyObject_GetAttr(o, attr);
  if (r == nullptr) throw nb::python_error();
  return nb::steal(r);
}

nb::object call_method(PyObject* o, PyObject* method) {
  PyObject* r = PyObject_CallMethodNoArgs(o, method);
  if (r == nullptr) throw nb::python_error();
  return nb::steal(r);
}

int64_t as_int64(PyObject* o) {
  const long long v = PyLong_AsLongLong(o);
  if (v == -1 && PyErr_Occurred()) throw nb::python_error();
  return static_cast<int64_t>(v);
}

// Fills view.ndim and view.shape from a tuple of ints.
void read_shape(PyObject* tuple, const char* name, TensorView& view) {
  const Py_ssize_t ndim = PyTuple_GET_SIZE(tuple);
  if (ndim > flashmla::kMaxTensorDims) {
    fail(ErrorKind::kValue, name,
         "has " + std::to_string(ndim) + " dimensions; at most " +
             std::to_string(flashmla::kMaxTensorDims) + " are supported");
  }
  view.ndim = static_cast<int>(ndim);
  for (Py_ssize_t i = 0; i < ndim; ++i) view.shape[i] = as_int64(PyTuple_GET_ITEM(tuple, i));
}

void contiguous_strides(TensorView& view) {
  int64_t stride = 1;
  for (int i = view.ndim - 1; i >= 0; --i) {
    view.strides[i] = stride;
    stride *= view.shape[i];
  }
}

TensorView torch_view(PyObject* o, const char* name) {
  const Registry& r = registry();
  const Names& n = names();
  TensorView view;

  nb::object dtype = get_attr(o, n.dtype);
  bool found = false;
  for (const DTypeEntry& e : r.torch_dtypes) {
    if (e.object == dtype.ptr()) {
      view.dtype = e.dtype;
      found = true;
      break;
    }
  }
  if (!found) unsupported_dtype(name, str_of(dtype));

  nb::object is_cuda = get_attr(o, n.is_cuda);
  if (is_cuda.ptr() == Py_True) {
    view.device = Device::cuda(static_cast<int>(as_int64(call_method(o, n.get_device).ptr())));
  } else if (get_attr(o, n.is_cpu).ptr() != Py_True) {
    fail(ErrorKind::kType, name,
         "is on device " + str_of(get_attr(o, n.device)) + "; flashmla takes CPU and CUDA tensors");
  }

  nb::object shape = get_attr(o, n.shape);
  read_shape(shape.ptr(), name, view);
  nb::object strides = call_method(o, n.stride);
  for (int i = 0; i < view.ndim; ++i)
    view.strides[i] = as_int64(PyTuple_GET_ITEM(strides.ptr(), i));

  nb::object ptr = call_method(o, n.data_ptr);
  view.data = PyLong_AsVoidPtr(ptr.ptr());
  if (view.data == nullptr && PyErr_Occurred()) throw nb::python_error();
  return view;
}

TensorView numpy_view(PyObject* o, const char* name, bool writable) {
  const Registry& r = registry();
  TensorView view;

  nb::object dtype = get_attr(o, names().dtype);
  bool found = false;
  for (const DTypeEntry& e : r.numpy_dtypes) {
    const int eq = PyObject_RichCompareBool(dtype.ptr(), e.object, Py_EQ);
    if (eq < 0) throw nb::python_error();
    if (eq == 1) {
      view.dtype = e.dtype;
      found = true;
      break;
    }
  }
  if (!found) unsupported_dtype(name, str_of(dtype));

  nb::object ai = get_attr(o, names().array_interface);
  PyObject* data = PyDict_GetItemString(ai.ptr(), "data");
  PyObject* shape = PyDict_GetItemString(ai.ptr(), "shape");
  PyObject* strides = PyDict_GetItemString(ai.ptr(), "strides");
  if (data == nullptr || !PyTuple_Check(data) || PyTuple_GET_SIZE(data) != 2 || shape == nullptr ||
      !PyTuple_Check(shape)) {
    fail(ErrorKind::kType, name, "has an unexpected __array_interface__");
  }
  if (writable && PyObject_IsTrue(PyTuple_GET_ITEM(data, 1)) == 1) {
    fail(ErrorKind::kValue, name, "is read-only, but flashmla writes into it");
  }
  view.data = PyLong_AsVoidPtr(PyTuple_GET_ITEM(data, 0));
  if (view.data == nullptr && PyErr_Occurred()) throw nb::python_error();
  read_shape(shape, name, view);
  if (strides == nullptr || strides == Py_None) {
    contiguous_strides(view);
  } else {
    const int64_t itemsize = static_cast<int64_t>(flashmla::dtype_size(view.dtype));
    for (int i = 0; i < view.ndim; ++i) {
      const int64_t bytes = as_int64(PyTuple_GET_ITEM(strides, i));
      if (bytes % itemsize != 0) {
        fail(ErrorKind::kValue, name,
             "has a stride of " + std::to_string(bytes) + " bytes in dimension " +
                 std::to_string(i) + ", not a multiple of the element size");
      }
      view.strides[i] = bytes / itemsize;
    }
  }
  return view;
}

// DLPack (code, bits, lanes) -> DType.
bool dtype_from_dlpack(nb::dlpack::dtype t, DType& out) {
  using Code = nb::dlpack::dtype_code;
  if (t.lanes != 1) return false;
  const auto code = static_cast<Code>(t.code);
  if (code == Code::Bfloat && t.bits == 16)
    out = DType::kBF16;
  else if (code == Code::Float && t.bits == 16)
    out = DType::kFP16;
  else if (code == Code::Float && t.bits == 32)
    out = DType::kFP32;
  else if (code == Code::Int && t.bits == 32)
    out = DType::kInt32;
  else if (code == Code::UInt && t.bits == 8)
    out = DType::kUInt8;
  else if (code == Code::Float8_E4M3FN && t.bits == 8)
    out = DType::kFP8E4M3;
  else
    return false;
  return true;
}

std::string dlpack_dtype_name(nb::dlpack::dtype t) {
  static const char* const codes[] = {"int", "uint", "float", "?", "bfloat", "complex", "bool"};
  std::string name;
  if (t.code < 7) {
    name.append(codes[t.code]);
  } else {
    name.append("dlpack-code-").append(std::to_string(t.code)).append("-");
  }
  name.append(std::to_string(t.bits));
  if (t.lanes != 1) name.append("x").append(std::to_string(t.lanes));
  return name;
}

// Keeps the imported DLPack tensors alive for the duration of one call.
using Keep = std::vector<nb::object>;

template <typename Array>
TensorView dlpack_view(nb::handle obj, const char* name, Keep& keep) {
  Array array;
  if (!nb::try_cast(obj, array, /*convert=*/false)) {
    fail(ErrorKind::kType, name,
         "expected a tensor or array (torch, numpy, or any object with __dlpack__), got " +
             type_name_of(obj) +
             (std::is_same_v<Array, nb::ndarray<>> ? " (or it is read-only)" : ""));
  }
  TensorView view;
  if (!dtype_from_dlpack(array.dtype(), view.dtype)) {
    unsupported_dtype(name, dlpack_dtype_name(array.dtype()));
  }
  switch (array.device_type()) {
    case nb::device::cpu::value:
    case nb::device::cuda_host::value:
      view.device = Device::cpu();
      break;
    case nb::device::cuda::value:
    case nb::device::cuda_managed::value:
      view.device = Device::cuda(array.device_id());
      break;
    default:
      fail(ErrorKind::kType, name,
           "is on DLPack device type " + std::to_string(array.device_type()) +
               "; flashmla takes CPU and CUDA arrays");
  }
  if (array.ndim() > static_cast<size_t>(flashmla::kMaxTensorDims)) {
    fail(ErrorKind::kValue, name,
         "has " + std::to_string(array.ndim()) + " dimensions; at most " +
             std::to_string(flashmla::kMaxTensorDims) + " are supported");
  }
  view.ndim = static_cast<int>(array.ndim());
  for (int i = 0; i < view.ndim; ++i) {
    view.shape[i] = array.shape(static_cast<size_t>(i));
    view.strides[i] = array.stride(static_cast<size_t>(i));
  }
  view.data = const_cast<void*>(static_cast<const void*>(array.data()));
  keep.push_back(nb::cast(array));
  return view;
}

TensorView to_view(nb::handle obj, const char* name, bool writable, Keep& keep) {
  PyObject* o = obj.ptr();
  if (o == Py_None) fail(ErrorKind::kType, name, "is required, got None");
  const Registry& r = registry();
  if (r.torch_tensor != nullptr && PyObject_TypeCheck(o, r.torch_tensor)) {
    return torch_view(o, name);
  }
  if (r.numpy_ndarray != nullptr && PyObject_TypeCheck(o, r.numpy_ndarray)) {
    return numpy_view(o, name, writable);
  }
  return writable ? dlpack_view<nb::ndarray<>>(obj, name, keep)
                  : dlpack_view<nb::ndarray<nb::ro>>(obj, name, keep);
}

OptionalTensor to_optional(nb::handle obj, const char* name, Keep& keep) {
  if (obj.is_none()) return {};
  return OptionalTensor(to_view(obj, name, false, keep));
}

void* as_stream(uintptr_t stream) {
  return reinterpret_cast<void*>(stream);
}

// ---- Plan ---------------------------------------------------------------------------------

#if defined(FLASHMLA_WITH_CUDA)
// A plan may be made (cudaMalloc) or freed while the caller's stream is being captured into a
// CUDA graph (FlashMLA's metadata object is filled on first use, which can be inside capture).
// Relaxed mode lets this thread allocate then; the allocation is not part of the graph.
class RelaxedCaptureMode {
 public:
  RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  ~RelaxedCaptureMode() { cudaThreadExchangeStreamCaptureMode(&mode_); }
  RelaxedCaptureMode(const RelaxedCaptureMode&) = delete;
  RelaxedCaptureMode& operator=(const RelaxedCaptureMode&) = delete;

 private:
  cudaStreamCaptureMode mode_ = cudaStreamCaptureModeRelaxed;
};
#endif

Device make_device(const std::string& type, int index) {
  if (type == "cpu") return Device::cpu();
  if (type == "cuda") return Device::cuda(index);
  fail(ErrorKind::kType, "device", "must be 'cpu' or 'cuda', got '" + type + "'");
}

// Owns one flashmla::DecodePlan: dense (topk = 0, planned by update()) or token-sparse (topk =
// index slots per query, topk + extra_topk; planned when made).
class Plan {
 public:
  Plan(int batch_size, int s_q, int h_q, int h_kv, int page_block_size, const std::string& device,
       int device_index, int head_dim_v, int num_workers, int topk)
      : plan_(make(DecodeShape{batch_size, s_q, h_q, h_kv, page_block_size, topk},
                   make_device(device, device_index), head_dim_v, num_workers)) {}

  ~Plan() {
#if defined(FLASHMLA_WITH_CUDA)
    RelaxedCaptureMode relaxed;
#endif
    plan_.reset();
  }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;

  void update(nb::handle cache_seqlens, uintptr_t stream) {
    Keep keep;
    const TensorView seqlens = to_view(cache_seqlens, "cache_seqlens", false, keep);
    plan_->update(seqlens, as_stream(stream));
  }

  const DecodePlan& get() const {
    return *plan_;
  }

 private:
  static DecodePlan make(const DecodeShape& shape, Device device, int head_dim_v, int num_workers) {
#if defined(FLASHMLA_WITH_CUDA)
    RelaxedCaptureMode relaxed;
#endif
    return DecodePlan(shape, device, head_dim_v, num_workers);
  }

  std::optional<DecodePlan> plan_;
};

// ---- Entry points -------------------------------------------------------------------------

void dense_decode(const Plan& plan, nb::handle q, nb::handle kv_cache, nb::handle block_table,
                  nb::handle cache_seqlens, nb::handle out, nb::handle lse, int head_dim_v,
                  float softmax_scale, bool causal, uintptr_t stream) {
  Keep keep;
  flashmla::DenseDecodeArgs args;
  args.q = to_view(q, "q", false, keep);
  args.kv_cache = to_view(kv_cache, "kv_cache", false, keep);
  args.block_table = to_view(block_table, "block_table", false, keep);
  args.cache_seqlens = to_view(cache_seqlens, "cache_seqlens", false, keep);
  args.out = to_view(out, "out", true, keep);
  args.lse = to_view(lse, "lse", true, keep);
  args.head_dim_v = head_dim_v;
  args.softmax_scale = softmax_scale;
  args.causal = causal;
  nb::gil_scoped_release release;
  flashmla::mla_decode(args, plan.get(), as_stream(stream));
}

// `plan` null (None): the plan-less C++ entry point, which on CUDA makes a plan per call.
void sparse_decode(const Plan* plan, nb::handle q, nb::handle kv_cache, nb::handle indices,
                   nb::handle topk_length, nb::handle attn_sink, nb::handle extra_kv_cache,
                   nb::handle extra_indices, nb::handle extra_topk_length, nb::handle out,
                   nb::handle lse, int head_dim_v, float softmax_scale, uintptr_t stream) {
  Keep keep;
  flashmla::SparseDecodeArgs args;
  args.q = to_view(q, "q", false, keep);
  args.kv_cache = to_view(kv_cache, "kv_cache", false, keep);
  args.indices = to_view(indices, "indices", false, keep);
  args.topk_length = to_optional(topk_length, "topk_length", keep);
  args.attn_sink = to_optional(attn_sink, "attn_sink", keep);
  args.extra_kv_cache = to_optional(extra_kv_cache, "extra_kv_cache", keep);
  args.extra_indices = to_optional(extra_indices, "extra_indices", keep);
  args.extra_topk_length = to_optional(extra_topk_length, "extra_topk_length", keep);
  args.out = to_view(out, "out", true, keep);
  args.lse = to_view(lse, "lse", true, keep);
  args.head_dim_v = head_dim_v;
  args.softmax_scale = softmax_scale;
  nb::gil_scoped_release release;
  if (plan != nullptr) {
    flashmla::mla_sparse_decode(args, plan->get(), as_stream(stream));
  } else {
    flashmla::mla_sparse_decode(args, as_stream(stream));
  }
}

// Whether `stream` (a cudaStream_t) is capturing a CUDA graph. A failed query (e.g. the legacy
// stream while a blocking stream captures) counts as capturing: callers use the answer to keep
// buffers alive for a graph, and keeping them is the safe side.
bool stream_is_capturing(uintptr_t stream) {
#if defined(FLASHMLA_WITH_CUDA)
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(reinterpret_cast<cudaStream_t>(stream), &status) != cudaSuccess) {
    cudaGetLastError();
    return true;
  }
  return status != cudaStreamCaptureStatusNone;
#else
  (void)stream;
  return false;
#endif
}

// quantize_kv_cache_fp8 / dequantize_kv_cache_fp8 on (src, dst) views, without the GIL.
template <auto kConvert>
void convert_cache(nb::handle src, nb::handle dst, uintptr_t stream) {
  Keep keep;
  const TensorView s = to_view(src, "src", false, keep);
  const TensorView d = to_view(dst, "dst", true, keep);
  nb::gil_scoped_release release;
  kConvert(s, d, as_stream(stream));
}

// What the bindings see of an object: (data pointer, dtype, shape, strides, device).
std::tuple<uintptr_t, std::string, std::vector<int64_t>, std::vector<int64_t>, std::string>
view_info(nb::handle obj, bool writable) {
  Keep keep;
  const TensorView v = to_view(obj, "tensor", writable, keep);
  return {reinterpret_cast<uintptr_t>(v.data), flashmla::dtype_name(v.dtype),
          std::vector<int64_t>(v.shape.begin(), v.shape.begin() + v.ndim),
          std::vector<int64_t>(v.strides.begin(), v.strides.begin() + v.ndim), v.device.str()};
}

void translate_error(const std::exception_ptr& p, void*) {
  try {
    std::rethrow_exception(p);
  } catch (const Error& e) {
    PyObject* type = PyExc_RuntimeError;
    switch (e.kind()) {
      case ErrorKind::kValue:
        type = PyExc_ValueError;
        break;
      case ErrorKind::kType:
        type = PyExc_TypeError;
        break;
      case ErrorKind::kNotSupported:
        type = PyExc_NotImplementedError;
        break;
      case ErrorKind::kRuntime:
        type = PyExc_RuntimeError;
        break;
    }
    PyErr_SetString(type, e.what());
  }
}

}  // namespace

NB_MODULE(_C, m) {
  m.doc() = "flashmla C++ bindings (internal: use the flashmla package)";
  nb::register_exception_translator(translate_error);

  m.attr("FP8_ROW_BYTES") = flashmla::kFP8RowBytes;
#if defined(FLASHMLA_WITH_CUDA)
  m.attr("BUILT_WITH_CUDA") = true;
#else
  m.attr("BUILT_WITH_CUDA") = false;
#endif

  m.def("_register_torch", &register_torch, nb::arg("tensor_type"), nb::arg("dtypes"));
  m.def("_register_numpy", &register_numpy, nb::arg("ndarray_type"), nb::arg("dtypes"));
  m.def("cuda_available", &flashmla::cuda_available,
        "True when this build has the CUDA backend and a usable GPU is present.");
  m.def("view_info", &view_info, nb::arg("tensor").none(), nb::arg("writable") = false,
        "(data pointer, dtype, shape, strides in elements, device) as flashmla sees `tensor`.");

  nb::class_<Plan>(m, "Plan", "flashmla::DecodePlan: split-KV schedule and workspace.")
      .def(nb::init<int, int, int, int, int, const std::string&, int, int, int, int>(),
           nb::arg("batch_size"), nb::arg("s_q"), nb::arg("h_q"), nb::arg("h_kv"),
           nb::arg("page_block_size"), nb::arg("device"), nb::arg("device_index"),
           nb::arg("head_dim_v"), nb::arg("num_workers") = 0, nb::arg("topk") = 0)
      .def("update", &Plan::update, nb::arg("cache_seqlens").none(), nb::arg("stream") = 0)
      .def_prop_ro("batch_size", [](const Plan& p) { return p.get().shape().batch_size; })
      .def_prop_ro("s_q", [](const Plan& p) { return p.get().shape().s_q; })
      .def_prop_ro("h_q", [](const Plan& p) { return p.get().shape().h_q; })
      .def_prop_ro("h_kv", [](const Plan& p) { return p.get().shape().h_kv; })
      .def_prop_ro("page_block_size", [](const Plan& p) { return p.get().shape().page_block_size; })
      .def_prop_ro("topk", [](const Plan& p) { return p.get().shape().topk; })
      .def_prop_ro("head_dim_v", [](const Plan& p) { return p.get().head_dim_v(); })
      .def_prop_ro("device", [](const Plan& p) { return p.get().device().str(); })
      .def_prop_ro("planned", [](const Plan& p) { return p.get().planned(); })
      .def_prop_ro("num_workers", [](const Plan& p) { return p.get().num_workers(); })
      .def_prop_ro("block_n", [](const Plan& p) { return p.get().block_n(); });

  m.def("dense_decode", &dense_decode, nb::arg("plan"), nb::arg("q").none(),
        nb::arg("kv_cache").none(), nb::arg("block_table").none(), nb::arg("cache_seqlens").none(),
        nb::arg("out").none(), nb::arg("lse").none(), nb::arg("head_dim_v"),
        nb::arg("softmax_scale"), nb::arg("causal"), nb::arg("stream"));
  m.def("sparse_decode", &sparse_decode, nb::arg("plan").none(), nb::arg("q").none(),
        nb::arg("kv_cache").none(), nb::arg("indices").none(), nb::arg("topk_length").none(),
        nb::arg("attn_sink").none(), nb::arg("extra_kv_cache").none(),
        nb::arg("extra_indices").none(), nb::arg("extra_topk_length").none(), nb::arg("out").none(),
        nb::arg("lse").none(), nb::arg("head_dim_v"), nb::arg("softmax_scale"), nb::arg("stream"));
  m.def("stream_is_capturing", &stream_is_capturing, nb::arg("stream"),
        "Whether the cudaStream_t `stream` is capturing a CUDA graph (False without CUDA).");
  m.def("quantize_fp8", &convert_cache<&flashmla::quantize_kv_cache_fp8>, nb::arg("src").none(),
        nb::arg("dst").none(), nb::arg("stream"));
  m.def("dequantize_fp8", &convert_cache<&flashmla::dequantize_kv_cache_fp8>, nb::arg("src").none(),
        nb::arg("dst").none(), nb::arg("stream"));
}
