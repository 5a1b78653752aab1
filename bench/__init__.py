"""Benchmarks of the mlflow-platform program (run: `python -m bench.bench`)."""
