"""Circuits in superposition (Bushnaq & Mendel 2024; Linsefors & Bushnaq 2025).

``CircuitSet`` holds T small L-layer circuits; ``compress`` embeds them in one
large network (``SuperposedNetwork``) that runs any few of them at once;
``measure_interference`` measures the errors and compares them with theory.
"""

from .assign import max_circuits
from .circuitset import CircuitSet
from .interference import measure_interference
from .network import SuperposedNetwork, compress

__all__ = ["CircuitSet", "compress", "SuperposedNetwork", "measure_interference", "max_circuits"]
