"""Small line charts drawn as inline SVG on the server: no JavaScript, no CDN."""

from __future__ import annotations

from html import escape

from markupsafe import Markup

WIDTH, HEIGHT, PAD = 360, 140, 28
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1")


def line_chart(title: str, labels: list[str], series: dict[str, list[float | None]],
               unit: str = "") -> Markup:
    """One chart: x = `labels` (days), one polyline per series; gaps where a value is None."""
    values = [v for vs in series.values() for v in vs if v is not None]
    top = max(values, default=0.0) or 1.0
    n = max(len(labels), 1)

    def x(i: int) -> float:
        return PAD + (WIDTH - 2 * PAD) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: float) -> float:
        return HEIGHT - PAD - (HEIGHT - 2 * PAD) * (v / top)

    parts = [f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" aria-label="{escape(title)}">',
             f'<title>{escape(title)}</title>',
             f'<text x="{PAD}" y="14" class="chart-title">{escape(title)}</text>',
             f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
             'stroke="#999"/>',
             f'<text x="2" y="{PAD + 4}" class="chart-axis">{top:.4g}{escape(unit)}</text>']
    if labels:
        parts.append(f'<text x="{PAD}" y="{HEIGHT - 8}" class="chart-axis">'
                     f'{escape(labels[0])}</text>')
        if len(labels) > 1:
            parts.append(f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" text-anchor="end" '
                         f'class="chart-axis">{escape(labels[-1])}</text>')
    for k, (name, vs) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(vs) if v is not None]
        if len(points) > 1:
            pts = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
                         f'points="{pts}"/>')
        parts.extend(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="2.5" fill="{colour}"/>'
                     for px, py in points)
        parts.append(f'<text x="{WIDTH - PAD - 90 + 0}" y="{14 + 12 * k}" fill="{colour}" '
                     f'class="chart-legend">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))
