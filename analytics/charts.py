"""Inline SVG charts for the dashboard: plain strings, no scripts, nothing fetched."""

from __future__ import annotations

import html
from typing import Optional, Sequence

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
_W, _H = 440, 260
_M = {"left": 48, "right": 12, "top": 26, "bottom": 40}


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _frame(name: str, title: str, body: str, x_label: str = "", y_label: str = "",
           width: int = _W, height: int = _H) -> str:
    return (f'<svg class="chart" data-chart="{_esc(name)}" xmlns="http://www.w3.org/2000/svg" '
            f'width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{_esc(title)}">'
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>'
            f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">'
            f'{_esc(title)}</text>{body}'
            f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle" font-size="11">{_esc(x_label)}</text>'
            f'<text x="12" y="{height / 2}" text-anchor="middle" font-size="11" '
            f'transform="rotate(-90 12 {height / 2})">{_esc(y_label)}</text></svg>')


def _axes(x0, y0, x1, y1, y_max: float, y_ticks: int = 4, fmt=lambda v: f"{v:g}") -> str:
    parts = [f'<line x1="{x0}" y1="{y1}" x2="{x1}" y2="{y1}" stroke="#333"/>',
             f'<line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" stroke="#333"/>']
    for i in range(y_ticks + 1):
        v = y_max * i / y_ticks
        y = y1 - (y1 - y0) * i / y_ticks
        parts.append(f'<line x1="{x0 - 3}" y1="{y:.1f}" x2="{x1}" y2="{y:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{fmt(v)}</text>')
    return "".join(parts)


def format_figure(value, kind: str) -> str:
    """One way to show a figure, in the dashboard and on the terminal: pct, rate, auc, ratio, int."""
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "rate":
        return f"{value:.1f}"
    if kind == "auc":
        return f"{value:.3f}"
    if kind == "ratio":
        return f"{value:.2f}x"
    if kind == "int":
        return f"{int(value):,}"
    return str(value)


def bar_chart(name: str, title: str, labels: Sequence[str], values: Sequence[float],
              x_label: str = "", y_label: str = "", color: str = PALETTE[0], width: int = _W,
              height: int = _H, label_every: Optional[int] = None) -> str:
    """Vertical bars; every bar carries a tooltip with its label and value."""
    x0, y0 = _M["left"], _M["top"]
    x1, y1 = width - _M["right"], height - _M["bottom"]
    if not values:
        return _frame(name, title, f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
                                   f'font-size="12" fill="#666">no data</text>', x_label, y_label, width, height)
    top = max(max(values), 1e-9)
    step = (x1 - x0) / len(values)
    every = label_every or max(1, len(values) // 8)
    parts = [_axes(x0, y0, x1, y1, top)]
    for i, (label, v) in enumerate(zip(labels, values)):
        h = (y1 - y0) * v / top
        x = x0 + i * step
        parts.append(f'<rect x="{x + step * 0.1:.1f}" y="{y1 - h:.1f}" width="{step * 0.8:.1f}" '
                     f'height="{h:.1f}" fill="{color}"><title>{_esc(label)}: {v:g}</title></rect>')
        if i % every == 0:
            room = max(3, int(step * every / 5.5))  # ~5.5 px per 9 px character
            shown = label if len(label) <= room else label[:room - 1] + "…"
            parts.append(f'<text x="{x + step / 2:.1f}" y="{y1 + 13}" text-anchor="middle" '
                         f'font-size="9">{_esc(shown)}<title>{_esc(label)}</title></text>')
    return _frame(name, title, "".join(parts), x_label, y_label, width, height)


def histogram_chart(name: str, title: str, counts: Sequence[int], color: str = PALETTE[0]) -> str:
    bins = len(counts)
    labels = [f"{i / bins:.1f}" for i in range(bins)]
    return bar_chart(name, title, labels, list(counts), "exam score (bin start)", "exams", color,
                     width=300, height=200, label_every=2)


def line_chart(name: str, title: str, series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
               markers: Sequence[tuple[str, float, float]] = (), x_label: str = "", y_label: str = "",
               x_max: float = 1.0, y_max: float = 1.0, diagonal: bool = False) -> str:
    """Lines in [0, x_max] x [0, y_max] with labelled point markers and a legend."""
    x0, y0 = _M["left"], _M["top"]
    x1, y1 = _W - _M["right"] - 120, _H - _M["bottom"]

    def px(x, y):
        return x0 + (x1 - x0) * x / x_max, y1 - (y1 - y0) * y / y_max
    parts = [_axes(x0, y0, x1, y1, y_max, fmt=lambda v: f"{v:.2g}")]
    for i in range(5):
        v = x_max * i / 4
        x, _ = px(v, 0)
        parts.append(f'<text x="{x:.1f}" y="{y1 + 13}" text-anchor="middle" font-size="10">{v:.2g}</text>')
    if diagonal:
        (ax, ay), (bx, by) = px(0, 0), px(min(x_max, y_max), min(x_max, y_max))
        parts.append(f'<line x1="{ax}" y1="{ay}" x2="{bx}" y2="{by}" stroke="#aaa" stroke-dasharray="4 3"/>')
    legend_y = y0 + 6
    for i, (label, points) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(x, y)[0]:.1f},{px(x, y)[1]:.1f}"
                        for j, (x, y) in enumerate(points) if y is not None)
        parts.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        parts.append(f'<rect x="{x1 + 10}" y="{legend_y}" width="10" height="3" fill="{color}"/>'
                     f'<text x="{x1 + 24}" y="{legend_y + 5}" font-size="10">{_esc(label)}</text>')
        legend_y += 14
    for i, (label, x, y) in enumerate(markers):
        if x is None or y is None:
            continue
        color = PALETTE[(i + 1) % len(PALETTE)]
        cx, cy = px(x, y)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{color}" stroke="#000">'
                     f'<title>{_esc(label)}: ({x:.3f}, {y:.3f})</title></circle>'
                     f'<circle cx="{x1 + 15}" cy="{legend_y + 2}" r="4" fill="{color}" stroke="#000"/>'
                     f'<text x="{x1 + 24}" y="{legend_y + 5}" font-size="10">{_esc(label)}</text>')
        legend_y += 14
    return _frame(name, title, "".join(parts), x_label, y_label)
