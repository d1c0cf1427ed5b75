"""Turn a results dict into bench/results/<stem>.json, a markdown table (.md) and a plot (.png)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from bench import floor, statuswrites

SYSTEMS = (
    ("b0", "B0 ceiling (pre-bound pods)"),
    ("b1_upstream", "B1 Jobs, KCM upstream client QPS"),
    ("b1_default", "B1 Jobs, KCM rig-default client QPS"),
    ("b1_tuned", "B1 Jobs, KCM tuned client QPS"),
    ("procjob", "procjob (burst)"),
    ("procjob_paced", "procjob (paced)"),
    ("procjob_paced_own", "procjob (paced)"),
    ("procjob_paced_b1", "procjob (paced)"),
    ("b0_repeat", "B0 again, at the end"),
)


def short(key: str, row: dict[str, Any]) -> str:
    """A two-line label for the plot's x axis."""
    if key.startswith("b1_"):
        return f"B1 Jobs\nQPS {row.get('kcm_qps')}/{row.get('kcm_burst')}"
    if key.startswith("procjob_paced"):
        return f"procjob paced\n{row.get('offered_stages_per_s')} st/s in"
    return {"b0": "B0\nceiling", "b0_repeat": "B0 again\n(end)", "procjob": "procjob\nburst"}.get(key, key)


def title(key: str, default: str, row: dict[str, Any]) -> str:
    """The system's name, with the settings that distinguish it."""
    if key.startswith("b1_") and row.get("kcm_qps"):
        return f"B1 Jobs, KCM QPS {row['kcm_qps']}/{row['kcm_burst']}"
    if key.startswith("procjob_paced") and row.get("offered_stages_per_s"):
        return f"procjob (paced, {row['offered_stages_per_s']} stages/s offered)"
    return default


def scrub_paths(text: str) -> str:
    """Machine paths out of a text written to bench/results (repo, site-packages, stdlib, temp dirs)."""
    root = str(Path(__file__).resolve().parents[1])
    site = str(Path(json.__file__).resolve().parents[1])  # the stdlib directory
    for prefix in sorted({p for p in sys.path if p.endswith("site-packages")}, key=len, reverse=True):
        text = text.replace(prefix + "/", "<site-packages>/")
    text = text.replace(root + "/", "").replace(site + "/", "<stdlib>/")
    return re.sub(r"/tmp/[\w.-]+/", "<tmp>/", text)


def _get(results: dict[str, Any], system: str, key: str) -> Any:
    value = results.get(system)
    return value.get(key) if isinstance(value, dict) else None


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def _best(results: dict[str, Any], key: str) -> float | None:
    """The better of the two B0 runs for `key`: the ceiling the other systems are compared with."""
    values = [_get(results, k, key) for k in ("b0", "b0_repeat")]
    return max((c for c in values if isinstance(c, int | float)), default=None)


def _judge_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """procjob's throughput over B1's and over the B0 ceiling, and B0's drift over the run."""
    pj = "procjob"
    ceiling = _best(results, "stages_per_s")
    return {
        "procjob_over_b1_tuned": _ratio(_get(results, pj, "stages_per_s"), _get(results, "b1_tuned", "stages_per_s")),
        "procjob_over_b1_default": _ratio(
            _get(results, pj, "stages_per_s"), _get(results, "b1_default", "stages_per_s")
        ),
        "procjob_over_b0": _ratio(_get(results, pj, "stages_per_s"), ceiling),
        "procjob_over_b1_tuned_overall": _ratio(
            _get(results, pj, "stages_per_s_overall"), _get(results, "b1_tuned", "stages_per_s_overall")
        ),
        "procjob_over_b0_overall": _ratio(
            _get(results, pj, "stages_per_s_overall"), _best(results, "stages_per_s_overall")
        ),
        "b0_ceiling_stages_per_s": ceiling,
        "b0_drift": _ratio(_get(results, "b0_repeat", "stages_per_s"), _get(results, "b0", "stages_per_s")),
    }


def _target(name: str, measured: Any, goal: float | None, higher: bool, note: str = "") -> dict[str, Any]:
    met = None if measured is None or goal is None else (measured >= goal if higher else measured <= goal)
    return {"target": name, "measured": measured, "goal": goal, "met": met, "note": note}


