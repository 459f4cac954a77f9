"""Multilingual evaluation."""
