"""The one convention for statistics the data cannot define: NaN, with the reason beside it.

A statistic is undefined when its input cannot carry it: a set without a finite distance,
one value where a spread is needed, every value tied so that ranks say nothing, a ratio
of 0 over 0, a ratio over a zero spread, a NaN input. Then difflens:

- returns NaN, never raises and never makes a number up. Where scipy or scikit-posthocs
  define a value on such input, that value is returned instead and the reason still says
  so: the Mann-Whitney p-value of samples that are all tied is 1 (``scipy.stats.
  mannwhitneyu``), Cliff's delta of two sets of one common value is 0 (from scipy's U),
  a permutation p-value whose every permutation ties the observed statistic is 1
  (``scipy.stats.permutation_test``), and Kruskal-Wallis with one value per set is an
  ordinary test;
- says why: a result that is a dict has a ``reason`` key and a table a ``reason`` column
  (the empty string when every number was computed the ordinary way); a function that
  returns a bare float emits an :class:`UndefinedStatisticWarning` whose message names the
  sets and the reason, as ``scipy.stats`` emits its ``SmallSampleWarning``. Callers that
  build tables gather those warnings into their ``reason`` column with
  :func:`collect_reasons`;
- raises only for a call that is wrong whatever the data (an unknown variant, a matrix of
  the wrong shape, mixed classes within one instance), with a message naming it.

JSON output (:func:`difflens.viz.plots.record_numbers`) writes NaN as ``null``; the
``reasons`` of :meth:`difflens.analysis.set_analysis.SetAnalysis.numbers` say why.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np

NAN = float("nan")


class UndefinedStatisticWarning(UserWarning):
    """A statistic is NaN (or set by scipy's convention) because its input cannot define it.

    The message names the sets or samples and says what is missing.
    """


def undefined(reason: str, stacklevel: int = 3) -> float:
    """Warn that a statistic is undefined and give its value, NaN.

    Args:
        reason: what is missing, naming the sets (e.g. ``"scsi has no finite distance"``).
        stacklevel: passed to :func:`warnings.warn`; the default points at the caller of the
            function that calls this one.

    Returns:
        ``float("nan")``.
    """
    warnings.warn(reason, UndefinedStatisticWarning, stacklevel=stacklevel)
    return NAN


@contextmanager
def collect_reasons() -> Iterator[list[str]]:
    """Gather the :class:`UndefinedStatisticWarning` messages raised inside the block.

    Other warnings are passed on unchanged once the block ends.

    Yields:
        A list that holds, once the block has ended, each distinct message in the order
        first seen.
    """
    reasons: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedStatisticWarning)
        yield reasons
    for item in caught:
        if issubclass(item.category, UndefinedStatisticWarning):
            if str(item.message) not in reasons:
                reasons.append(str(item.message))
        else:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno)


def join_reasons(*reasons: str) -> str:
    """The non-empty reasons joined with ``"; "``, each once, in order.

    Args:
        *reasons: reasons, some possibly empty.

    Returns:
        One reason, ``""`` when all are empty.
    """
    seen: list[str] = []
    for reason in reasons:
        if reason and reason not in seen:
            seen.append(reason)
    return "; ".join(seen)


def sample_problems(samples: Mapping[str, np.ndarray], min_size: int = 1) -> str:
    """Why some samples cannot enter a statistic: too few values, or NaN values.

    Args:
        samples: ``{name: float array}``; names appear in the reason.
        min_size: the fewest values a sample needs.

    Returns:
        The reason (e.g. ``"scsi is empty; dcdi holds 3 NaN values"``), ``""`` when every
        sample has at least ``min_size`` values and none is NaN.
    """
    problems = []
    for name, values in samples.items():
        values = np.asarray(values, dtype=np.float64)
        if len(values) < min_size:
            count = "is empty" if len(values) == 0 else f"has {len(values)} value(s)"
            needed = "" if min_size == 1 else f" ({min_size} needed)"
            problems.append(f"{name} {count}{needed}")
        elif np.isnan(values).any():
            problems.append(f"{name} holds {int(np.isnan(values).sum())} NaN values")
    return "; ".join(problems)
