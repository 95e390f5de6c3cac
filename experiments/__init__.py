"""The benchmark programs that bench.py runs, one per concern: speed.py (the speed and cost ratios),
claims.py (the paper's claims on synthetic sets), reproduce.py (REPRODUCE.md's tables and costs), and
stats.py, the statistics they decide by. They sit above the concept files and import them."""
