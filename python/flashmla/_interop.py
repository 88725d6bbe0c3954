"""Framework adapters: where the caller's arrays live, how to allocate outputs beside them,
and which stream to run on.

The C++ side reads every input in place (no copies). Outputs are allocated here with the
caller's framework on the caller's device, so they come back as that framework's arrays:

- torch: ``torch.empty`` on ``q.device``; work runs on ``torch.cuda.current_stream()``.
- numpy: ``numpy.empty`` (bf16 through ``ml_dtypes.bfloat16``).
- cupy: ``cupy.empty``; work runs on cupy's current stream.
- other DLPack producers (jax, ...): CPU outputs are numpy arrays handed to the framework's
  ``asarray``; CUDA outputs are allocated with cupy or torch and handed over via DLPack.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from ._backend import numpy_bf16, torch_module

# Output kinds: the dtype of q, fp32 (lse), the FP8 cache, bf16 (dequantized cache).
ACT = "act"
F32 = "f32"
FP8 = "fp8"
BF16 = "bf16"

DeviceTuple = Tuple[str, int]

_DL_CPU, _DL_CUDA, _DL_CUDA_HOST, _DL_CUDA_MANAGED = 1, 2, 3, 13


class Adapter:
    """What the Python layer needs from one array framework."""

    name = "?"

    def device(self, like: Any) -> DeviceTuple:
        """("cpu", 0) or ("cuda", index) for an array of this framework."""
        raise NotImplementedError

    def empty(self, like: Any, shape: Tuple[int, ...], kind: str) -> Any:
        """An uninitialized array beside `like`; `kind` picks the dtype (ACT: like's)."""
        raise NotImplementedError

    def stream(self, like: Any) -> int:
        """The framework's current CUDA stream for `like`'s device (0 on the CPU)."""
        return 0

    def wrap(self, array: Any, like: Any) -> Any:
        """Turns an array made by `empty` into what the caller gets back."""
        return array


class TorchAdapter(Adapter):
    name = "torch"

    def __init__(self, torch: Any) -> None:
        self._torch = torch
        self._dtypes = {F32: torch.float32, FP8: getattr(torch, "float8_e4m3fn", torch.uint8),
                        BF16: torch.bfloat16}
        self._raw_stream: Optional[Callable[[int], int]] = getattr(
            torch._C, "_cuda_getCurrentRawStream", None)

    def device(self, like: Any) -> DeviceTuple:
        if like.is_cuda:
            return ("cuda", like.get_device())
        if like.is_cpu:
            return ("cpu", 0)
        raise TypeError(f"tensor is on device {like.device}; flashmla takes CPU and CUDA tensors")

    def empty(self, like: Any, shape: Tuple[int, ...], kind: str) -> Any:
        dtype = like.dtype if kind is ACT else self._dtypes[kind]
        return self._torch.empty(shape, dtype=dtype, device=like.device)

    def stream(self, like: Any) -> int:
        if not like.is_cuda:
            return 0
        if self._raw_stream is not None:
            return self._raw_stream(like.get_device())
        return int(self._torch.cuda.current_stream(like.device).cuda_stream)


class NumpyAdapter(Adapter):
    name = "numpy"

    def device(self, like: Any) -> DeviceTuple:
        return ("cpu", 0)

    def empty(self, like: Any, shape: Tuple[int, ...], kind: str) -> Any:
        if kind is ACT:
            dtype = like.dtype
        elif kind is F32:
            dtype = np.float32
        elif kind is FP8:
            dtype = np.uint8
        else:
            dtype = numpy_bf16()
        return np.empty(shape, dtype=dtype)


class DLPackAdapter(Adapter):
    """Any other framework whose arrays have __dlpack__ / __dlpack_device__ (cupy, jax, ...)."""

    def __init__(self, array_type: type) -> None:
        self.name = array_type.__module__.split(".")[0]
        self._module: Any = sys.modules.get(self.name)

    def device(self, like: Any) -> DeviceTuple:
        try:
            dev_type, index = like.__dlpack_device__()
        except AttributeError:
            return ("cpu", 0)  # buffer-protocol objects (memoryview, array.array, ...)
        if dev_type in (_DL_CPU, _DL_CUDA_HOST):
            return ("cpu", 0)
        if dev_type in (_DL_CUDA, _DL_CUDA_MANAGED):
            return ("cuda", int(index))
        raise TypeError(f"array is on DLPack device type {dev_type}; flashmla takes CPU and CUDA")

    def _np_dtype(self, like: Any, kind: str) -> Any:
        if kind is ACT:
            return np.dtype(like.dtype)
        return {F32: np.dtype(np.float32), FP8: np.dtype(np.uint8)}.get(kind) or numpy_bf16()

    def empty(self, like: Any, shape: Tuple[int, ...], kind: str) -> Any:
        dev_type, index = self.device(like)
        dtype = self._np_dtype(like, kind)
        if dev_type == "cpu":
            return np.empty(shape, dtype=dtype)
        if self.name == "cupy":
            cupy = self._module
            with cupy.cuda.Device(index):
                return cupy.empty(shape, dtype=dtype)
        torch = torch_module
        if torch is not None:
            tdtype = {np.dtype(np.float16): torch.float16, np.dtype(np.float32): torch.float32,
                      np.dtype(np.uint8): torch.uint8}.get(dtype, torch.bfloat16)
            return torch.empty(shape, dtype=tdtype, device=f"cuda:{index}")
        try:
            import cupy as cp
        except ImportError as e:
            raise NotImplementedError(
                f"allocating outputs for {self.name} CUDA arrays needs torch or cupy; "
                "or pass out= and lse=") from e
        with cp.cuda.Device(index):
            return cp.empty(shape, dtype=dtype)

    def stream(self, like: Any) -> int:
        if self.name == "cupy" and self.device(like)[0] == "cuda":
            return int(self._module.cuda.get_current_stream().ptr)
        return 0

    def wrap(self, array: Any, like: Any) -> Any:
        if self.name in ("cupy", "numpy"):
            return array
        xp = like.__array_namespace__() if hasattr(like, "__array_namespace__") else self._module
        if isinstance(array, np.ndarray):
            convert = getattr(xp, "asarray", None)
        else:
            convert = getattr(xp, "from_dlpack", None)
        return array if convert is None else convert(array)


_ADAPTERS: Dict[type, Adapter] = {np.ndarray: NumpyAdapter()}


def adapter_for(x: Any, name: str = "q") -> Adapter:
    """The adapter for `x`'s framework (cached per type)."""
    adapter = _ADAPTERS.get(type(x))
    if adapter is not None:
        return adapter
    torch = torch_module
    if torch is not None and isinstance(x, torch.Tensor):
        adapter = TorchAdapter(torch)
    elif isinstance(x, np.ndarray):
        adapter = _ADAPTERS[np.ndarray]
    elif hasattr(x, "__dlpack__") or hasattr(x, "__dlpack_device__"):
        adapter = DLPackAdapter(type(x))
    elif x is None:
        raise TypeError(f"{name}: is required, got None")
    else:
        raise TypeError(
            f"{name}: expected a tensor or array (torch, numpy, cupy, jax or any DLPack "
            f"producer), got {type(x).__module__}.{type(x).__qualname__}")
    _ADAPTERS[type(x)] = adapter
    return adapter


def shape_of(x: Any, name: str, ndim: int, layout: str) -> Tuple[int, ...]:
    """x.shape as a tuple, checked to have `ndim` dimensions (ValueError naming `name`)."""
    try:
        shape = tuple(x.shape)
    except AttributeError:
        raise TypeError(f"{name}: expected a tensor or array {layout}, got "
                        f"{type(x).__module__}.{type(x).__qualname__}") from None
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions {layout}, got shape {shape}")
    return shape


def dtype_name(x: Any) -> str:
    """A framework-neutral dtype name: 'bfloat16', 'float8_e4m3fn', 'uint8', ..."""
    return str(getattr(x, "dtype", "")).rsplit(".", 1)[-1]


def resolve_stream(stream: Any, adapter: Adapter, like: Any) -> int:
    """A raw cudaStream_t as int: None means the framework's current stream for `like`."""
    if stream is None:
        return adapter.stream(like)
    if isinstance(stream, int):
        return stream
    for attr in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy Stream
        handle = getattr(stream, attr, None)
        if isinstance(handle, int):
            return handle
    raise TypeError(f"stream: expected None, an int (cudaStream_t) or a torch/cupy stream, "
                    f"got {type(stream).__qualname__}")
