"""Relearning attacks: is an unlearned fake really gone, or does it come back after a few steps?"""
