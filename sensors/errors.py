"""Errors raised by the readings domain.

The tree::

    SensorsError
    ├── DecodeError        bytes or text that a decoder could not turn into samples
    ├── UnknownSeriesError a series, device or channel that is not stored
    ├── UnknownRunError    a run id that is not stored
    ├── RunStateError      a run operation that does not fit the run's state
    ├── InvalidTextError   a title, group, site or note holding a character it may not hold
    ├── UnknownSiteError   readings naming a site that is not a site of the inventory's tree
    └── PipelineClosedError  readings submitted after the pipeline was closed

Every error says what was wrong and where, in words a student or teacher can act on.
"""

from __future__ import annotations


class SensorsError(Exception):
    """Base of every error the readings domain raises on purpose."""


class DecodeError(SensorsError):
    """Input that does not decode.

    ``where`` names the position (``"line 3"``, ``"byte 17"``, ``"item 2"``) and ``fmt``
    the format that was being decoded, so the message can be shown as it is.
    """

    def __init__(self, message: str, *, fmt: str, where: str | None = None) -> None:
        self.reason = message
        self.fmt = fmt
        self.where = where
        text = f"{fmt}: {message}" if where is None else f"{fmt}: {where}: {message}"
        super().__init__(text)


class UnknownSeriesError(SensorsError):
    """A series, device or channel that is not stored."""


class UnknownRunError(SensorsError):
    """A run id that is not stored."""


class RunStateError(SensorsError):
    """A run operation that does not fit the run's state (a note on a missing run, a stop twice)."""


class InvalidTextError(SensorsError):
    """A run's title, group or site, or a note, holding a character that
    :mod:`labtext.printable` refuses (a control character, a bidirectional override)."""


class PipelineClosedError(SensorsError):
    """Readings were submitted to a pipeline that has been closed."""


class UnknownSiteError(SensorsError):
    """Readings that name a site which is not a site of the hub's inventory: not stored
    (a series there would be found by no site filter or report). ``site`` is the code as
    named; ``where`` says where the source named it (``the node's topic``, ``field
    site``), so the message tells a coordinator what to fix."""

    def __init__(self, site: str, *, where: str) -> None:
        self.site = site
        self.where = where
        super().__init__(
            f"site {site!r} is not a site of this hub's inventory: add it (POST "
            f"/api/v1/sites, or `labhub inventory import sites`) and replay the refused "
            f"readings (`labhub rejects replay --site {site}`), or fix {where}"
        )
