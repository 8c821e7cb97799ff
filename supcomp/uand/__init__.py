"""Boolean circuits in superposition: the U-AND construction.

From "Mathematical Models of Computation in Superposition" (Hänni, Mendel & Vaintrob 2024).

* ``UAnd``: the layer (C stored sparsely), its forward, gate read-outs, all-pairs read-out,
  and the variants (input embedding, fan-in k, targeted subsets via ``UAnd.targeted``, XOR).
* ``theory``: predicted mean error and spread of the estimates; ``suggest_p``.

Kernels: ``supcomp.ops.uand`` (reference, C++ ``csrc/uand.cpp``, Triton ``kernels/uand.py``),
dispatched per call like every op. The error tables and capacity study are in
``supcomp.studies.uand``.
"""

from .construction import UAnd, empty_probability, expected_set_size
from .theory import UAndTheory, inv_count_mean, suggest_p, theory

__all__ = ["UAnd", "theory", "UAndTheory", "suggest_p", "inv_count_mean", "expected_set_size", "empty_probability"]
