"""One benchmark per op, ``benchmarks/ops/<op>.py``, each runnable on its own (see ``common.cli``)
and run together by ``benchmarks/report.py``. Each module has ``TITLE`` (its RESULTS.md section's
title) and ``run(opts) -> str`` (the section)."""

OPS = ("sparse_encode", "relu_readout_topk", "relu_readout", "superpose", "uand", "tms_sample", "tms_step")
