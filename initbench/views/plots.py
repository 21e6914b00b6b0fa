"""Plots that work offline: DVC's HTML page with Vega inlined, and PNGs of every plot.

``dvc plots show`` fills an HTML template with one ``vegaEmbed`` call per plot and, by
default, loads Vega, Vega-Lite and Vega-Embed from a CDN: offline, those plots stay
blank. ``.dvc/config`` points DVC at :data:`TEMPLATE` instead, a page that carries the
three libraries inline (the bundle that vl-convert-python ships) and no ``{scripts}``
placeholder, so DVC's CDN tags are never added. ``dvc plots show`` and ``dvc plots
diff`` then render with no network.

Usage::

    python -m initbench.views.plots template   # rewrite .dvc/plots/offline.html (after a vl-convert bump)
    python -m initbench.views.plots png [OUT]  # a PNG of every plot of `dvc plots show` (dvc_plots/png)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from initbench.core.errors import InitbenchError
from initbench.core.files import write_bytes, write_text

#: The page ``dvc plots show`` fills (``.dvc/config``: ``plots.html_template``).
TEMPLATE = Path(".dvc/plots/offline.html")
#: The Vega-Lite major.minor DVC's plot templates are written for (their ``$schema``: v5).
VEGA_LITE = "5.21"

_PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>initbench plots</title>
    <!-- Vega {vega}, Vega-Lite {vega_lite} and Vega-Embed {vega_embed}, inlined from
         vl-convert-python {vl_convert}: this page loads nothing from the network.
         Written by `python -m initbench.views.plots template`. -->
    <script type="text/javascript">
(function () {{  // the bundle's own names stay local; it sets window.vegaEmbed
{bundle}
}})();
    </script>
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


def offline_template() -> str:
    """The HTML template for DVC: its ``{plot_divs}`` and ``{refresh_tag}`` placeholders, the
    JavaScript bundle of vl-convert-python inline, no ``{scripts}`` (DVC's CDN tags)."""
    from importlib.metadata import version

    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    return _PAGE.format(
        refresh_tag="{refresh_tag}",
        plot_divs="{plot_divs}",
        vega=vl_convert.get_vega_version(),
        vega_lite=VEGA_LITE,
        vega_embed=vl_convert.get_vega_embed_version(),
        vl_convert=version("vl-convert-python"),
        bundle=bundle.replace("</script", "<\\/script"),
    )


def _slug(name: str) -> str:
    """A file name for a plot: ``metrics/plots/finetune/history.json`` ->
    ``metrics_plots_finetune_history``, ``Fine-tune loss`` -> ``fine_tune_loss``."""
    stem = re.sub(r"\.(json|ya?ml|csv|tsv|png|jpe?g|gif|svg)$", "", name, flags=re.I)
    return re.sub(r"[^A-Za-z0-9]+", "_", stem).strip("_").lower() or "plot"


def export_png(out_dir: Path, scale: float = 2.0) -> list[Path]:
    """Write a PNG of every plot that ``dvc plots show`` shows (workspace) into ``out_dir``:
    Vega-Lite plots rendered by vl-convert at ``scale``, image plots copied.

    Raises:
        InitbenchError: ``dvc plots show --json`` failed (its message is included).
    """
    import vl_convert

    shown = subprocess.run(
        [sys.executable, "-m", "dvc", "plots", "show", "--json"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        raise InitbenchError(f"dvc plots show --json failed: {shown.stderr.strip()}")
    plots = json.loads(shown.stdout)
    written = []
    for name, entries in sorted(plots.get("data", {}).items()):
        for i, entry in enumerate(entries):
            target = out_dir / f"{_slug(name)}{f'_{i}' if i else ''}.png"
            if entry.get("type") == "vega":
                write_bytes(target, vl_convert.vegalite_to_png(entry["content"], scale=scale))
            elif entry.get("type") == "image":
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(entry["url"], target)
            else:
                continue
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m initbench.views.plots", description=__doc__.split("\n\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("template", help=f"rewrite {TEMPLATE}")
    png = commands.add_parser("png", help="a PNG of every plot")
    png.add_argument("out", nargs="?", default="dvc_plots/png", type=Path)
    args = parser.parse_args(argv)
    if args.command == "template":
        write_text(TEMPLATE, offline_template())
        print(f"wrote {TEMPLATE}")
    else:
        written = export_png(args.out)
        print(f"wrote {len(written)} PNG(s) to {args.out}/")


if __name__ == "__main__":
    from initbench.core.cli import run

    run(main, wall_time=False)
