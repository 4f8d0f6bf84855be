"""SkipLog: counted, named skips so that a long run goes on past bad items and says so."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger("difflens")


@dataclass
class SkipLog:
    """Collects ``(item, reason)`` records; every record is logged once as a warning.

    A reason reads ``"<kind>: <detail>"`` (as ``str(DatasetError)`` does); :meth:`counts`
    groups the records by the kind before the first colon.

    Attributes:
        records: ``(item, reason)`` pairs in the order they were recorded.
        verbose: log each record as a warning when it is recorded.
        action: the verb of the log line (``"skipped"``; ``"repaired"`` for a log of items
            that were kept after a repair).
    """

    records: list[tuple[str, str]] = field(default_factory=list)
    verbose: bool = True
    action: str = "skipped"

    def skip(self, item: str, reason: str) -> None:
        """Record that ``item`` was passed over (or repaired) and why.

        Args:
            item: the item's name (an image id, ``"<image id>#<object id>"``, a file).
            reason: ``"<kind>: <detail>"``; the detail names the file or object.
        """
        self.records.append((str(item), reason))
        if self.verbose:
            logger.warning("%s %s: %s", self.action, item, reason)

    def extend(self, other: SkipLog) -> None:
        """Append the records of ``other`` (without logging them again).

        Args:
            other: another log, e.g. that of a dataset read inside this run.
        """
        self.records.extend(other.records)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> Counter:
        """Number of records per kind.

        Returns:
            ``Counter`` of the reason's text before its first colon.
        """
        return Counter(reason.split(":")[0] for _, reason in self.records)

    def summary(self) -> str:
        """One line for a log or a notebook.

        Returns:
            ``"nothing skipped"``, or e.g. ``"3 skipped (2 x missing file, 1 x empty mask)"``.
        """
        if not self.records:
            return f"nothing {self.action}"
        parts = ", ".join(f"{n} x {reason}" for reason, n in self.counts().most_common())
        return f"{len(self.records)} {self.action} ({parts})"
