"""The HTML of a report page: escaping, tables, figure blocks with their data, and the page around them.

The page is one self-contained file: figures are inline images (``data:`` URIs), styles and the
two small scripts are inline, fonts are the reader's own; nothing is fetched, so it works opened
from disk with no network. The numbers behind every figure are embedded as strict JSON in a
``<script type="application/json">`` beside it (NaN and infinities written as null). The page
checks itself on load: the ``#ktmu-check`` element records how many figures decoded and every
script error, which is what the browser test reads.
"""
from __future__ import annotations

import base64
import html
import json
import math
from typing import Any, Sequence

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#fafafa;color:#1d1d1f;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
main{max-width:1180px;margin:0 auto;padding:16px 20px 40px;background:#fff;min-height:100vh}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #e4e4e7;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
nav ol{columns:3;margin:6px 0;padding-left:20px}
.scroll{overflow-x:auto;margin:6px 0}
table{border-collapse:collapse;font-size:12.5px;font-variant-numeric:tabular-nums}
th,td{border-bottom:1px solid #e4e4e7;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#f4f4f5;white-space:normal;vertical-align:bottom}
td:first-child,th:first-child{text-align:left}
td.text,th.text{text-align:left;white-space:normal}
tr.original td{color:#555;font-style:italic}tr.missing td{color:#a1a1aa}
td.flag{color:#b91c1c;font-weight:600}
code,pre{font:12px/1.4 ui-monospace,"DejaVu Sans Mono",monospace;background:#f4f4f5;border-radius:3px}
code{padding:1px 4px}pre{padding:8px;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
figure{margin:14px 0 22px}figcaption{margin:0 0 6px;color:#3f3f46}
img.ktmu-figure{display:block;max-width:100%;height:auto;border:1px solid #e4e4e7}
details.numbers summary{cursor:pointer;color:#52525b;font-size:12px}
.note{background:#fff7ed;border-left:3px solid #fb923c;padding:6px 10px;margin:8px 0}
dl.defs dt{font-weight:600;margin-top:8px}dl.defs dd{margin:2px 0 0 18px}
footer{margin-top:30px;color:#71717a;font-size:12px}
"""

# Installed first, before any other script: every error on the page is recorded where --dump-dom shows it.
ERROR_HOOK = """window.ktmuErrors=[];window.addEventListener('error',function(e){window.ktmuErrors.push(String(e.message||e.type))},true);"""

# On load: count the figures that decoded, parse every embedded data block, record the result in #ktmu-check;
# a <details> shows its figure's numbers when opened.
CHECK = """
window.addEventListener('load',function(){
 var figs=document.querySelectorAll('img.ktmu-figure'),ok=0,data=document.querySelectorAll('script.ktmu-data'),parsed=0;
 figs.forEach(function(i){if(i.complete&&i.naturalWidth>0){ok++;i.setAttribute('data-rendered','1')}});
 data.forEach(function(s){try{JSON.parse(s.textContent);parsed++}catch(e){window.ktmuErrors.push('bad data '+s.id+': '+e)}});
 var c=document.getElementById('ktmu-check');
 c.setAttribute('data-figures',figs.length);c.setAttribute('data-rendered',ok);c.setAttribute('data-data',parsed);
 c.setAttribute('data-errors',window.ktmuErrors.length);c.setAttribute('data-width',document.documentElement.scrollWidth);c.setAttribute('data-error-text',window.ktmuErrors.join(' | '));
 c.textContent='page check: '+ok+' of '+figs.length+' figures rendered, '+parsed+' data blocks read, '+window.ktmuErrors.length+' errors.';
});
document.addEventListener('toggle',function(e){var d=e.target;if(!d.classList||!d.classList.contains('numbers'))return;
 var pre=d.querySelector('pre');if(pre&&!pre.textContent){var s=document.getElementById(pre.getAttribute('data-for'));
 pre.textContent=JSON.stringify(JSON.parse(s.textContent),null,1)}},true);
"""


def esc(text: Any) -> str:
    """Text (or anything printable) escaped for HTML content and attribute values."""
    return html.escape(str(text), quote=True)


def strict(obj: Any) -> Any:
    """JSON-ready data: NaN and infinities to None, tuples to lists, keys to strings."""
    if isinstance(obj, dict):
        return {str(k): strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def json_text(data: Any) -> str:
    """Strict JSON (no NaN) that is safe inside a ``<script>`` element (no ``</`` or ``<!--`` in it)."""
    text = json.dumps(strict(data), allow_nan=False, separators=(",", ":"), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def table(head: Sequence[str] | None, rows: Sequence[Sequence[Any]], row_classes: Sequence[str] | None = None,
          text_columns: Sequence[int] = (), flag_column: int | None = None) -> str:
    """An HTML table in a horizontally scrolling box (no header row for ``head=None``); ``text_columns`` wrap and align left."""
    def cell(tag: str, i: int, v: Any) -> str:
        """One escaped cell; flags are coloured."""
        cls = ["text"] if i in text_columns else []
        if tag == "td" and i == flag_column and str(v) not in ("-", ""):
            cls.append("flag")
        attr = f' class="{" ".join(cls)}"' if cls else ""
        return f"<{tag}{attr}>{esc(v)}</{tag}>"

    out = ["<div class=\"scroll\"><table>"]
    if head is not None:
        out += ["<thead><tr>", *(cell("th", i, h) for i, h in enumerate(head)), "</tr></thead>"]
    out.append("<tbody>")
    for n, row in enumerate(rows):
        cls = (row_classes or [""] * len(rows))[n]
        out.append(f"<tr{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def image_uri(png: bytes) -> str:
    """A PNG as a ``data:`` URI (inline: the page fetches nothing)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_size(png: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the PNG header."""
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def figure_block(fid: str, title: str, caption: str, png: bytes, data: Any) -> str:
    """A figure: its caption, the inline image, and the numbers behind it (strict JSON, shown on request)."""
    width, height = png_size(png)
    return (f'<figure id="{esc(fid)}"><figcaption><b>{esc(title)}.</b> {esc(caption)}</figcaption>'
            f'<img class="ktmu-figure" alt="{esc(title)}" width="{width}" height="{height}" src="{image_uri(png)}">'
            f'<details class="numbers"><summary>numbers behind this figure (JSON)</summary><pre data-for="data-{esc(fid)}"></pre></details>'
            f'<script type="application/json" class="ktmu-data" id="data-{esc(fid)}">{json_text(data)}</script></figure>')


def note(text: str) -> str:
    """A highlighted remark (what is missing, unfinished or not comparable)."""
    return f'<p class="note">{esc(text)}</p>'


def page(title: str, intro: str, sections: Sequence[tuple[str, str, str]], footer: str) -> str:
    """The whole page: title, table of contents, ``sections`` as (id, heading, inner HTML), footer with the self-check."""
    toc = "".join(f'<li><a href="#{esc(sid)}">{esc(heading)}</a></li>' for sid, heading, _ in sections)
    body = "".join(f'<section id="{esc(sid)}"><h2>{esc(heading)}</h2>{inner}</section>' for sid, heading, inner in sections)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><script>{ERROR_HOOK}</script><style>{CSS}</style></head>"
            f"<body><main><header><h1>{esc(title)}</h1>{intro}<nav><ol>{toc}</ol></nav></header>{body}"
            f"<footer>{footer}<p id=\"ktmu-check\">page check: not run (scripts disabled?)</p></footer></main>"
            f"<script>{CHECK}</script></body></html>\n")
