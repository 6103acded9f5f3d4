"""mlx where it is installed. CI installs mlx[cpu] (the Makefile does), so
these tests run there; the GPU machine's image has no mlx, and its tests say
so as a visible skip instead of failing to import."""

import pytest

try:
    import mlx.core as mx
except ImportError:
    mx = None

needs_mlx = pytest.mark.skipif(mx is None, reason="SKIP: mlx is not installed here")
MLX = pytest.param("mlx", marks=needs_mlx)
