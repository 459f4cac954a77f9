"""mlu_dist: distributed learn-and-unlearn experiments on multilingual LLMs."""

__version__ = "0.1.0"
