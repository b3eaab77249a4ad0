"""Fused Triton kernels for PER (installed as per_triton.kernels)."""
