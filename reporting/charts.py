"""Small SVG charts for the daily report, written by hand (no plotting library in the lock, and none needed).

An SVG is text the Prefect UI shows as an image when the markdown embeds it as a `data:` URI. Each bar
segment is a `<rect class="bar">` and each line point a `<circle class="point">`, with `data-series` and
`data-value` attributes, so a test (or a curious person) can read the figures back from the picture.
Labels are day names and counts: nothing about patients.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 640, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 12, 30, 52  # plot margins: axis labels left and below, legend above


@dataclass(frozen=True)
class Series:
    label: str
    color: str
    values: Sequence[float | None]  # one per category (day); None: no value that day (a gap in a line)


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 5 × 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1) if value >= 1 else 1.0
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _frame(
    title: str, categories: Sequence[str], top: float, unit: str, series: Sequence[Series]
) -> list[str]:
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="Arial, Helvetica, sans-serif" font-size="10">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
        f'<text x="{_LEFT}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
    ]
    legend_x = _LEFT
    for item in series:
        parts.append(
            f'<rect class="legend" x="{legend_x}" y="19" width="8" height="8" fill={quoteattr(item.color)}/>'
        )
        parts.append(f'<text x="{legend_x + 11}" y="26">{escape(item.label)}</text>')
        legend_x += 14 + 6 * len(item.label) + 10
    for step in range(5):  # horizontal grid lines with their values
        value = top * step / 4
        y = _TOP + plot_h - plot_h * step / 4
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="#e4e7eb"/>')
        parts.append(
            f'<text x="{_LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{value:g}{escape(unit)}</text>'
        )
    slot = plot_w / max(1, len(categories))
    every = max(1, len(categories) // 10)  # at most ~10 day labels, always the last
    for index, category in enumerate(categories):
        if index % every == 0 or index == len(categories) - 1:
            x = _LEFT + slot * (index + 0.5)
            y = HEIGHT - _BOTTOM + 14
            parts.append(
                f'<text x="{x:.1f}" y="{y}" text-anchor="end" transform="rotate(-40 {x:.1f} {y})">'
                f"{escape(category)}</text>"
            )
    return parts


def stacked_bars(title: str, categories: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """One bar per category, its segments stacked bottom-up in `series` order (zero segments not drawn)."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(categories))]
    top = _nice_max(max(totals, default=0))
    parts = _frame(title, categories, top, unit, series)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(categories))
    bar_w = max(1.0, slot * 0.7)
    for index in range(len(categories)):
        base = _TOP + plot_h
        x = _LEFT + slot * index + (slot - bar_w) / 2
        for item in series:
            value = item.values[index] or 0
            if value <= 0:
                continue
            height = plot_h * value / top
            base -= height
            parts.append(
                f'<rect class="bar" data-series={quoteattr(item.label)} data-value="{value:g}" '
                f'x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{height:.1f}" '
                f"fill={quoteattr(item.color)}/>"
            )
    parts.append("</svg>")
    return "\n".join(parts)


def grouped_bars(title: str, categories: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """Side-by-side bars per category, one per series (rates to compare, e.g. this week beside the previous
    one); a None value draws no bar, a zero a bar of no height (the figure is still there to read)."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    parts = _frame(title, categories, top, unit, series)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(categories))
    bar_w = max(1.0, slot * 0.8 / max(1, len(series)))
    for index in range(len(categories)):
        x = _LEFT + slot * index + slot * 0.1
        for item in series:
            value = item.values[index]
            if value is not None:
                height = plot_h * max(0.0, value) / top
                parts.append(
                    f'<rect class="bar" data-series={quoteattr(item.label)} '
                    f"data-category={quoteattr(categories[index])} "
                    f'data-value="{value:g}" x="{x:.1f}" y="{_TOP + plot_h - height:.1f}" '
                    f'width="{bar_w:.1f}" height="{height:.1f}" fill={quoteattr(item.color)}/>'
                )
            x += bar_w
    parts.append("</svg>")
    return "\n".join(parts)


def lines(title: str, categories: Sequence[str], series: Sequence[Series], unit: str = "") -> str:
    """One line per series over the categories; a None value leaves a gap (and no point)."""
    values = [v for s in series for v in s.values if v is not None]
    top = _nice_max(max(values, default=0))
    parts = _frame(title, categories, top, unit, series)
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    slot = plot_w / max(1, len(categories))
    for item in series:
        runs: list[list[str]] = [[]]
        points = []
        for index, value in enumerate(item.values):
            if value is None:
                runs.append([])
                continue
            x, y = _LEFT + slot * (index + 0.5), _TOP + plot_h - plot_h * value / top
            runs[-1].append(f"{x:.1f},{y:.1f}")
            points.append(
                f'<circle class="point" data-series={quoteattr(item.label)} data-value="{value:g}" '
                f'cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill={quoteattr(item.color)}/>'
            )
        for run in runs:
            if len(run) > 1:
                parts.append(
                    f'<polyline class="line" points="{" ".join(run)}" fill="none" '
                    f'stroke={quoteattr(item.color)} stroke-width="1.5"/>'
                )
        parts.extend(points)
    parts.append("</svg>")
    return "\n".join(parts)


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def markdown_image(alt: str, svg: str) -> str:
    return f"![{alt}]({data_uri(svg)})"
