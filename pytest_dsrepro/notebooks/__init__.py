"""Notebook items, their execution and kernels, cell rules, parameters."""
