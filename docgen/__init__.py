"""The docs site's generator: reference tables from the code, the benchmarks page from the
committed results, and the checker of every example in README.md and docs/ (not installed:
it serves `make docs` and the tests)."""
