"""Bill runs: billing every account for its closed periods.

* :mod:`.engine`: a bill run: which accounts and periods, one invoice per account and period,
  each written in one transaction.
* :mod:`.queue`: bill runs on a worker queue (huey), the sweeper.
* :mod:`.summary`: what a run did (:class:`~.summary.RunSummary`), built one way for every
  kind of run and every reader.
* :mod:`.records`: bill-run records that die with their process: heartbeat, "interrupted",
  resume.
"""
