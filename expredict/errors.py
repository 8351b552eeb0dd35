"""User-facing exceptions.

Every error a user can cause by bad input is one of these. Each subclasses the built-in
exception callers already catch (``ValueError``, ``OSError``), and its message names the file,
record or key at fault and what to do about it. The CLI prints ``str(error)`` on one line and
exits non-zero; it never shows a traceback for an :class:`ExpredictError`.
"""

from __future__ import annotations


class ExpredictError(Exception):
    """Base class of every error expredict raises on purpose."""


class InputFileError(ExpredictError, OSError):
    """A user-given file is missing, unreadable, unindexed, truncated or malformed."""


class ReferenceMismatchError(ExpredictError, ValueError):
    """A VCF REF allele differs from the reference FASTA, or a contig is absent from it."""


class SampleMismatchError(ExpredictError, ValueError):
    """Samples disagree between inputs (duplicates, or none in common)."""


class ConfigError(ExpredictError, ValueError):
    """The YAML configuration is invalid; the message carries the key path."""


class CacheFormatError(ExpredictError, OSError):
    """An on-disk cache or store has the wrong format version or failed an integrity check."""


class ModelLoadError(ExpredictError, OSError):
    """Model weights could not be loaded exactly (missing, mismatched or randomly initialised)."""


class GenotypeError(ExpredictError, ValueError):
    """A genotype record cannot be used under the chosen policy (e.g. unphased with ``error``)."""
