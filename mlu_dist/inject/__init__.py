"""Injection of the fake facts: its config and its data pools (the job is ``jobs/inject.py``)."""
