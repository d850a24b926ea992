"""mlpgen: compile a network spec into three cross-tested training programs."""

__version__ = "0.1.0"
