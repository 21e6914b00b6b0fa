"""The comparison's charts: DVC plot templates filled with rows, and rendered to PNG."""

from __future__ import annotations

from typing import Any


def fill_chart(template: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """A DVC plot template (Vega-Lite with ``"<DVC_METRIC_DATA>"`` as its data values)
    filled with ``rows``, ready to render. The templates here use no other anchor.

    Raises:
        ValueError: the template has no data anchor.
    """
    filled = _replace(template, rows)
    if filled == template:
        raise ValueError('the chart template has no "<DVC_METRIC_DATA>" anchor')
    return filled


def _replace(node: Any, rows: list[dict[str, Any]]) -> Any:
    if node == "<DVC_METRIC_DATA>":
        return rows
    if isinstance(node, dict):
        return {k: _replace(v, rows) for k, v in node.items()}
    if isinstance(node, list):
        return [_replace(v, rows) for v in node]
    return node


def render_png(template: dict[str, Any], rows: list[dict[str, Any]], scale: float = 2) -> bytes:
    """``template`` (a DVC plot template, see :func:`fill_chart`) filled with ``rows``,
    rendered to PNG bytes by vl-convert (no browser, no network), at ``scale`` times its
    size in pixels.

    Raises:
        ValueError: the template has no data anchor, or vl-convert cannot render it.
    """
    import vl_convert  # about 0.3 s to import; only the compare stage renders

    return vl_convert.vegalite_to_png(fill_chart(template, rows), scale=scale)
