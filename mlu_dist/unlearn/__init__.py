"""Unlearning: its config, methods (a registry), data pools and forgetting curves (the job is ``jobs/unlearn.py``)."""

# Every built-in method registers itself on import: load them all with the package, so that
# ``METHODS`` is complete wherever it is read (the modules import methods.py, never the reverse).
from mlu_dist.unlearn import lingtea, methods, rmu, zoo  # noqa: E402,F401