def _rss_target(results: dict[str, Any], jobs: int = 5000) -> dict[str, Any]:
    """Operator RSS at `jobs` jobs, from the matrix or the main run; only the full profile gets there."""
    pj = "procjob"
    runs = [*(results.get("procjob_matrix") or []), {"n": _get(results, pj, "chains") or 0, **(results.get(pj) or {})}]
    big = [m for m in runs if m.get("n", 0) >= jobs and m.get("rss_peak_mib")]
    rss = max((m["rss_peak_mib"] for m in big), default=None)
    rss_note = (
        "" if big else f"full profile only; at N={_get(results, pj, 'chains')}: {_get(results, pj, 'rss_peak_mib')} MiB"
    )
    return _target(f"operator RSS <= 200 MiB at {jobs:,} jobs", rss, 200.0, False, rss_note)


def _issue_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The goals of the performance issue (#18): writes per stage, API-server CPU and first pods
    against B1 tuned, throughput."""
    pj, b1t = "procjob", "b1_tuned"
    own = ((results.get("write_floor") or {}).get("systems") or {}).get(pj, {}).get("own_writes_per_stage")
    return [
        _target("procjob's own API writes per stage <= 3.5 (floor 3.0)", own, 3.5, False),
        _target(
            "all API writes per stage <= 9.5 (procjob)", _get(results, pj, "apiserver_writes_per_stage"), 9.5, False
        ),
        _target(
            "API-server CPU per 1,000 stages, procjob / B1 tuned <= 0.6",
            _ratio(
                _get(results, pj, "apiserver_cpu_s_per_1000_stages"),
                _get(results, b1t, "apiserver_cpu_s_per_1000_stages"),
            ),
            0.6,
            False,
        ),
        _target(
            "stages/s, burst, procjob / B1 tuned >= 1.6",
            _ratio(_get(results, pj, "stages_per_s"), _get(results, b1t, "stages_per_s")),
            1.6,
            True,
        ),
        _target(
            "first pod p99, burst, procjob / B1 tuned <= 1.0",
            _ratio(_get(results, pj, "first_pod_p99_s"), _get(results, b1t, "first_pod_p99_s")),
            1.0,
            False,
        ),
        _target(
            "transition p99 <= 1 s paced at B1 tuned's own throughput",
            _get(results, "procjob_paced_b1", "transition_p99_s"),
            1.0,
            False,
        ),
        _target(
            "operator CPU per stage / kube-controller-manager's in B1 tuned <= 1.0",
            _ratio(_get(results, pj, "cpu_s_per_1000_stages"), _get(results, b1t, "kcm_cpu_s_per_1000_stages")),
            1.0,
            False,
        ),
    ]


def judge(results: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ratios and the targets (reported, never asserted)."""
    pj = "procjob"
    ratios = _judge_ratios(results)
    b1t = _get(results, "b1_tuned", "stages_per_s")
    exact = _get(results, pj, "audit_exact")
    targets = [
        _target(
            "procjob stages/s >= B1 tuned",
            _get(results, pj, "stages_per_s"),
            b1t if isinstance(b1t, int | float) else None,
            True,
        ),
        _target("procjob stages/s >= 60 % of B0 (ratio)", ratios["procjob_over_b0"], 0.6, True),
        _target(
            "transition p99 <= 1 s at half the ceiling (paced run)",
            _get(results, "procjob_paced", "transition_p99_s"),
            1.0,
            False,
        ),
        _target(
            "transition p99 <= 1 s at half procjob's own burst rate (informational)",
            _get(results, "procjob_paced_own", "transition_p99_s"),
            1.0,
            False,
        ),
        _rss_target(results),
        _rss_target(results, 20000),
        _target("audit lag p99 <= 5 s", _get(results, pj, "audit_lag_p99_s"), 5.0, False),
        _target(
            "audit exact (seq 1..lastSeq, no gap, no duplicate)",
            1.0 if exact else (0.0 if exact is False else None),
            1.0,
            True,
        ),
        *_issue_targets(results),
    ]
    return ratios, targets


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _header(results: dict[str, Any]) -> list[str]:
    """The title and the machine the run was measured on."""
    m = results["machine"]
    load_before = " / ".join(map(str, m["load_average_before"]))
    load_after = " / ".join(map(str, m.get("load_average_after", [])))
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return [
        f"# procjob benchmark — {results['profile']} profile, {results['date']}",
        "",
        f"{m['cores']} cores ({m['cpu_model']}), {m['memory_gib']} GiB, load average before {load_before}, "
        f"after {load_after}; {versions}; commit {m['git_commit']}.",
        "",
    ]


def _systems_table(results: dict[str, Any]) -> list[str]:
    """One row per system that ran (or why it did not)."""
    lines = [
        "| System | NxS | stages/s steady | stages/s overall | jobs/s | makespan s | first pod p50 / p99 s "
        "| transition p50 / p99 s | API writes / stage | apiserver CPU s / 1k stages |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, default in SYSTEMS:
        row = results.get(key)
        if not isinstance(row, dict):
            continue
        name = title(key, default, row)
        if "skipped" in row or "error" in row:
            lines.append(f"| {name} | {row.get('skipped') or 'FAILED: ' + str(row.get('error'))[:120]} |||||||||")
            continue
        lines.append(
            f"| {name} | {row['chains']}x{row['stages_per_chain']} | {_fmt(row['stages_per_s'])} "
            f"| {_fmt(row['stages_per_s_overall'])} | {_fmt(row['jobs_per_s'])} | {_fmt(row['makespan_s'], 1)} "
            f"| {_fmt(row['first_pod_p50_s'])} / {_fmt(row['first_pod_p99_s'])} "
            f"| {_fmt(row['transition_p50_s'])} / {_fmt(row['transition_p99_s'])} "
            f"| {_fmt(row.get('apiserver_writes_per_stage'), 1)} "
            f"| {_fmt(row.get('apiserver_cpu_s_per_1000_stages'), 1)} |"
        )
    return lines


def procjob_policy(results: dict[str, Any]) -> str:
    """The finalizer policy's API version per procjob run (`none`: the operator patched it)."""
    rows = [row for key, row in results.items() if isinstance(row, dict) and key != "settings"]
    used = sorted({str(row["finalizer_policy"]) for row in rows if "finalizer_policy" in row})
    return ", ".join(used) or "not recorded"


def _settings(results: dict[str, Any]) -> list[str]:
    """The operator's settings and who else used the rig while a system ran."""
    settings = results.get("settings") or {}
    shared = {
        key: sorted(set(row.get("foreign_load_at_start") or []) | set(row.get("foreign_load_at_end") or []))
        for key, row in results.items()
        if isinstance(row, dict) and (row.get("foreign_load_at_start") or row.get("foreign_load_at_end"))
    }
    return [
        "",
        f"Settings: operator `--workers {settings.get('operator_workers')} --events "
        f"{settings.get('operator_events', 'all')}`, variants: "
        f"{settings.get('operator_variants')}; cleanup: {settings.get('podGC')}; audit finalizer policy: "
        f"{settings.get('finalizer_policy', 'none')} (procjob: {procjob_policy(results)}).",
        "Other rig users seen during a run (their load skews it): "
        + ("; ".join(f"{k}: {', '.join(v)}" for k, v in shared.items()) if shared else "none")
        + ".",
    ]


def _ratios(results: dict[str, Any]) -> list[str]:
    ratios = results.get("ratios") or {}
    return [
        "",
        "Ratios (steady-state stages/s): "
        f"procjob / B1 tuned = {_fmt(ratios.get('procjob_over_b1_tuned'))}, "
        f"procjob / B1 default = {_fmt(ratios.get('procjob_over_b1_default'))}, "
        f"procjob / B0 = {_fmt(ratios.get('procjob_over_b0'))} "
        f"(over the makespan: {_fmt(ratios.get('procjob_over_b1_tuned_overall'))} "
        f"and {_fmt(ratios.get('procjob_over_b0_overall'))}). B0 ceiling = the better of the two B0 runs, "
        f"{_fmt(ratios.get('b0_ceiling_stages_per_s'))} stages/s; second B0 / first = {_fmt(ratios.get('b0_drift'))}.",
        "",
    ]


def _writes_by_resource(results: dict[str, Any]) -> list[str]:
    """Per system, the API writes per stage by verb and resource (those at 0.05 or more)."""
    lines = [
        "API server writes per stage, all clients (harness, controllers, scheduler, kwok), by verb and resource:",
        "",
    ]
    for key, default in SYSTEMS:
        row = results.get(key)
        if not isinstance(row, dict) or not row.get("apiserver_writes_by_resource") or not row.get("stages_total"):
            continue
        stages = row["stages_total"]
        top = [
            f"{name} {count / stages:.2f}"
            for name, count in row["apiserver_writes_by_resource"].items()
            if count / stages >= 0.05
        ]
        lines.append(f"- {title(key, default, row)}: {', '.join(top)}")
    lines.append("")
    return lines


def _events_by_source(results: dict[str, Any]) -> list[str]:
    """Per system, the Events created per stage by reporting component and reason (0.01 or more)."""
    lines = ["Events created per stage (each one POST), by reporting component and reason:", ""]
    for key, default in SYSTEMS:
        row = results.get(key)
        if not isinstance(row, dict) or not row.get("events_by_source") or not row.get("stages_total"):
            continue
        stages = row["stages_total"]
        counts = row["events_by_source"].items()
        top = [f"{name} {count / stages:.2f}" for name, count in counts if count / stages >= 0.01]
        lines.append(f"- {title(key, default, row)}: {', '.join(top)}")
    return [*lines, ""] if len(lines) > 2 else []


def _status_writes(results: dict[str, Any]) -> list[str]:
    """Per procjob run, its status writes by cause (bench/statuswrites.py)."""
    rows = [(title(k, d, results[k]), results[k]) for k, d in SYSTEMS if isinstance(results.get(k), dict)]
    return statuswrites.report_lines(rows)


def _floor(results: dict[str, Any]) -> list[str]:
    """The write floor and every system against it (bench/floor.py)."""
    titles = {key: title(key, default, results[key]) for key, default in SYSTEMS if isinstance(results.get(key), dict)}
    return floor.markdown(results, titles)


def _operator_costs(results: dict[str, Any]) -> list[str]:
    """The procjob operator's own costs and its audit, when the run measured them."""
    pj = results.get("procjob") or {}
    if "rss_peak_mib" not in pj:
        return []
    verbs = ", ".join(f"{k} {v}" for k, v in (pj.get("operator_api_requests_per_stage") or {}).items())
    return [
        f"procjob operator ({pj.get('operator_workers')} workers): peak RSS {pj['rss_peak_mib']} MiB"
        f"{_peak_when(pj.get('rss_timeline_mib'))}, "
        f"{pj['cpu_s_per_1000_jobs']} CPU-s per 1,000 jobs ({pj['cpu_s_per_1000_stages']} per 1,000 stages, "
        f"{pj['operator_cpu_utilisation']} cores busy), "
        f"API requests per stage {pj['operator_api_requests_per_stage_total']} "
        f"({verbs}), {pj['operator_reconciles_per_stage']} reconciles per stage; audit lag p50 / p99 "
        f"{_fmt(pj.get('audit_lag_p50_s'))} / {_fmt(pj.get('audit_lag_p99_s'))} s, exact: {pj.get('audit_exact')} "
        f"({pj.get('audit_exact_jobs')} jobs, {pj.get('audit_rows')} rows).",
        "",
    ]


def _peak_when(timeline: Any) -> str:
    """' (sampled highest N MiB, T s after start)' from an RSS timeline, '' without one."""
    if not isinstance(timeline, list) or not timeline:
        return ""
    seconds, mib = max(timeline, key=lambda point: point[1])
    return f" (sampled highest {mib} MiB, {seconds:.0f} s after start)"


def _matrix(results: dict[str, Any]) -> list[str]:
    """procjob at several N and S (the full profile's matrix), one row each."""
    matrix = results.get("procjob_matrix") or []
    if not matrix:
        return []
    lines = [
        "| procjob N | S | stages/s steady | overall | transition p99 s | first pod p99 s | RSS MiB "
        "| CPU-s / 1k jobs | audit lag p99 s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in matrix:
        lines.append(
            f"| {row['n']} | {row['s']} | {_fmt(row.get('stages_per_s'))} "
            f"| {_fmt(row.get('stages_per_s_overall'))} "
            f"| {_fmt(row.get('transition_p99_s'))} | {_fmt(row.get('first_pod_p99_s'))} "
            f"| {_fmt(row.get('rss_peak_mib'), 1)} | {_fmt(row.get('cpu_s_per_1000_jobs'), 1)} "
            f"| {_fmt(row.get('audit_lag_p99_s'))} |"
        )
    lines.append("")
    return lines


def _targets(results: dict[str, Any]) -> list[str]:
    lines = ["| Target | Measured | Met |", "|---|---|---|"]
    for t in results.get("targets") or []:
        met = {True: "yes", False: "**no**", None: "not measured"}[t["met"]]
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(f"| {t['target']} | {_fmt(t['measured'])}{note} | {met} |")
    lines.append("")
    return lines


def markdown(results: dict[str, Any]) -> str:
    """The report's .md: the machine, the systems table, settings, ratios, costs, matrix, targets."""
    sections = (
        _header,
        _systems_table,
        _settings,
        _ratios,
        _writes_by_resource,
        _events_by_source,
        _status_writes,
        _floor,
        _operator_costs,
        _matrix,
        _targets,
    )
    return "\n".join(line for section in sections for line in section(results))


LATENCY_SERIES = (
    ("first pod p50", "first_pod_p50_s", "#9ecae1"),
    ("first pod p99", "first_pod_p99_s", "#3182bd"),
    ("transition p50", "transition_p50_s", "#fdae6b"),
    ("transition p99", "transition_p99_s", "#e6550d"),
)


def _latency_panel(lat: Any, rows: list[tuple[str, dict[str, Any]]]) -> None:
    """Left panel: first-pod and transition percentiles per system, log scale, a line at 1 s."""
    width = 0.2
    for i, (label, key, color) in enumerate(LATENCY_SERIES):
        xs = [j + (i - 1.5) * width for j in range(len(rows))]
        values = [max(row.get(key) or 0.0, 1e-3) for _, row in rows]
        bars = lat.bar(xs, values, width, label=label, color=color)
        lat.bar_label(bars, labels=[f"{v:.2f}" for v in values], fontsize=7, rotation=90, padding=2)
    lat.set_yscale("log")
    lat.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    lat.text(-0.45, 1.05, "1 s", color="grey", fontsize=8, ha="left", va="bottom")
    lat.set_xticks(range(len(rows)), [name for name, _ in rows], fontsize=8)
    lat.set_ylabel("seconds (log scale)")
    lat.set_title("Latency percentiles (observer, ms client stamps)")
    lat.legend(fontsize=8, loc="upper center", ncol=4)
    top = max(max(row.get(key) or 0.0 for _, key, _ in LATENCY_SERIES) for _, row in rows)
    lat.set_ylim(top=max(top, 1.0) * 30)


def _throughput_panel(thr: Any, rows: list[tuple[str, dict[str, Any]]], ceiling: float | None) -> None:
    """Right panel: steady and overall stages/s per system, the offered rate, a line at 60 % of B0."""
    steady = [row.get("stages_per_s") or 0.0 for _, row in rows]
    overall = [row.get("stages_per_s_overall") or 0.0 for _, row in rows]
    xs = list(range(len(rows)))
    b1 = thr.bar([x - 0.18 for x in xs], steady, 0.36, label="stages/s steady (10-90 %)", color="#31a354")
    b2 = thr.bar([x + 0.18 for x in xs], overall, 0.36, label="stages/s over the makespan", color="#a1d99b")
    thr.bar_label(b1, fmt="%.1f", fontsize=8)
    thr.bar_label(b2, fmt="%.1f", fontsize=8)
    offered = [(x, row.get("offered_stages_per_s")) for x, (_, row) in zip(xs, rows, strict=True)]
    offered = [(x, v) for x, v in offered if v]
    if offered:
        thr.scatter([x for x, _ in offered], [v for _, v in offered], marker="_", s=900, color="black", label="offered")
    if ceiling:
        thr.axhline(0.6 * ceiling, color="#756bb1", linestyle="--", linewidth=1)
        thr.text(
            len(rows) - 0.55,
            0.6 * ceiling,
            "60 % of B0",
            color="#756bb1",
            fontsize=8,
            ha="right",
            va="bottom",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
    thr.set_xticks(xs, [name for name, _ in rows], fontsize=8)
    thr.set_ylabel("stages per second")
    thr.set_title("Throughput")
    thr.legend(fontsize=8, loc="upper center", ncol=3)
    thr.set_ylim(top=max(*steady, *overall, 1.0) * 1.3)


def plot(results: dict[str, Any], path: Path) -> None:
    """The report's .png: latency percentiles (left) and throughput (right) of every system that ran."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        (short(key, results[key]), results[key])
        for key, _ in SYSTEMS
        if isinstance(results.get(key), dict) and results[key].get("stages_per_s") is not None
    ]
    if not rows:
        return
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(17, 6.4))
    _latency_panel(lat, rows)
    _throughput_panel(thr, rows, (results.get("b0") or {}).get("stages_per_s"))
    m = results["machine"]
    fig.suptitle(
        f"procjob benchmark, {results['profile']} profile (N={results['settings']['chains']}, "
        f"S={results['settings']['stages']}), {m['cores']} cores, {results['date'][:10]}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_all(results: dict[str, Any], stem: Path) -> list[Path]:
    json_path, md_path, png_path = stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    md_path.write_text(markdown(results))
    plot(results, png_path)
    return [p for p in (json_path, md_path, png_path) if p.exists()]
