"""Tolerances for comparing floating-point results computed two different ways.

fp32 matmuls and reductions are not bit-exact across CPU kernels (AVX2 vs AVX-512, Intel vs
AMD) or batch shapes: a 4-layer transformer's features move by a few 1e-6 between them
(2.2e-6 measured on an AMD EPYC against 0 here). Comparisons of fp32 network outputs computed
by two code paths use ``FP32_NETWORK``; exact equality stays where it is guaranteed (the same
computation, same shapes, same process).
"""

FP32_NETWORK = {"rtol": 1e-4, "atol": 1e-5}
