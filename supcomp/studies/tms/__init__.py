"""Reproductions of "Toy Models of Superposition" (Elhage et al. 2022): one module per figure, dispatched by
:mod:`.experiments` (``supcomp tms NAME``), figures in :mod:`.plots`. The analysis they rest on is
:mod:`supcomp.tms.analysis`."""
