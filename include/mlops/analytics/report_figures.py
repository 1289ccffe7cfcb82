"""The report's charts: one plotly figure per view, drawn from `report_data` and nothing else.

Each function returns a `Plot`: its stable key (the page's `data-plot`), a title, and either a
figure or the reason there is nothing to draw. A view whose data is absent says "no data" and why;
a missing figure inside a drawn view (no power reading on a machine) is left out and named in
the title, never drawn as zero.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mlops.analytics import names

if TYPE_CHECKING:
    from mlops.analytics.report_data import ProjectData
    from mlops.resources.pool_usage import PoolUsage

HEIGHT = 380
PERCENT = 100.0


@dataclass
class Plot:
    key: str
    title: str
    figure: Any = None  # plotly.graph_objects.Figure
    empty: str | None = None  # why there is nothing to draw


def project_plots(project: ProjectData) -> list[Plot]:
    """A project's views, in page order."""
    return [
        quality_over_time(project), techniques_compared(project), hardware_efficiency(project),
        utilization_thermal(project), serving_per_version(project), drift_accuracy(project), failures(project),
    ]


def toolkit_plots(projects: list[ProjectData], pools: PoolUsage | None) -> list[Plot]:
    """The cross-project views (the best-models table is HTML, see report_html)."""
    plots = [runs_per_project(projects)]
    if pools is not None:
        plots.append(pool_usage(pools))
    plots.append(serving_load(projects))
    return plots


# --------------------------------------------------------------------------- one project


def quality_over_time(p: ProjectData) -> Plot:
    import plotly.graph_objects as go

    title = f"Quality over time by technique ({p.metric or 'no quality metric'}, {_better(p.goal)})"
    scored = [r for r in p.training if r.quality is not None]
    if not scored:
        return Plot("quality-over-time", title, empty=_why(p, "no finished training run logged its quality metric"))
    fig = _figure(go, "run start (UTC)", p.metric or "quality")
    for technique, runs in _by(scored, lambda r: r.technique).items():
        fig.add_trace(go.Scatter(
            x=[r.start.isoformat() for r in runs], y=[r.quality for r in runs], mode="markers+lines",
            name=technique, text=[f"{r.machine}<br>{r.run_id}" for r in runs], line={"width": 1},
        ))
    return Plot("quality-over-time", title, fig)


def techniques_compared(p: ProjectData) -> Plot:
    import plotly.graph_objects as go

    title = "Techniques compared: quality against throughput per machine (star: best under "
    title += f"'{p.comparison.objective}')" if p.comparison else "the objective)"
    if p.comparison is None or not p.comparison.machines:
        return Plot("techniques-compared", title, empty=_why(p, "no finished training run with a quality metric"))
    fig = _figure(go, f"throughput ({names.THROUGHPUT}, mean)", f"{p.metric} (mean)")
    drawn = 0
    for machine in p.comparison.machines:
        groups = [g for g in machine.groups if names.THROUGHPUT in g.figures]
        drawn += len(groups)
        fig.add_trace(go.Scatter(
            x=[g.figures[names.THROUGHPUT] for g in groups], y=[g.quality for g in groups], mode="markers+text",
            name=machine.machine, text=[g.technique for g in groups], textposition="top center",
            marker={"size": 10, "symbol": ["star" if g.technique == machine.best else "circle" for g in groups],
                    "line": {"width": [2 if g.technique == machine.best else 0 for g in groups]}},
            customdata=[[g.runs, "yes" if g.good_enough else "no"] for g in groups],
            hovertemplate="%{text}: %{y:.4g} at %{x:.4g}/s<br>%{customdata[0]} runs, good enough: %{customdata[1]}",
        ))
    if not drawn:
        return Plot("techniques-compared", title, empty=f"no training run logged {names.THROUGHPUT}")
    return Plot("techniques-compared", title, fig)


