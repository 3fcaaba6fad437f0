"""Movie Time benchmarks: each module prints its figures (`python -m benchmarks.<name> --help`)."""
