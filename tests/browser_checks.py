"""What the browser test reads off a rendered dashboard page (Vega's SVG and the DOM).

Each function takes a Playwright page and returns a list of problems (empty: fine),
so one test run can report every page's problems at once.
"""

from __future__ import annotations

import re

CHART = '[data-testid="stVegaLiteChart"]'

# every <text> of every chart's SVG: content, and whether it lies inside the SVG box
# (3 px of slack: a rotated title's box includes its font's empty ascent)
TEXTS_JS = """(sel) => [...document.querySelectorAll(sel + ' svg.marks')].flatMap(svg => {
  const box = svg.getBoundingClientRect();
  return [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()).map(t => {
    const r = t.getBoundingClientRect();
    return [t.textContent, r.left >= box.left - 3 && r.right <= box.right + 3
            && r.top >= box.top - 3 && r.bottom <= box.bottom + 3];
  });
})"""

# per chart: the boxes of the value labels (Vega text marks) and of the bars
MARKS_JS = """(sel) => [...document.querySelectorAll(sel + ' svg.marks')].map(svg => {
  const boxes = q => [...svg.querySelectorAll(q)].map(e => {
    const r = e.getBoundingClientRect();
    return [e.textContent, r.left, r.top, r.right, r.bottom];
  });
  return {values: boxes('g.mark-text.role-mark text'), bars: boxes('g.mark-rect.role-mark path')};
})"""

# every bar, line, band and point that names a method: [method, colour, mark class,
# dash pattern, width]; value labels and whiskers are black by design, so left out
STYLES_JS = """(sel) => [...document.querySelectorAll(['rect', 'line', 'area', 'symbol']
    .map(k => `${sel} g.mark-${k}.role-mark > *`).join(', '))].map(m => {
  const found = /(?:^|; )method: ([^;]+)/.exec(m.getAttribute('aria-label') || '');
  const fill = m.getAttribute('fill');
  const hue = fill && fill !== 'none' && fill !== 'transparent' ? fill : m.getAttribute('stroke');
  return found && [found[1], hue, m.parentNode.getAttribute('class'),
                   m.getAttribute('stroke-dasharray') || '', m.getAttribute('stroke-width')];
}).filter(Boolean)"""

# the chips of a multiselect: [text, whole text shown, chip inside the box]
CHIPS_JS = """(label) => {
  const box = [...document.querySelectorAll('[data-testid="stMultiSelect"]')]
    .find(b => b.innerText.startsWith(label));
  if (!box) return null;
  const group = box.querySelector('.react-aria-ComboBox [role="group"]');
  if (!group) return null;
  const field = group.getBoundingClientRect();
  return [...group.querySelectorAll('[data-tag]')].map(tag => {
    const text = tag.querySelector('span[title]'), r = tag.getBoundingClientRect();
    return [text.innerText, text.scrollWidth <= text.clientWidth, r.right <= field.right + 1];
  });
}"""

# every visible selectbox: [label, value, whole value shown]
SELECTS_JS = """() => [...document.querySelectorAll('[data-testid="stSelectbox"] input')]
  .filter(i => i.offsetParent !== null)
  .map(i => [i.getAttribute('aria-label'), i.value, i.scrollWidth <= i.clientWidth + 1])"""

# every visible table: [header texts, content height, visible height]
TABLE_HEIGHTS_JS = """() => [...document.querySelectorAll('[data-testid="stDataFrame"]')]
  .filter(f => f.offsetParent !== null && f.querySelector('.dvn-scroller')).map(f => {
    const s = f.querySelector('.dvn-scroller');
    return [[...f.querySelectorAll('[role="columnheader"]')].map(h => h.innerText),
            s.scrollHeight, s.clientHeight];
  })"""

ALERT_JS = """() => { const a = document.querySelector('[data-testid="stAlert"]');
  const c = document.querySelector('[data-testid="stVegaLiteChart"]');
  return a && [a.innerText, a.getBoundingClientRect().top, c ? c.getBoundingClientRect().top : 1e9];
}"""


def clipped_texts(page) -> list[str]:
    """Chart texts that Vega shortened ("...") or that lie outside their chart."""
    return [
        f"{text!r} {'cut short' if '…' in text else 'outside its chart'}"
        for text, inside in page.evaluate(TEXTS_JS, CHART)
        if "…" in text or not inside
    ]


def _overlap(a: list, b: list) -> bool:
    return min(a[3], b[3]) - max(a[1], b[1]) > 0.5 and min(a[4], b[4]) - max(a[2], b[2]) > 0.5


def overlapping_values(page) -> list[str]:
    """Pairs of value labels that overlap each other, per chart."""
    out = []
    for chart, marks in enumerate(page.evaluate(MARKS_JS, CHART)):
        values = marks["values"]
        out += [
            f"chart {chart}: {a[0]!r} overlaps {b[0]!r}"
            for i, a in enumerate(values)
            for b in values[i + 1 :]
            if _overlap(a, b)
        ]
    return out


def thin_bars(page, charts: range, least_px: float) -> list[str]:
    """Bars of the given charts thinner than ``least_px`` (rows of horizontal bars)."""
    marks = page.evaluate(MARKS_JS, CHART)
    return [
        f"chart {c}: a bar {bar[4] - bar[2]:.1f} px thick"
        for c in charts
        for bar in marks[c]["bars"]
        if bar[4] - bar[2] < least_px
    ]


def method_styles(page) -> list[tuple[str, str, str, str, str]]:
    """(method, colour, mark class, dash, width) of every mark that names a method."""
    return [tuple(x) for x in page.evaluate(STYLES_JS, CHART)]


def cut_chips(page, label: str) -> list[str]:
    """Chips of the multiselect ``label`` whose text is cut or that stick out of the box."""
    chips = page.evaluate(CHIPS_JS, label)
    if not chips:
        return [f"no chips in the {label!r} multiselect"]
    return [f"chip {text!r} cut" for text, whole, inside in chips if not (whole and inside)]


def cut_selects(page) -> list[str]:
    """Selectboxes whose chosen value is cut short (wider than the box)."""
    return [
        f"select {name!r} shows {value!r} cut"
        for name, value, whole in page.evaluate(SELECTS_JS)
        if not whole
    ]


def scrolled_tables(page, first_headers: list[str]) -> list[str]:
    """Visible tables whose headers start with ``first_headers`` and that scroll."""
    n = len(first_headers)
    return [
        f"table {heads[:n]}: {content} px of rows in {shown} px"
        for heads, content, shown in page.evaluate(TABLE_HEIGHTS_JS)
        if heads[:n] == first_headers and content > shown + 1
    ]


def header_alert(page) -> tuple[str, float, float] | None:
    """The first alert's text, its top and the first chart's top (px), or None."""
    found = page.evaluate(ALERT_JS)
    return None if found is None else (found[0], found[1], found[2])


def dash_key(dash: str) -> str:
    """A dash pattern as Vega writes it, normalised ("8,4" / "8 4" -> "8,4")."""
    return ",".join(re.split(r"[ ,]+", dash.strip())) if dash.strip() else ""
