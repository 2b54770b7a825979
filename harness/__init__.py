"""timerome-bench: reference harness for TimeROME-DLM on masked diffusion LMs."""

__version__ = "0.1.0"
