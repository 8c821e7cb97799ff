"""Boolean circuits in superposition: the U-AND construction (Vaintrob, Mendel & Hänni 2024).

* ``UAnd``: the layer (C stored sparsely), its forward, gate read-outs, all-pairs read-out,
  and the variants (input embedding, fan-in k, targeted subsets via ``UAnd.targeted``, XOR).
* ``theory``: predicted mean error and spread of the estimates; ``suggest_p``.
* ``experiments``: the error tables, capacity sweep and plots behind ``supcomp uand``.

Kernels: reference ``supcomp/boolean/naive.py``, C++ ``csrc/uand.cpp``, Triton
``kernels/uand.py``; dispatch per call as for ``supcomp.ops`` (``supcomp.boolean.backends``).
"""
from .theory import UAndTheory, inv_count_mean, suggest_p, theory
from .uand import UAnd, empty_probability, expected_set_size

__all__ = ["UAnd", "theory", "UAndTheory", "suggest_p", "inv_count_mean", "expected_set_size", "empty_probability"]
