"""SkipLog: counted, named skips so that a long run goes on past bad items and says so."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

logger = logging.getLogger("difflens")


@dataclass
class SkipLog:
    """Collects ``(item, reason)`` records; every skip is logged once as a warning."""

    records: list[tuple[str, str]] = field(default_factory=list)
    verbose: bool = True

    def skip(self, item: str, reason: str) -> None:
        self.records.append((str(item), reason))
        if self.verbose:
            logger.warning("skipped %s: %s", item, reason)

    def extend(self, other: SkipLog) -> None:
        self.records.extend(other.records)

    def __len__(self) -> int:
        return len(self.records)

    def counts(self) -> Counter:
        """Number of skips per reason (the reason's text before the first colon)."""
        return Counter(reason.split(":")[0] for _, reason in self.records)

    def summary(self) -> str:
        if not self.records:
            return "nothing skipped"
        parts = ", ".join(f"{n} x {reason}" for reason, n in self.counts().most_common())
        return f"{len(self.records)} skipped ({parts})"
