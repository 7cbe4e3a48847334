"""What the fuzz suites share: hypothesis settings, the hang guard and the count tables that
pytest's terminal summary prints after every run (tests/conftest.py), ``-s`` or not."""
import collections
import signal
from contextlib import contextmanager
from typing import Dict, List, Tuple

from hypothesis import HealthCheck, settings

HANG_SECONDS = 20  # a generous bound on one case: a guard against hangs, not a speed test

# (title, columns, counts per row): filled by the fuzz modules, printed by the terminal summary
TABLES: List[Tuple[str, Tuple[str, ...], Dict[str, collections.Counter]]] = []


def count_table(title: str, columns: Tuple[str, ...]) -> Dict[str, collections.Counter]:
    """A table of counts per row (op, loader) printed at the end of the test run."""
    counts = collections.defaultdict(collections.Counter)
    TABLES.append((title, columns, counts))
    return counts


def fuzz(max_examples: int) -> settings:
    """Hypothesis settings: a bounded number of cases, no timing deadline (a busy CI machine must
    not fail a case for being slow; ``hang_guard`` catches hangs), no example database."""
    return settings(max_examples=max_examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


class Hang(BaseException):  # not an Exception: no error handling under test may swallow it
    pass


@contextmanager
def hang_guard(seconds: int = HANG_SECONDS):
    def alarm(signum, frame):
        raise Hang(f"a case ran longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
