"""Small inline SVG charts for the admin (no JavaScript library, no CDN)."""

from django.utils.html import format_html, format_html_join

WIDTH, HEIGHT, PAD = 420, 160, 30


def line_chart(values, title="", unit="steps"):
    """A polyline of ``values`` (e.g. a loss curve, one value per ``unit``), with its largest
    and last value labelled."""
    values = [float(value) for value in values]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)
    points = " ".join(
        f"{PAD + i * step:.1f},{HEIGHT - PAD - (value - low) / span * (HEIGHT - 2 * PAD):.1f}"
        for i, value in enumerate(values)
    )
    return format_html(
        '<figure class="shopguide-chart"><figcaption>{}</figcaption>'
        '<svg width="{}" height="{}" viewBox="0 0 {} {}" role="img" aria-label="{}">'
        '<polyline fill="none" stroke="#417690" stroke-width="1.5" points="{}"/>'
        '<text x="{}" y="14" font-size="11">{}</text><text x="{}" y="{}" font-size="11">{} {}, last {}</text>'
        "</svg></figure>",
        title,
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        title,
        points,
        PAD,
        f"max {high:.3f}",
        PAD,
        HEIGHT - 8,
        len(values),
        unit,
        f"{values[-1]:.3f}",
    )


def bar_chart(bars, title=""):
    """Horizontal bars for ``{label: value in 0..1}``."""
    if not bars:
        return ""
    rows = format_html_join(
        "",
        '<div class="shopguide-bar"><span>{}</span><meter min="0" max="1" value="{}"></meter> {}</div>',
        ((label, f"{value:.4f}", f"{value:.3f}") for label, value in bars.items()),
    )
    return format_html('<figure class="shopguide-chart"><figcaption>{}</figcaption>{}</figure>', title, rows)
