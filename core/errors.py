"""Domain errors raised by ``core``. Entry points map them to messages / HTTP codes."""


class AmoebaError(Exception):
    """Base class for every error that ``core`` raises on purpose."""


class ConfigError(AmoebaError, ValueError):
    """A configuration, shape or argument is invalid."""


class UnsupportedModelError(AmoebaError):
    """The model is not a supported Llama-family causal LM."""


class StrategyError(AmoebaError):
    """A strategy file is missing, corrupt, or made for another model."""


class DataMissingError(AmoebaError, FileNotFoundError):
    """A data file or directory that the operation needs does not exist."""


class NonFiniteWeightError(AmoebaError, ValueError):
    """A merged or exported tensor holds NaN or inf (the tensor is named in the message)."""
