"""Stand-ins for the reference systems: real services on loopback, on free ports, shaped like
each system's runbook describes it, with switches that break them in specific ways."""
