"""Billing engine: money arithmetic, billing periods, bill runs and invoices."""
