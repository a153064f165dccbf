"""Use cases: configurations, publishing and fan-out, the delivery log."""
