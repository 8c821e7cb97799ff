"""Mechanisms every layer shares, one of each: atomic files, figures, progress bars, timing."""
