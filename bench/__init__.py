"""Benchmarks (`python -m bench`) and the reliability suite (`python -m bench.reliability`).

Every figure is measured next to its anchor in the same run; goals are reported, never asserted.
"""
