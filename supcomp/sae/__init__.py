"""Sparse autoencoders on ground truth: synthetic worlds with known features, SAEs on supcomp's kernels, grading."""

from .world import World, WorldConfig, WorldSample, synthsaebench_16k

__all__ = ["World", "WorldConfig", "WorldSample", "synthsaebench_16k"]
