"""Sweeps: a spec expanded into cells (base -> inject -> unlearn -> report), run by an executor."""
