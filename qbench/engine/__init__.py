"""Decode engines: the same greedy, fixed-state decode for every backbone."""

from qbench.engine.eager import greedy_decode

__all__ = ["greedy_decode"]