def hardware_efficiency(p: ProjectData) -> Plot:
    """Throughput per GB, peak memory and energy per sample, per technique and machine (group means)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = ((names.THROUGHPUT_PER_GB, "throughput/s per GB"), (names.PEAK_MEMORY_MB, "peak memory (MB)"),
              (names.ENERGY_PER_SAMPLE_J, "energy per sample (J)"))
    title = "Hardware efficiency per technique and machine"
    machines = p.comparison.machines if p.comparison else []
    groups = [g for m in machines for g in m.groups]
    present = [(metric, label) for metric, label in panels if any(metric in g.figures for g in groups)]
    if not present:
        return Plot("hardware-efficiency", title, empty=_why(p, "no training run logged perf/ figures"))
    missing = [label for metric, label in panels if (metric, label) not in present]  # on no machine
    missing += [f"{label} on {m.machine}" for metric, label in present for m in machines  # on some (no power)
                if not any(metric in g.figures for g in m.groups)]
    if missing:
        title += f" (not recorded: {'; '.join(missing)})"
    fig = make_subplots(rows=1, cols=len(present), subplot_titles=[label for _, label in present])
    for column, (metric, _) in enumerate(present, start=1):
        for index, machine in enumerate(machines):
            groups = [g for g in machine.groups if metric in g.figures]
            fig.add_trace(go.Bar(
                x=[g.technique for g in groups], y=[g.figures[metric] for g in groups], name=machine.machine,
                legendgroup=machine.machine, showlegend=column == 1, marker_color=_color(index),
            ), row=1, col=column)
    _layout(fig)
    return Plot("hardware-efficiency", title, fig)


def utilization_thermal(p: ProjectData) -> Plot:
    import plotly.graph_objects as go

    series = ((names.GPU_UTILIZATION_MEAN, "GPU utilization (mean %)", 1.0),
              (names.CPU_UTILIZATION_MEAN, "CPU utilization (mean %)", 1.0),
              (names.THROTTLED_SHARE, "time thermally throttled (%)", PERCENT))
    title = "Utilization and thermal throttling per training run"
    runs = [r for r in p.training if any(metric in r.figures for metric, _, _ in series)]
    if not runs:
        why = "no training run logged utilization or thermal figures"
        return Plot("utilization-thermal", title, empty=_why(p, why))
    fig = _figure(go, "run start (UTC)", "%")
    for metric, label, scale in series:
        have = [r for r in runs if metric in r.figures]
        if not have:
            continue
        x, y = [r.start.isoformat() for r in have], [r.figures[metric] * scale for r in have]
        if metric == names.THROTTLED_SHARE:
            fig.add_trace(go.Bar(x=x, y=y, name=label, opacity=0.5))
        else:
            fig.add_trace(go.Scatter(x=x, y=y, name=label, mode="markers"))
    fig.update_yaxes(range=[0, 100])
    return Plot("utilization-thermal", title, fig)


def serving_per_version(p: ProjectData) -> Plot:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Serving latency and throughput per version"
    if not p.serving.versions:
        return Plot("serving", title, empty=p.serving.note or "nothing was served")
    title += f" ({p.serving.source})"
    versions = p.serving.versions
    labels = [_version_label(v.version) for v in versions]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["latency (ms)", "requests per busy second"])
    for field_name, label in (("p50_ms", "p50"), ("p99_ms", "p99")):
        have = [(name, getattr(v, field_name)) for name, v in zip(labels, versions)
                if getattr(v, field_name) is not None]
        fig.add_trace(go.Bar(x=[n for n, _ in have], y=[y for _, y in have], name=f"{label} latency"), row=1, col=1)
    have = [(name, v) for name, v in zip(labels, versions) if v.requests_per_busy_second is not None]
    fig.add_trace(go.Bar(
        x=[n for n, _ in have], y=[v.requests_per_busy_second for _, v in have], name="requests/busy s",
        customdata=[v.requests for _, v in have], hovertemplate="%{x}: %{y:.4g}/s over %{customdata} requests",
    ), row=1, col=2)
    _layout(fig)
    return Plot("serving", title, fig)


def drift_accuracy(p: ProjectData) -> Plot:
    import plotly.graph_objects as go

    title = "Drift and serving accuracy per monitor run"
    if not any(m.drift_share is not None or m.accuracy is not None for m in p.monitoring):
        return Plot("drift-accuracy", title, empty=_why(p, "no monitor run logged drift or accuracy"))
    fig = _figure(go, "monitor run (UTC)", "share")
    for field_name, label in (("drift_share", "share of drifted columns"), ("accuracy", "serving accuracy (feedback)")):
        have = [m for m in p.monitoring if getattr(m, field_name) is not None]
        if have:
            fig.add_trace(go.Scatter(
                x=[m.start.isoformat() for m in have], y=[getattr(m, field_name) for m in have], name=label,
                mode="markers+lines", text=[f"version {m.version or 'unknown'}" for m in have],
            ))
    fig.update_yaxes(range=[0, 1.05])
    return Plot("drift-accuracy", title, fig)


def failures(p: ProjectData) -> Plot:
    import plotly.graph_objects as go

    title = f"Failed runs by diagnosed cause ({sum(p.failures.values())})"
    if not p.failures:
        return Plot("failures", title, empty=_why(p, "no failed run"))
    fig = _figure(go, "cause (tag mlops.failure_cause)", "failed runs")
    fig.add_trace(go.Bar(x=list(p.failures), y=list(p.failures.values()), name="failed runs"))
    return Plot("failures", title, fig)


# --------------------------------------------------------------------------- across projects


def runs_per_project(projects: list[ProjectData]) -> Plot:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    title = "Runs and compute time per project"
    if not any(p.training or p.failures for p in projects):
        return Plot("runs-per-project", title, empty="no project has a training run yet")
    labels = [p.name for p in projects]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["runs", "compute hours (training time, failed runs' duration)"])
    fig.add_trace(go.Bar(x=labels, y=[len(p.training) for p in projects], name="finished"), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=[sum(p.failures.values()) for p in projects], name="failed"), row=1, col=1)
    fig.add_trace(go.Bar(x=labels, y=[p.compute_seconds / 3600 for p in projects], name="compute hours"), row=1, col=2)
    fig.update_layout(barmode="stack")
    _layout(fig)
    return Plot("runs-per-project", title, fig)


def pool_usage(usage: PoolUsage) -> Plot:
    import plotly.graph_objects as go

    title = f"Pool usage since {usage.since:%Y-%m-%d}: slot-hours (task duration x pool slots)"
    if not usage.slot_seconds:
        return Plot("pool-usage", title, empty=usage.note or "no task instance used a pool")
    fig = _figure(go, "pool", "slot-hours")
    by_project: dict[str, dict[str, float]] = defaultdict(dict)
    for (pool, project), seconds in sorted(usage.slot_seconds.items()):
        by_project[project][pool] = seconds / 3600
    for project, pools in by_project.items():
        fig.add_trace(go.Bar(
            x=list(pools), y=list(pools.values()), name=project,
            customdata=[usage.tasks[(pool, project)] for pool in pools],
            hovertemplate="%{y:.3g} h in %{customdata} tasks",
        ))
    fig.update_layout(barmode="stack")
    return Plot("pool-usage", title, fig)


def serving_load(projects: list[ProjectData]) -> Plot:
    import plotly.graph_objects as go

    title = "Serving load per project: requests by version"
    served = [p for p in projects if p.serving.versions]
    if not served:
        return Plot("serving-load", title, empty="no project has served predictions or monitor serving figures")
    fig = _figure(go, "project (source)", "requests")
    versions = sorted({v.version for p in served for v in p.serving.versions},
                      key=lambda v: (not v.isdigit(), len(v), v))  # v1, v2, ..., v10, then "unknown"
    for version in versions:
        rows = [(p, v) for p in served for v in p.serving.versions if v.version == version]
        fig.add_trace(go.Bar(
            x=[f"{p.name}<br>({p.serving.source.split(':')[0].split(' since')[0]})" for p, _ in rows],
            y=[v.requests for _, v in rows], name=_version_label(version),
            customdata=[[v.p99_ms, p.serving.source] for p, v in rows],
            hovertemplate="%{x} " + _version_label(version) + ": %{y} requests, p99 %{customdata[0]:.3g} ms<br>"
            "%{customdata[1]}",
        ))
    fig.update_layout(barmode="stack")
    return Plot("serving-load", title, fig)


# --------------------------------------------------------------------------- shared


def _figure(go: Any, x_title: str, y_title: str) -> Any:
    fig = go.Figure()
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return _layout(fig)


def _layout(fig: Any) -> Any:
    fig.update_layout(height=HEIGHT, margin={"l": 60, "r": 20, "t": 40, "b": 50},
                      legend={"orientation": "h", "y": -0.25})
    return fig


def _by(items: list[Any], key: Any) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for item in items:
        grouped[key(item)].append(item)
    return dict(sorted(grouped.items()))


def _color(index: int) -> str:
    from plotly.colors import qualitative

    return qualitative.Plotly[index % len(qualitative.Plotly)]


def _version_label(version: str) -> str:
    return f"v{version}" if version.isdigit() else f"version {version}"


def _better(goal: str | None) -> str:
    return {"max": "higher is better", "min": "lower is better"}.get(goal or "", "goal unknown")


def _why(p: ProjectData, reason: str) -> str:
    return p.note or reason
