"""Admin dashboard: server-rendered pages (jinja2) with interactive Pareto plots (plotly, no CDN)."""
