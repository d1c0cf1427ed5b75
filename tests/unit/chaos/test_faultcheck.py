"""The takeover check of a leader kill: within lease + renew deadline + retry of the kill, plus the
CPU stall the kernel measured in that window (chaos.pressure) — nothing more on an idle machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chaos.faultcheck import judge
from chaos.history import build
from chaos.pressure import sample, stalled

T0 = 1_800_000_000.0
TIMINGS = (4.0, 3.0, 0.5)  # nominal takeover bound 7.5 s


def lease(t: float, holder: str) -> dict[str, Any]:
    return {"k": "lease", "t": t, "rv": int(t * 10), "e": "MODIFIED", "ns": "sys", "n": "pj", "holder": holder}


def killed_then_led_after(
    seconds: float, samples: list[tuple[float, float]] | None = None, timings: tuple[float, float, float] = TIMINGS
) -> dict[str, Any]:
    """The verdict on a leader killed at T0 whose standby held the Lease `seconds` later."""
    history = build([lease(T0 - 1, "chaos-a_1"), lease(T0 + seconds, "chaos-b_2")])
    fault = {"name": "leader-kill", "result": {"killed_at": T0}, "started": T0, "ended": T0 + 1}
    return judge(fault, history, [], [], timings, samples)


def steady(rate: float, start: float = T0 - 5, end: float = T0 + 30) -> list[tuple[float, float]]:
    """Samples every 0.5 s of a counter growing `rate` stall-seconds per second."""
    samples, t = [], start
    while t <= end:
        samples.append((t, 100.0 + (t - start) * rate))
        t += 0.5
    return samples


def test_an_idle_machine_gets_the_nominal_bound() -> None:
    verdict = killed_then_led_after(7.4, steady(0.0))
    assert verdict["ok"]
    assert verdict["checks"] == {"takeover_s": 7.4, "takeover_bound_s": 7.5, "cpu_stall_s": 0.0}
    assert not killed_then_led_after(7.7, steady(0.0))["ok"]


def test_without_samples_the_bound_is_the_nominal_one() -> None:
    verdict = killed_then_led_after(8.0)
    assert (verdict["ok"], verdict["checks"]["takeover_bound_s"]) == (False, 7.5)


def test_the_measured_stall_in_the_window_is_the_allowance_and_it_is_bounded() -> None:
    half = killed_then_led_after(9.5, steady(0.4))
    assert (half["checks"]["cpu_stall_s"], half["checks"]["takeover_bound_s"]) == (3.0, 10.5)
    assert half["ok"]
    full = killed_then_led_after(15.1, steady(5.0))
    assert full["checks"]["takeover_bound_s"] == 15.0  # at most twice the nominal bound
    assert not full["ok"]


def test_no_takeover_fails_whatever_the_stall() -> None:
    history = build([lease(T0 - 1, "chaos-a_1")])
    fault = {"name": "leader-kill", "result": {"killed_at": T0}, "started": T0, "ended": T0 + 1}
    assert not judge(fault, history, [], [], TIMINGS, steady(1.0))["ok"]


def test_stalled_needs_samples_around_the_window() -> None:
    assert stalled([], T0, T0 + 7.5) == 0.0
    assert stalled(steady(1.0, end=T0 + 3), T0, T0 + 7.5) == 0.0  # the window's end not sampled
    assert stalled(steady(0.25), T0 + 0.2, T0 + 4.2) == 1.0  # interpolated between samples


def test_the_pressure_file_is_read(tmp_path: Path) -> None:
    psi = tmp_path / "cpu"
    psi.write_text("some avg10=3.03 avg60=15.92 avg300=29.67 total=5391237354\nfull avg10=0.00 total=0\n")
    assert sample(psi) == 5391.237354
    psi.write_text("full avg10=0.00 total=0\n")
    assert sample(psi) is None
    assert sample(tmp_path / "absent") is None
