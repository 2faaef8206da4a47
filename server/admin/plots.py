"""Plotly figures for the dashboard, as JSON (rendered in the page by the bundled plotly.js)."""

from __future__ import annotations

from collections.abc import Sequence

from core.search.query import ShapeResult


def pareto_figure_json(points: Sequence[ShapeResult], front: Sequence[ShapeResult], title: str, metric: str) -> str:
    """Every known shape (grey) and the Pareto front (line) of accuracy vs predicted latency."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[p.latency_ms for p in points], y=[p.accuracy for p in points], text=[p.shape for p in points],
                             mode="markers", name="shapes", marker={"color": "#b0b0b0", "size": 7},
                             hovertemplate="%{text}<br>%{x:.3f} ms<br>acc %{y:.4f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[p.latency_ms for p in front], y=[p.accuracy for p in front], text=[p.shape for p in front],
                             mode="lines+markers", name="Pareto front", line={"shape": "hv"}, marker={"size": 9},
                             hovertemplate="%{text}<br>%{x:.3f} ms<br>acc %{y:.4f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=f"predicted {metric} (ms)", yaxis_title="accuracy (−ln ppl, higher is better)",
                      height=420, margin={"l": 60, "r": 20, "t": 50, "b": 50}, template="plotly_white")
    return str(fig.to_json())
