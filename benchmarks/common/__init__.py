"""Shared machinery of the benchmarks: the per-op scripts ``benchmarks/ops/<op>.py``, the driver
``benchmarks/report.py`` and the studies' benchmarks at the top of ``benchmarks/``.

Every timing goes through the one harness, :func:`supcomp.utils.timing.time_interleaved`.

* :mod:`common.cases`    the op-table cases: sizes, providers (supcomp and its peers), inputs, work
  counts, output checks
* :mod:`common.optable`  an op's cases timed, checked and written as its RESULTS.md section
* :mod:`common.memory`   peak extra memory of one provider call, in a fresh subprocess
* :mod:`common.load`     how much other processes use the CPUs (the machine is shared)
* :mod:`common.machine`  ceilings of the reference machine, its description, a section's context line
* :mod:`common.steps`    rows and table of the training-step benchmarks (tms_step, cc_train)
* :mod:`common.results`  Markdown sections of RESULTS.md: put one in place, compose the whole file
* :mod:`common.cli`      the command line every per-op script shares
"""
