.PHONY: bench bench-quick
PY ?= .venv/bin/python

# Benchmarks (not tests), every figure with its same-run baseline ratio: bill run (in-process,
# 1 and 2 queue workers) vs raw SQL, growth 10,000 -> 100,000 customers, PDF pages/s, API
# under gunicorn vs hello-world, hook dispatch, usage import. See `python -m bench --help`.
bench:
	$(PY) -m bench

# The same with every size divided by 10 (development).
bench-quick:
	$(PY) -m bench --quick
