"""Ways to show a gate's result: terminal, Markdown, JUnit XML, Prometheus textfile, Nagios.

Each module takes a ``GateResult`` and renders one format; none of them decides anything.
"""
