"""Shared fixtures. The tests import the installed `flashmla` (pip install .), or a build
tree's staged copy via PYTHONPATH=<build>/python."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))  # reference.py


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def bf16():
    """numpy's bf16 dtype (ml_dtypes); skips the test without ml_dtypes."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    return ml_dtypes.bfloat16
