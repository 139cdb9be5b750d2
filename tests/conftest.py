"""Shared test configuration: hypothesis profiles.

``ci`` (default) is fast enough for the 10-minute CI budget; ``dev`` is thorough.
Select with ``HYPOTHESIS_PROFILE=dev pytest``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test module single-threaded (``pytestmark = pytest.mark.usefixtures(...)``).

    The tensors of these tests are small: on a 2-core machine two OpenMP threads spin against
    each other (measured 6-20x slower when other processes load the machine). The thread count
    is restored afterwards.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


#: Outcomes of the robustness suites' generated calls (``tests/*/test_robustness.py``), by kind.
ROBUSTNESS: Counter[str] = Counter()


@pytest.fixture(scope="session")
def robustness() -> Iterator[Callable[[str], None]]:
    """Record one generated call's outcome (``"finite"``, ``"status:..."``, ``"ParameterError"``);
    with ``ROBUSTNESS_REPORT=path`` the totals are written there as JSON at the end."""
    yield lambda kind: ROBUSTNESS.update([kind])
    path = os.environ.get("ROBUSTNESS_REPORT")
    if path:
        totals = {"calls": sum(ROBUSTNESS.values()), "outcomes": dict(sorted(ROBUSTNESS.items()))}
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(totals, fh, indent=1)


#: Memory the robustness suites' generated calls may use: sizes beyond it must be refused by
#: the estimates (check_memory), never allocated (a shared test machine has no room for 20 GiB
#: draws).
TEST_MEMORY = 2**28


@pytest.fixture(scope="module")
def small_memory() -> Iterator[None]:
    """Make ``check_memory`` see only :data:`TEST_MEMORY` bytes for the module's tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("iclkit.theory.validation.available_memory", lambda: TEST_MEMORY)
        yield
