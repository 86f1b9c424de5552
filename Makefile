.PHONY: bench
PY ?= .venv/bin/python

# Benchmarks (not tests): bill-run invoices/s and PDF pages/s, each with its baseline ratio.
bench:
	$(PY) -m bench.billrun
	$(PY) -m bench.pdf
