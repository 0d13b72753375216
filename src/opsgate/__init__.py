"""opsgate: operational runbooks as pytest checks, with a gate that never passes on nothing.

>>> from opsgate import __version__
>>> isinstance(__version__, str)
True
"""

__version__ = "0.1.0"
