"""Side-by-side benchmark harness: `python -m benchmarks.bench --help`."""
