"""Benchmark profiles: how many chains (jobs) of how many stages, which variants, which time limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    chains: int  # N for B0, B1 and the headline procjob run
    stages: int  # S
    b0_chains: int  # B0's N (its pods = b0_chains * stages)
    b1_tuned: bool  # also run B1 with the controller-manager's client QPS raised (restarts the rig)
    paced_chains: int  # procjob paced at half the B0 ceiling and at half its own rate (0: skip)
    b0_repeat: bool  # run B0 again at the end (drift of the ceiling during the run)
    matrix: tuple[tuple[int, int], ...]  # extra procjob (N, S) points; the headline point is always run
    stall_timeout: float  # a run with no stage finished for this long fails
    run_timeout: float  # a run that is not done after this long fails
    cleanup_timeout: float  # waiting for a namespace (and its pods) to be gone
    restart_wait: float  # how long to wait for the exclusive rig lock


PROFILES = {
    "smoke": Profile("smoke", 5, 2, 10, False, 0, False, (), 30.0, 45.0, 60.0, 0.0),
    "quick": Profile("quick", 300, 3, 300, True, 150, True, (), 90.0, 300.0, 300.0, 120.0),
    "full": Profile(
        "full",
        1000,
        3,
        1000,
        True,
        300,
        True,
        tuple((n, s) for n in (100, 1000, 5000) for s in (1, 3, 5) if (n, s) != (1000, 3)),
        120.0,
        3600.0,
        900.0,
        1800.0,
    ),
}
