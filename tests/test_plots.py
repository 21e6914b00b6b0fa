"""The offline plot page and the PNG export (initbench.views.plots)."""

import re
from pathlib import Path

import pytest

from initbench.views import plots

REPO = Path(__file__).resolve().parents[1]
#: An address the browser would fetch: a script, stylesheet, image or frame from the network.
FETCHED_URL = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.I
)


@pytest.fixture(scope="module")
def template() -> str:
    return plots.offline_template()


def test_the_committed_template_is_what_the_pinned_vl_convert_gives(template):
    committed = (REPO / plots.TEMPLATE).read_text(encoding="utf-8")
    assert committed == template, "run `python -m initbench.views.plots template` and commit it"


def test_dvc_is_configured_to_use_it():
    config = (REPO / ".dvc" / "config").read_text(encoding="utf-8")
    assert re.search(r"^\[plots\]\s*\n\s*html_template = plots/offline\.html$", config, re.M)


def test_the_page_inlines_vega_and_fetches_nothing(template):
    assert "{plot_divs}" in template and "{refresh_tag}" in template
    assert "{scripts}" not in template  # DVC would put its CDN <script> tags there
    assert not FETCHED_URL.search(template)
    assert "window.vegaEmbed=" in template.replace(" ", "")


def test_the_url_check_catches_dvcs_own_cdn_tags():
    from dvc_render.vega import VegaRenderer

    assert FETCHED_URL.search(VegaRenderer.SCRIPTS)


def test_dvc_fills_the_page_with_plots_and_adds_no_cdn_tag(template, tmp_path):
    from dvc_render import render_html
    from dvc_render.vega import VegaRenderer

    spec = {"mark": "line", "encoding": {"x": {"field": "step", "type": "quantitative"},
                                         "y": {"field": "loss", "type": "quantitative"}}}  # fmt: skip
    renderer = VegaRenderer([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}], "loss",
                            template=None)  # fmt: skip
    renderer.get_filled_template = lambda *a, **k: spec
    page_template = tmp_path / "t.html"
    page_template.write_text(template, encoding="utf-8")
    out = tmp_path / "index.html"
    render_html([renderer], out, html_template=page_template)
    page = out.read_text(encoding="utf-8")
    assert "vegaEmbed('#" in page
    assert not FETCHED_URL.search(page)


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("metrics/plots/finetune/history.json", "metrics_plots_finetune_history"),
        ("artifacts/plots/kmeans_filters/seed0.png", "artifacts_plots_kmeans_filters_seed0"),
        ("Fine-tune loss", "fine_tune_loss"),
        ("???", "plot"),
    ],
)
def test_each_plot_gets_a_readable_file_name(name, slug):
    assert plots._slug(name) == slug
