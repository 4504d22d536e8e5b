"""Error and warning classes raised by :mod:`disparity`.

Every error raised on bad input is a :class:`DisparityError`; its message says what was
found, where (column, number of rows, the first offending rows) and how to fix it. The
command line prints that message and exits non-zero without a traceback.
"""

from __future__ import annotations


class DisparityError(Exception):
    """Base class of every error the package raises on bad input or a bad request."""


class ValidationError(DisparityError, ValueError):
    """Input data failed validation; the message lists every problem found.

    Attributes
    ----------
    problems : list of str
        One human-readable paragraph per problem.
    """

    def __init__(self, problems: list[str], *, what: str = "data") -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{what} failed validation with {n} problem{'s' if n != 1 else ''}:"
        body = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, 1))
        super().__init__(f"{head}\n{body}")


class ReadError(DisparityError, OSError):
    """A file could not be found, opened or parsed."""


class WriteError(DisparityError, OSError):
    """A run folder or output file could not be written (full disk, read-only, in use, or
    holding files the package did not write)."""


class UnconvergedError(DisparityError, RuntimeError):
    """A fit did not converge; nothing was published. The command line exits with 3."""


class SpecError(DisparityError, ValueError):
    """A model specification (TOML file or Python object) is invalid."""


class FitError(DisparityError, RuntimeError):
    """A model could not be fitted (e.g. separation in a frequentist engine)."""


class DisparityWarning(UserWarning):
    """Base class of warnings: fit diagnostics, dropped levels, suppressed values."""


class ConvergenceWarning(DisparityWarning):
    """A fit's convergence diagnostics failed; the message says what to try."""


class DataWarning(DisparityWarning):
    """Something in the data was dropped or changed; the message says what and why."""
