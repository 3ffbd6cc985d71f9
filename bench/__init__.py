"""Benchmarks: our server against ncat --chat and a textbook threaded server, side by side.

Run on demand with ``python -m bench.run`` (see ``bench/README.md``); CI runs ``--smoke`` only.
"""
