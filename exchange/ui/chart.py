"""Charts drawn on the server as SVG (no script, no inline style: the page's CSP allows neither)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT, BOTTOM, LEFT = 600, 180, 24, 36


def bars(days: Sequence[tuple[date, int]], *, title: str) -> Markup:
    """A bar per day, with the day under every seventh bar and the highest count on the axis."""
    if not days:
        return Markup("")
    top = max(count for _, count in days) or 1
    step = (WIDTH - LEFT) / len(days)
    parts = [
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-labelledby="chart-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="chart-title">{escape(title)}</title>',
        f'<text x="0" y="12">{top}</text><text x="0" y="{HEIGHT - BOTTOM}">0</text>',
        f'<line x1="{LEFT - 2}" y1="0" x2="{LEFT - 2}" y2="{HEIGHT - BOTTOM}" class="axis" stroke="#9aa4b1"/>',
    ]
    for index, (day, count) in enumerate(days):
        height = (HEIGHT - BOTTOM - 4) * count / top
        x = LEFT + index * step
        y = HEIGHT - BOTTOM - height
        parts.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{y:.1f}" width="{max(step - 2, 1):.1f}" '
            f'height="{height:.1f}"><title>{day.isoformat()}: {count}</title></rect>'
        )
        if index % 7 == 0 or (index == len(days) - 1 and index % 7 > 3):
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}">{day.strftime("%m-%d")}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
