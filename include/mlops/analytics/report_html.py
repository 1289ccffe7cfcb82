"""The report pages: self-contained HTML (plotly.js inlined once per page), one section per view.

Every view is a `<section data-plot="KEY" data-project="NAME" data-status="chart|table|no-data">`,
so a reader (or a test) finds each project's each view by its attributes; a view without data
keeps its section and says "no data" and why. The toolkit page has the cross-project views, the
best-models table and every project's views; a project page has that project's alone.
"""

from __future__ import annotations

import functools
from html import escape
from typing import TYPE_CHECKING

from mlops.analytics.report_figures import Plot, project_plots, toolkit_plots

if TYPE_CHECKING:
    from mlops.analytics.report_data import ProjectData, RegisteredVersion, ReportData

TOOLKIT = "toolkit-report"  # the toolkit page's name: no project can have it (names are [a-z0-9_])
TEMPLATE = "plotly_white"
STYLE = """
body { font-family: -apple-system, system-ui, sans-serif; margin: 0 2rem 3rem; color: #222; }
header { border-bottom: 1px solid #ddd; margin-bottom: 1rem; }
nav a { margin-right: .8rem; }
article { border-top: 2px solid #333; margin-top: 2.5rem; }
section { margin: 1.2rem 0; }
section h3 { font-size: 1rem; margin-bottom: .2rem; }
.no-data { color: #a33; font-style: italic; }
.summary, .meta { color: #555; }
table { border-collapse: collapse; font-size: .9rem; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
"""


def pages(data: ReportData, toolkit: bool = True) -> dict[str, str]:
    """Page name -> HTML: each project's page, and the toolkit's when `toolkit`. Each project's
    views are drawn once and shared by its page and the toolkit page."""
    from mlops.monitoring import plotly_paths

    plotly_paths.install()  # a fifth less drawing time: plotly re-parses the same property paths
    articles = {p.name: project_article(p) for p in data.projects}
    out = {p.name: project_page(p, articles[p.name], data) for p in data.projects}
    if toolkit:
        out[TOOLKIT] = toolkit_page(data, articles)
    return out


def toolkit_page(data: ReportData, articles: dict[str, str]) -> str:
    """The toolkit-wide page: cross-project views, best models, then every project's views."""
    nav = " ".join(f'<a href="#project-{escape(p.name)}">{escape(p.name)}</a>' for p in data.projects)
    body = [
        f"<header><h1>MLOps toolkit report</h1>{_meta(data)}<nav>projects: {nav or 'none'}</nav></header>",
        f'<article id="{TOOLKIT}" data-project="{TOOLKIT}"><h2>Across projects</h2>',
        *(_section(plot, TOOLKIT) for plot in toolkit_plots(data.projects, data.pools)),
        best_models(data.projects),
        "</article>",
        *(articles[p.name] for p in data.projects),
    ]
    return _page("MLOps toolkit report", body)


def project_page(project: ProjectData, article: str, data: ReportData) -> str:
    body = [
        f"<header><h1>{escape(project.name)}: project report</h1>{_meta(data)}"
        f'<nav><a href="{TOOLKIT}.html">toolkit report</a></nav></header>',
        article,
    ]
    return _page(f"{project.name}: project report", body)


def best_models(projects: list[ProjectData]) -> str:
    """Per project: the latest registered version, the best one by quality, and the best technique per machine."""
    rows = []
    for p in projects:
        latest = p.versions[-1] if p.versions else None
        best = p.best_version()
        verdict = p.comparison.best_by_machine() if p.comparison else {}
        techniques = "<br>".join(f"{escape(t)} on {escape(m)}" for m, t in sorted(verdict.items())) or "none yet"
        objective = f" ({escape(p.comparison.objective)})" if p.comparison else ""
        rows.append(
            f'<tr data-project="{escape(p.name)}"><td><a href="{escape(p.name)}.html">{escape(p.name)}</a></td>'
            f"<td>{_version(latest, p.metric)}</td><td>{_version(best, p.metric)}</td>"
            f"<td>{techniques}{objective}</td></tr>"
        )
    status = "table" if projects else "no-data"
    table = (
        "<table><tr><th>project</th><th>latest registered version</th><th>best registered version (quality)</th>"
        f"<th>best technique per machine (objective)</th></tr>{''.join(rows)}</table>"
        if rows else '<p class="no-data">no data: no project</p>'
    )
    return (f'<section data-plot="best-models" data-project="{TOOLKIT}" data-status="{status}">'
            f"<h3>Best models per project</h3>{table}</section>")


def project_article(p: ProjectData) -> str:
    """A project's summary line and views."""
    return "".join([
        f'<article id="project-{escape(p.name)}" data-project="{escape(p.name)}">',
        f"<h2>{escape(p.name)}</h2><p class=\"summary\">{escape(_summary(p))}</p>",
        *(_section(plot, p.name) for plot in project_plots(p)),
        "</article>",
    ])


def _section(plot: Plot, project: str) -> str:
    head = (f'<section data-plot="{escape(plot.key)}" data-project="{escape(project)}" '
            f'data-status="{"chart" if plot.figure is not None else "no-data"}"><h3>{escape(plot.title)}</h3>')
    if plot.figure is None:
        return f'{head}<p class="no-data">no data: {escape(plot.empty or "nothing recorded")}</p></section>'
    import plotly.io as pio

    spec = plot.figure.to_dict()
    spec["layout"]["template"] = _template()  # set here, not on the figure: validating it there costs 10 ms a chart
    chart = pio.to_html(spec, validate=False, full_html=False, include_plotlyjs=False,
                        div_id=f"plot-{project}-{plot.key}", config={"displaylogo": False, "responsive": True})
    return f"{head}{chart}</section>"


def _summary(p: ProjectData) -> str:
    if p.note and not p.training:
        return p.note
    techniques = sorted({r.technique for r in p.training})
    machines = sorted({r.machine for r in p.training})
    quality = f"quality: {p.metric} ({p.goal})" if p.metric else "no quality metric logged"
    return (f"{len(p.training)} finished training runs ({', '.join(techniques) or 'none'}) on {len(machines)} "
            f"machine(s), {sum(p.failures.values())} failed, {len(p.monitoring)} monitor runs, "
            f"{len(p.versions)} registered versions; {quality}; compute {p.compute_seconds / 3600:.2f} h")


def _version(version: RegisteredVersion | None, metric: str | None) -> str:
    if version is None:
        return "none"
    quality = f", {escape(metric or 'quality')} {version.quality:.4g}" if version.quality is not None else ""
    return f"v{version.version} ({escape(version.technique)}{quality}, {version.created:%Y-%m-%d})"


def _meta(data: ReportData) -> str:
    return (f'<p class="meta">generated {data.generated:%Y-%m-%d %H:%M} UTC from {escape(data.tracking_uri)}; '
            "hover a chart for figures, double-click to reset its zoom</p>")


def _page(title: str, body: list[str]) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style><script>{_plotly_js()}</script></head><body>{''.join(body)}</body></html>"
    )


@functools.cache
def _template() -> dict:
    """The charts' look: plotly's white template, as the JSON each chart carries."""
    import plotly.io as pio

    return pio.templates[TEMPLATE].to_plotly_json()


@functools.cache
def _plotly_js() -> str:
    """plotly.js itself (~4.6 MB), read once per process: the page needs nothing from the network."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()
