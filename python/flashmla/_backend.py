"""Loads the compiled extension and tells it about the array frameworks that are present.

The extension reads torch tensors and numpy arrays through fast paths keyed on their types and
dtypes, registered here; anything else goes through DLPack (nanobind's ndarray).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from types import ModuleType
from typing import Any, Optional

import numpy as np

from . import _C

__all__ = ["_C", "torch_module", "numpy_bf16", "numpy_fp8"]

_ml_dtypes: Optional[ModuleType]
try:
    import ml_dtypes as _ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes is optional
    _ml_dtypes = None


def numpy_bf16() -> Any:
    """numpy's bfloat16 dtype (ml_dtypes.bfloat16); raises TypeError when ml_dtypes is absent."""
    if _ml_dtypes is None:
        raise TypeError(
            "numpy has no bfloat16 dtype: install ml_dtypes (pip install ml_dtypes) "
            "or use torch tensors"
        )
    return np.dtype(_ml_dtypes.bfloat16)


def numpy_fp8() -> Any:
    """ml_dtypes.float8_e4m3fn, or None when ml_dtypes is absent."""
    return None if _ml_dtypes is None else np.dtype(_ml_dtypes.float8_e4m3fn)


def _register_numpy() -> None:
    dtypes: list[tuple[Any, str]] = [
        (np.dtype(np.float16), "fp16"),
        (np.dtype(np.float32), "fp32"),
        (np.dtype(np.int32), "int32"),
        (np.dtype(np.uint8), "uint8"),
    ]
    if _ml_dtypes is not None:
        dtypes.append((np.dtype(_ml_dtypes.bfloat16), "bf16"))
        dtypes.append((np.dtype(_ml_dtypes.float8_e4m3fn), "fp8_e4m3"))
    _C._register_numpy(np.ndarray, dtypes)


def _load_torch() -> Optional[ModuleType]:
    """torch, when installed (FLASHMLA_IMPORT_TORCH=0 skips it unless already imported)."""
    if "torch" in sys.modules:
        return sys.modules["torch"]
    if os.environ.get("FLASHMLA_IMPORT_TORCH", "1") == "0":
        return None
    if importlib.util.find_spec("torch") is None:
        return None
    import torch

    return torch


def _register_torch(torch: ModuleType) -> None:
    dtypes: list[tuple[Any, str]] = [
        (torch.bfloat16, "bf16"),
        (torch.float16, "fp16"),
        (torch.float32, "fp32"),
        (torch.int32, "int32"),
        (torch.uint8, "uint8"),
    ]
    if hasattr(torch, "float8_e4m3fn"):
        dtypes.append((torch.float8_e4m3fn, "fp8_e4m3"))
    _C._register_torch(torch.Tensor, dtypes)


_register_numpy()
torch_module: Optional[ModuleType] = _load_torch()
if torch_module is not None:
    _register_torch(torch_module)
