"""Benchmarks: overnight and LangGraph measured side by side in one run (`make bench`).

`python -m benchmarks.run` is the driver; every other module is one scenario family that also
runs on its own and prints one JSON line (see docs/performance.md).
"""
