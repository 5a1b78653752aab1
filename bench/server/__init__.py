"""The tracking server benchmark (section 1 of `make bench`): bench/server/server_bench.py."""
