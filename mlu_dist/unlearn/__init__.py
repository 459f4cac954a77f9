"""Unlearning: its config, methods (a registry), data pools and forgetting curves (the job is ``jobs/unlearn.py``)."""
