"""The workbook templates (``workbooks/*.xlsx``), built as code.

Each template has a **Data** sheet (an Excel table holding the data set shipped in
``xlglmm/data``), a **Model** sheet whose cells hold the real formulas
(``=GLMM_POISSON(...)``, ``=GLMM_RANEF(...)``, ...) pointing at the table, native
Excel charts fed by the spilled ranges (a caterpillar plot of the BLUPs with
+-1.96 x conditional-SD bars, observed against fitted), and a short **Read me**
sheet.

How a template is made: openpyxl writes the workbook with the formulas (array
formulas over the range each block will fill, so that Excel 365 spills them and
older Excel treats them as Ctrl+Shift+Enter arrays), the formatting and the charts;
then :func:`xlglmm.workbook.recalc.recalc` evaluates every formula and stores the results as
the cells' cached values.  So the file shows the real numbers before the add-in
recalculates, and the charts are drawn from them.  The block sizes used for the
layout come from calling the same worksheet functions on the same data first;
``build`` checks that the recalculated blocks have exactly those sizes.

``python workbooks/build_templates.py`` rebuilds all four; ``xlglmm demo`` builds
the workplace-safety one.

Printing (``_print_pages``): every sheet prints landscape; the Model and NB2 sheets
print one block or chart per page in reading order (their print area is a list of
ranges, one per page), at one zoom per sheet chosen so that each page fits Letter
and A4 paper, also in Calc without the Calibri font.  The build checks that every
chart and block lies on one page and that no cell with content is left unprinted.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from ..engine.model_check import PEARSON
from .excel_formula import cell_name, col_letters, range_name

TEMPLATES = ("workplace_safety", "grouseticks", "cbpp", "sleepstudy")

# Excel 365's calculation-engine id: with it (and no fullCalcOnLoad) Excel shows the
# stored results on opening instead of recalculating everything at once
EXCEL_CALC_ID = 191029

BLUE = "1F4E79"
FORMULA_FILL = "DDEBF7"
HEADER_FILL = "F2F2F2"
FONT = "Calibri"


def dataset(name: str) -> pd.DataFrame:
    """A data set shipped with the package: workplace_safety, grouseticks, cbpp,
    sleepstudy."""
    path = resources.files("xlglmm").joinpath("data", f"{name}.csv")
    with resources.as_file(path) as p:
        return pd.read_csv(p)


# ---- worksheet-shaped arguments (what the formulas will pass) --------------------------

def _cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, (bool,)):
        return v
    if isinstance(v, (int, float)) or hasattr(v, "item"):
        return float(v)
    return str(v)


def _cols(df: pd.DataFrame, names) -> list:
    return [list(names)] + [[_cell(v) for v in r] for r in df[list(names)].itertuples(index=False)]


# ---- layout helpers ------------------------------------------------------------------------

@dataclass
class Placed:
    """A block placed on the Model sheet: anchor, formula, the block computed now."""
    row: int
    col: int
    formula: str
    block: list
    sheet: str = "Model"

    @property
    def shape(self):
        return len(self.block), len(self.block[0])

    @property
    def region(self):
        h, w = self.shape
        return (self.row, self.col, self.row + h - 1, self.col + w - 1)

    @property
    def ref(self) -> str:
        return range_name(*self.region)

    def cell(self, label, col_offset=1) -> str:
        """The address of the value next to a label in the first column."""
        for i, r in enumerate(self.block):
            if r and r[0] == label:
                return cell_name(self.row + i, self.col + col_offset)
        raise KeyError(label)

    def rows_of(self, first_col_value) -> list[int]:
        return [self.row + i for i, r in enumerate(self.block) if r[0] == first_col_value]


@dataclass
class Layout:
    wb: object
    model: object
    data: object
    placed: list = field(default_factory=list)
    # sheet title -> [(what, range)]: the printed pages, in order (see _print_pages)
    pages: dict = field(default_factory=dict)

    def place(self, row, col, formula, block, ws=None):
        """Put a block's formula at (row, col) of ``ws`` (default: the Model sheet)."""
        ws = self.model if ws is None else ws
        if isinstance(block, str):
            raise RuntimeError(f"template formula {formula} gives {block}")
        p = Placed(row, col, formula, [list(r) for r in block], ws.title)
        self.placed.append(p)
        ws.cell(row, col).value = _array_formula(p.ref, formula)
        _style_block(ws, p)
        return p


def _array_formula(ref, text):
    from openpyxl.worksheet.formula import ArrayFormula
    return ArrayFormula(ref, text)


def _fonts():
    from openpyxl.styles import Alignment, Border, Font, PatternFill, Side
    return dict(
        title=Font(name=FONT, bold=True, size=15, color=BLUE), bold=Font(name=FONT, bold=True),
        note=Font(name=FONT, italic=True, color="595959"),
        label=Font(name=FONT, bold=True, color=BLUE),
        fill=PatternFill("solid", fgColor=FORMULA_FILL),
        head=PatternFill("solid", fgColor=HEADER_FILL),
        under=Border(bottom=Side(style="thin", color="808080")),
        wrap=Alignment(wrap_text=True, vertical="top"),
        center=Alignment(horizontal="center"))


SECTION_HEADS = ("Fixed effects", "Random effects", "Model fit", "Notes", "group", "Model")
STATISTIC_HEADS = ("z value", "t value", "Chisq")


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _style_block(ws, p: Placed):
    """Number formats and header styling for the cells the block will fill; header
    cells above numbers are right-aligned, like the numbers.  Numbers follow
    xlglmm.numfmt: p-values (Pr(...) columns) as EXCEL_PVALUE, test statistics (z,
    t, Chisq) with 2 decimals, every other column of a section with 4 significant
    digits for its smallest value (the 'Model fit' section value by value: each row
    is another quantity)."""
    from openpyxl.styles import Alignment

    from ..numfmt import EXCEL_PVALUE, EXCEL_STATISTIC, excel_number_format
    f = _fonts()
    # sections: runs of rows between blank rows, each under its header row
    sections, start = [], 0
    for i in range(len(p.block) + 1):
        if i == len(p.block) or all(v is None for v in p.block[i]):
            if start < i:
                sections.append((start, i))
            start = i + 1
    formats, numeric_cols = {}, {}
    for a, b in sections:
        head = p.block[a]
        cols = {j for k in range(a, b) for j, v in enumerate(p.block[k]) if _is_number(v)}
        for k in range(a, b):
            numeric_cols[k] = cols
        for j in cols:
            h = head[j] if isinstance(head[j], str) else ""
            if h.startswith("Pr("):
                col_fmt = EXCEL_PVALUE
            elif h in STATISTIC_HEADS:
                col_fmt = EXCEL_STATISTIC
            else:
                col_fmt = excel_number_format([p.block[k][j] for k in range(a, b)])
            for k in range(a, b):
                if head[0] == "Model fit":
                    formats[k, j] = excel_number_format([p.block[k][j]])
                else:
                    formats[k, j] = col_fmt
    for i, row in enumerate(p.block):
        r = p.row + i
        is_head = bool(row) and isinstance(row[0], str) and (
            row[0] in SECTION_HEADS or (i == 0 and all(isinstance(x, str) or x is None for x in row)))
        for j, v in enumerate(row):
            c = ws.cell(r, p.col + j)
            if is_head:
                c.font = f["bold"]
                c.border = f["under"]
                c.fill = f["fill"] if (i, j) == (0, 0) else f["head"]
                if j in numeric_cols.get(i, ()):
                    c.alignment = Alignment(horizontal="right")
                continue
            if isinstance(v, bool):
                # Excel shows a boolean as TRUE/FALSE anyway; LibreOffice needs the format
                c.number_format = '"TRUE";"TRUE";"FALSE"'
            elif _is_number(v):
                c.number_format = formats[i, j]
        if row and i == 0:
            ws.cell(r, p.col).fill = f["fill"]


def _number_format(*values) -> str:
    """The one rule (xlglmm.numfmt) for cells that are not in a block."""
    from ..numfmt import excel_number_format
    return excel_number_format(values)


def _title(ws, title, subtitle, last_col: int):
    """The sheet's title in A1 and a subtitle wrapped across A2 to ``last_col`` (the
    width of the first printed page; its height is set by _fit_long_text)."""
    from openpyxl.styles import Alignment
    f = _fonts()
    ws["A1"] = title
    ws["A1"].font = f["title"]
    ws.row_dimensions[1].height = 21
    ws["A2"] = subtitle
    ws["A2"].font = f["note"]
    ws["A2"].alignment = Alignment(wrap_text=True, vertical="top")
    ws.merge_cells(start_row=2, start_column=1, end_row=2, end_column=last_col)


def _label(ws, row, col, text):
    c = ws.cell(row, col, text)
    c.font = _fonts()["label"]
    return c


def _data_sheet(wb, df: pd.DataFrame, table: str, computed: dict, title: str):
    """The Data sheet: an Excel table of ``df`` plus computed columns
    (name -> formula over [#This Row] of other columns, written as
    ``Table[[#This Row],[col]]``)."""
    from openpyxl.worksheet.table import Table, TableFormula, TableStyleInfo
    ws = wb.create_sheet("Data")
    names = list(df.columns) + list(computed)
    ws.append(names)
    n = len(df)
    for i, rec in enumerate(df.itertuples(index=False), start=2):
        row = [v.item() if hasattr(v, "item") else v for v in rec]
        for name, expr in computed.items():
            row.append("=" + expr.format(t=table))
        ws.append(row)
    ref = f"A1:{col_letters(len(names))}{n + 1}"
    t = Table(displayName=table, ref=ref)
    t.tableStyleInfo = TableStyleInfo(name="TableStyleMedium2", showRowStripes=True)
    t._initialise_columns()
    for tc, name in zip(t.tableColumns, names):
        tc.name = name
        if tc.name in computed:
            tc.calculatedColumnFormula = TableFormula(attr_text=computed[tc.name].format(t=table))
    ws.add_table(t)
    ws.freeze_panes = "A2"
    for j, name in enumerate(names, start=1):
        ws.column_dimensions[col_letters(j)].width = max(10, len(name) + 3)
        if name in computed:        # 0/1 indicators (IF(..., 1, 0)) whole, others 4 decimals
            fmt = "0" if computed[name].startswith("IF(") and computed[name].endswith(",1,0)") \
                else "0.0000"
            for r in range(2, n + 2):
                ws.cell(r, j).number_format = fmt
    _page_setup(ws, fit_width=True, repeat_rows="1:1")
    return ws


def _readme(wb, title, paragraphs):
    from openpyxl.styles import Alignment, Font
    ws = wb.create_sheet("Read me", 0)
    ws.column_dimensions["A"].width = 3
    ws.column_dimensions["B"].width = 110
    ws["B1"] = title
    ws["B1"].font = Font(name=FONT, bold=True, size=15, color=BLUE)
    r = 3
    for p in paragraphs:
        if isinstance(p, tuple):              # a heading
            ws.cell(r, 2, p[0]).font = Font(name=FONT, bold=True, size=12, color=BLUE)
            r += 1
            continue
        c = ws.cell(r, 2, p)
        c.alignment = Alignment(wrap_text=True, vertical="top")
        ws.row_dimensions[r].height = ROW_PT * _wrapped_lines(p, _col_px(ws, 2), None)
        r += 1
    ws.sheet_view.showGridLines = False
    _page_setup(ws, fit_width=True)
    return ws


def _chart_title(text, size=1100):
    from openpyxl.chart.text import RichText, Text
    from openpyxl.chart.title import Title
    from openpyxl.drawing.text import (CharacterProperties, Paragraph, ParagraphProperties,
                                       RegularTextRun)
    cp = CharacterProperties(sz=size, b=True)
    para = Paragraph(pPr=ParagraphProperties(defRPr=cp), r=[RegularTextRun(rPr=cp, t=text)])
    return Title(tx=Text(rich=RichText(p=[para])), overlay=False)


def _axis_title(text, size=900):
    return _chart_title(text, size)


def _error_bars(minus: str, plus: str, colour: str, end_caps: bool = True):
    """Custom error bars of a chart series: below and above each point by the values
    of the ranges ``minus`` and ``plus`` ('Sheet'!$E$5:$E$24; 0 or blank: no bar)."""
    from openpyxl.chart.data_source import NumDataSource, NumRef
    from openpyxl.chart.error_bar import ErrorBars
    from openpyxl.chart.shapes import GraphicalProperties
    from openpyxl.drawing.line import LineProperties
    return ErrorBars(errBarType="both", errValType="cust", noEndCap=not end_caps,
                     plus=NumDataSource(numRef=NumRef(f=plus)),
                     minus=NumDataSource(numRef=NumRef(f=minus)),
                     spPr=GraphicalProperties(ln=LineProperties(solidFill=colour)))


def _caterpillar(lay: Layout, ranef: Placed, group: str, hrow: int, hcol: int, title: str,
                 anchor: str, ytitle: str, term_col: int = 2, width=16.0, height=7.0):
    """A sorted table of one factor's BLUPs over the GLMM_RANEF block and a dot chart
    with +-1.96 x cond. SD error bars.  Sorting by formulas: the last column gives
    each level (in the block's order) its position when sorted, ties broken by
    order (RANK + COUNTIF); the first four columns look the levels up by position."""
    from openpyxl.chart import LineChart, Reference
    from openpyxl.chart.shapes import GraphicalProperties
    from openpyxl.styles import Alignment
    ws = lay.model
    f = _fonts()
    rows = ranef.rows_of(group)
    r0, r1 = rows[0], rows[-1]
    n = len(rows)
    lev = col_letters(ranef.col + 1)
    blup = col_letters(ranef.col + term_col)
    sd = col_letters(ranef.col + term_col + 1)
    rng = lambda c: f"${c}${r0}:${c}${r1}"
    heads = ["rank", group, "BLUP", "1.96 x cond.SD", "sort position"]
    for j, h in enumerate(heads):
        c = ws.cell(hrow, hcol + j, h)
        c.font, c.border, c.fill = f["bold"], f["under"], f["head"]
        c.alignment = Alignment(horizontal="center" if j == 0 else "left" if j == 1
                                else "right")
    k_col, l_col, b_col, e_col, o_col = (col_letters(hcol + j) for j in range(5))
    order = f"${o_col}${hrow + 1}:${o_col}${hrow + n}"
    own = [r for r in ranef.block if r[0] == group]
    blup_fmt = _number_format(*(r[term_col] for r in own))
    sd_fmt = _number_format(*(1.96 * r[term_col + 1] for r in own))
    for k in range(1, n + 1):
        r = hrow + k
        src = r0 + k - 1
        # sort position = rank + (ties so far) - 1, with the ties counted by RANK too:
        # RANK compares exactly while COUNTIF (Excel, Calc) compares to 15 digits, so
        # two BLUPs one bit apart would get one position twice under RANK + COUNTIF
        head = f"${blup}${r0}:{blup}{src}"
        ws.cell(r, hcol + 4, f"=RANK({blup}{src},{rng(blup)},1)+ROWS({head})"
                f"-RANK({blup}{src},{head},1)-RANK({blup}{src},{head},0)+1")
        ws.cell(r, hcol, k).alignment = Alignment(horizontal="center")
        pos = f"MATCH({k_col}{r},{order},0)"
        ws.cell(r, hcol + 1, f"=INDEX({rng(lev)},{pos})")
        ws.cell(r, hcol + 2, f"=INDEX({rng(blup)},{pos})").number_format = blup_fmt
        ws.cell(r, hcol + 3, f"=1.96*INDEX({rng(sd)},{pos})").number_format = sd_fmt
    ch = LineChart()
    ch.title = _chart_title(title)
    ch.style = 2
    ch.height, ch.width = height, width
    ch.y_axis.title = _axis_title(ytitle)
    ch.x_axis.title = _axis_title(f"{group}, sorted by its effect")
    ch.add_data(Reference(ws, min_col=hcol + 2, min_row=hrow, max_row=hrow + n),
                titles_from_data=True)
    ch.set_categories(Reference(ws, min_col=hcol + 1, min_row=hrow + 1, max_row=hrow + n))
    s = ch.series[0]
    s.graphicalProperties.line.noFill = True
    s.marker.symbol = "circle"
    s.marker.size = 5
    s.marker.graphicalProperties = GraphicalProperties(solidFill=BLUE)
    s.marker.graphicalProperties.line.solidFill = BLUE
    s.smooth = False
    err = f"'{ws.title}'!${e_col}${hrow + 1}:${e_col}${hrow + n}"
    s.errBars = _error_bars(err, err, "7F7F7F", end_caps=False)
    ch.legend = None
    ch.x_axis.delete = False
    ch.y_axis.delete = False
    ch.x_axis.tickLblPos = "low"
    ch.y_axis.number_format = "0.0"
    if n > 25:
        ch.x_axis.tickLblSkip = max(1, math.ceil(n / 20))
    ch.y_axis.majorGridlines = None
    ws.add_chart(ch, anchor)
    return ch


def _line_ends(ws, top: int, col: int, low: str, high: str, fmt: str) -> str:
    """The two ends of a chart's y = x line in cells ``col``, rows ``top`` + 1 and + 2
    (``low``, ``high``: numbers or formulas), under a 'line ends' head; returns the
    two cells' range."""
    ws.cell(top, col, "line ends").font = _fonts()["bold"]
    for k, v in enumerate((low, high), start=1):
        ws.cell(top + k, col, v).number_format = fmt
    return range_name(top + 1, col, top + 2, col)


def _reference(ws, rng: str):
    """An openpyxl chart Reference to the range ``rng`` ('B5:B24') of ``ws``."""
    from openpyxl.chart import Reference

    from .excel_formula import parse_range
    r1, c1, r2, c2 = parse_range(rng)
    return Reference(ws, min_col=c1, min_row=r1, max_col=c2, max_row=r2)


def _add_diagonal(chart, ws, line: str, title: str):
    """The dashed line y = x on a scatter chart, through the two cells ``line``
    (_line_ends) used for both coordinates."""
    from openpyxl.chart import Series
    from openpyxl.drawing.line import LineProperties
    ends = _reference(ws, line)
    diagonal = Series(ends, ends, title=title)
    diagonal.marker.symbol = "none"
    diagonal.graphicalProperties.line = LineProperties(solidFill="C00000", prstDash="dash",
                                                       w=12700)
    chart.series.append(diagonal)


def _scatter(ws, title: str, xs: str, ys: str, anchor: str, xtitle: str, ytitle: str,
             points: str, line: str | None = None, line_title: str = "",
             width=17.0, height=7.5):
    """A scatter chart of the points (``xs``, ``ys``: ranges on ``ws``) and, given
    ``line`` (the range of its two ends, _line_ends), the dashed line y = x."""
    from openpyxl.chart import ScatterChart, Series
    from openpyxl.chart.shapes import GraphicalProperties
    ref = lambda rng: _reference(ws, rng)    # noqa: E731
    ch = ScatterChart()
    ch.title = _chart_title(title)
    ch.style = 2
    ch.height, ch.width = height, width
    ch.x_axis.title = _axis_title(xtitle)
    ch.y_axis.title = _axis_title(ytitle)
    ch.x_axis.number_format = "General"
    ch.y_axis.number_format = "General"
    s = Series(ref(ys), ref(xs), title=points)
    s.marker.symbol = "circle"
    s.marker.size = 4
    s.marker.graphicalProperties = GraphicalProperties(solidFill=BLUE)
    s.marker.graphicalProperties.line.solidFill = BLUE
    s.graphicalProperties.line.noFill = True
    ch.series.append(s)
    if line is not None:
        _add_diagonal(ch, ws, line, line_title)
    ch.x_axis.delete = False
    ch.y_axis.delete = False
    # the axes' labels at the plot's edges, not across it where residuals cross 0
    ch.x_axis.tickLblPos = ch.y_axis.tickLblPos = "low"
    ch.legend.position = "b"
    ch.y_axis.majorGridlines = None
    ch.x_axis.majorGridlines = None
    ws.add_chart(ch, anchor)
    return ch


def _observed_fitted(lay: Layout, pred: Placed, observed_expr, obs_col: int, title: str,
                     anchor: str, what: str, observed: list, width=17.0, height=7.5):
    """Observed values (``observed``: what ``observed_expr`` gives, for the number
    format) beside GLMM_PREDICT's fitted column, and a scatter of the two with the
    line observed = fitted."""
    ws = lay.model
    f = _fonts()
    n = pred.shape[0] - 1
    top = pred.row
    c = ws.cell(top, obs_col, f"observed {what}")
    c.font, c.border, c.fill = f["bold"], f["under"], f["head"]
    obs_fmt = _number_format(*observed)
    for i in range(1, n + 1):
        ws.cell(top + i, obs_col, "=" + observed_expr(i)).number_format = obs_fmt
    fitted = range_name(top + 1, pred.col, top + n, pred.col)
    obs = range_name(top + 1, obs_col, top + n, obs_col)
    line = _line_ends(ws, top, obs_col + 1, 0, f"=MAX({fitted},{obs})", obs_fmt)
    return _scatter(ws, title, fitted, obs, anchor, f"fitted {what}", f"observed {what}",
                    "rows of the data", line, "observed = fitted", width, height)


def _shrinkage_chart(ws, ranef: Placed, group: str, anchor: str, title: str, unit: str):
    """The shrinkage plot of one factor's random intercepts from GLMM_RANEF's block:
    each level's raw estimate (x) against its BLUP (y), with the line BLUP = raw (no
    shrinkage; its ends in the cells under the chart): a level's point lies between
    the line and 0 on the BLUP axis, the nearer 0 the more the model shrank it.
    Returns the chart and the line's ends."""
    rows = ranef.rows_of(group)
    head = ranef.block[rows[0] - ranef.row - 1]
    raw_col, blup_col = (ranef.col + head.index(h) for h in ("raw (Intercept)", "(Intercept)"))
    raw, blup = (range_name(rows[0], c, rows[-1], c) for c in (raw_col, blup_col))
    chart = _scatter(ws, title, raw, blup, anchor, f"raw estimate ({unit})",
                     f"BLUP ({unit})", f"{group} levels", None, width=15.0, height=7.0)
    own = [r for r in ranef.block if r[0] == group]
    fmt = _number_format(*(r[raw_col - ranef.col] for r in own))
    r2, c1 = (_chart_box(ws, chart)[k] for k in (2, 1))
    line = _line_ends(ws, r2 + 1, c1, f"=MIN({raw},{blup})", f"=MAX({raw},{blup})", fmt)
    _add_diagonal(chart, ws, line, "BLUP = raw (no shrinkage)")
    return chart, line


def _new_book(title_text):
    import openpyxl
    wb = openpyxl.Workbook()
    model = wb.active
    model.title = "Model"
    wb.calculation.calcId = EXCEL_CALC_ID
    wb.calculation.fullCalcOnLoad = False
    wb.properties.title = title_text
    wb.properties.creator = "xlglmm"
    return wb, model


def _widths(ws, widths: dict):
    for col, w in widths.items():
        ws.column_dimensions[col].width = w


# ---- printing ------------------------------------------------------------------------------
# Every sheet prints landscape.  The Model and NB2 sheets print one page per block or
# chart, in reading order: their print area is a list of ranges, and Excel and Calc
# print each range of a print area on pages of its own, in the order given.  A table
# with a row per observation (fitted values, per-chick effects) is split into
# page-high ranges.  One fixed zoom per sheet: manual page breaks do not survive
# fit-to-page in either program, and fit-to-page over several ranges differs between
# them.  The zoom is the largest at which the widest and the tallest page fit the
# body of a landscape Letter page (the narrower) and of an A4 page (the shorter).

MARGINS = dict(left=0.5, right=0.5, top=0.75, bottom=0.75, header=0.3, footer=0.3)  # inch
BODY_PX = ((11.0 - 1.0) * 96, (8.27 - 1.5) * 96)      # at 96 px per inch
HEADROOM = 0.96           # for the programs' own rounding of widths, heights and fonts
# Column widths are counted in the default font's digits: Calc without Calibri (or its
# metric twin Carlito) sizes them by its substitute's digits, DejaVu Sans' a third
# wider than Calibri's; its text is wider by about as much.  Pages are sized for that.
FONT_SLACK = 1.34
FOOTER = "&A - page &P of &N"
ROW_PT = 15.0             # Calibri 11's row height
# Calibri's advance widths in 1/2048 em (its digits, 1038, are Excel's 7 px column
# unit at 11 pt); characters not listed count as 1000.
CALIBRI = {**dict.fromkeys("0123456789", 1038), **dict.fromkeys(" ", 463),
           **dict.fromkeys("ijl'|", 470), **dict.fromkeys(".,:;!", 520),
           **dict.fromkeys("()[]{}-f", 625), **dict.fromkeys("rt", 700),
           **dict.fromkeys("sz/", 805), **dict.fromkeys("cvxyk", 910),
           **dict.fromkeys("abdeghnopqu", 1050), **dict.fromkeys("mw%", 1550),
           **dict.fromkeys("MW", 1750), **dict.fromkeys("I", 516),
           **dict.fromkeys("ABCDEFGHJKLNOPQRSTUVXYZ", 1180)}


def _col_px(ws, c: int) -> float:
    """A column's width in pixels (Excel's rule for a width in characters of 7 px)."""
    d = ws.column_dimensions.get(col_letters(c))
    if d is None or not d.customWidth:
        return 64.0
    return float(int(d.width * 7 + 0.5))


def _row_px(ws, r: int) -> float:
    d = ws.row_dimensions.get(r)
    return (d.height if d is not None and d.height else ROW_PT) * 4 / 3


def _text_px(text: str, font) -> float:
    """The width of ``text`` in Calibri (``font``'s size; bold 5% wider), in px."""
    size = (font.sz or 11) if font is not None else 11
    bold = 1.05 if font is not None and font.b else 1.0
    return sum(CALIBRI.get(ch, 1000) for ch in str(text)) / 2048 * size * 96 / 72 * bold


def _wrapped_lines(text: str, width_px: float, font) -> int:
    """How many lines ``text`` takes in a wrapped cell ``width_px`` wide (words
    wrap; a word longer than the line is broken)."""
    avail = max(1.0, width_px - 8)
    space = _text_px(" ", font)
    lines = 0
    for para in str(text).split("\n"):
        n, cur = 1, 0.0
        for word in para.split(" "):
            w = _text_px(word, font)
            if cur and cur + space + w <= avail:
                cur += space + w
                continue
            if cur:
                n += 1
            n += max(0, math.ceil(w / avail) - 1)
            cur = w - (math.ceil(w / avail) - 1) * avail if w > avail else w
        lines += n
    return lines


def _block_cells(lay: Layout, ws) -> dict:
    """(row, col) -> value for every cell a block on ``ws`` fills (None included)."""
    cells = {}
    for p in lay.placed:
        if p.sheet == ws.title:
            for i, row in enumerate(p.block):
                for j, v in enumerate(row):
                    cells[p.row + i, p.col + j] = v
    return cells


def _occupied(ws, blocks: dict, r: int, c: int) -> bool:
    """A cell that stops text overflowing into it: a value, or a block's cell (Excel
    and Calc fill a block's blank cells with empty text)."""
    return (r, c) in blocks or ws.cell(r, c).value not in (None, "")


def _fit_long_text(lay: Layout, ws):
    """Text that would be cut is wrapped and its row made tall enough: a block's text
    wider than its column (a block's blank cells stop overflow), and text beside a
    full cell.  Wrapped and merged cells get the height of their lines."""
    from openpyxl.styles import Alignment
    blocks = _block_cells(lay, ws)
    merged = {(m.min_row, m.min_col): m for m in ws.merged_cells.ranges}
    lines_of = {}

    def wrap(cell, width_px):
        al = cell.alignment
        cell.alignment = Alignment(wrap_text=True, vertical="top", horizontal=al.horizontal)
        text = blocks.get((cell.row, cell.column), cell.value)
        n = _wrapped_lines(text, width_px, cell.font)
        lines_of[cell.row] = max(lines_of.get(cell.row, 1), n)

    for (r, c), v in blocks.items():
        if isinstance(v, str) and v:
            cell = ws.cell(r, c)
            if _text_px(v, cell.font) > _col_px(ws, c) - 6:
                wrap(cell, _col_px(ws, c))
    for row in ws.iter_rows():
        for cell in row:
            v, r, c = cell.value, cell.row, cell.column
            if not isinstance(v, str) or v.startswith("=") or (r, c) in blocks:
                continue
            if (r, c) in merged:
                m = merged[r, c]
                width = sum(_col_px(ws, k) for k in range(m.min_col, m.max_col + 1))
                if cell.alignment.wrap_text or _text_px(v, cell.font) > width - 6:
                    wrap(cell, width)
                continue
            if cell.alignment.wrap_text or cell.alignment.horizontal in ("right", "center"):
                # right-aligned text overflows to the left, over its neighbour
                if cell.alignment.wrap_text or _text_px(v, cell.font) > _col_px(ws, c) - 6:
                    wrap(cell, _col_px(ws, c))
                continue
            need, have, k = _text_px(v, cell.font), _col_px(ws, c), c
            while have < need:
                k += 1
                if _occupied(ws, blocks, r, k):
                    wrap(cell, _col_px(ws, c))
                    break
                have += _col_px(ws, k)
    for r, n in lines_of.items():
        if n > 1:
            ws.row_dimensions[r].height = max(ROW_PT * n, ws.row_dimensions[r].height or 0)
            # the row's other cells at the top too, level with the first line
            for c in range(1, ws.max_column + 1):
                cell = ws.cell(r, c)
                if (r, c) in blocks or cell.value is not None:
                    al = cell.alignment
                    cell.alignment = Alignment(wrap_text=al.wrap_text, vertical="top",
                                               horizontal=al.horizontal)


def _text_end(ws, blocks: dict, r: int, c: int) -> int:
    """The last column that the (unwrapped) text of cell (r, c) reaches."""
    cell = ws.cell(r, c)
    v = cell.value
    if not isinstance(v, str) or v.startswith("=") or cell.alignment.wrap_text:
        return c
    need, have, k = _text_px(v, cell.font), _col_px(ws, c), c
    while have < need and not _occupied(ws, blocks, r, k + 1):
        k += 1
        have += _col_px(ws, k)
    return k


def _chart_box(ws, chart) -> tuple:
    """(row1, col1, row2, col2): the cells a chart anchored at a cell covers."""
    from openpyxl.utils.cell import coordinate_from_string, column_index_from_string
    if not isinstance(chart.anchor, str):          # pinned to its cells already
        a = chart.anchor
        return a._from.row + 1, a._from.col + 1, a.to.row + 1, a.to.col + 1
    letters, r1 = coordinate_from_string(chart.anchor)
    c1 = column_index_from_string(letters)
    w, h = chart.width / 2.54 * 96, chart.height / 2.54 * 96
    c2, acc = c1, _col_px(ws, c1)
    while acc < w:
        c2 += 1
        acc += _col_px(ws, c2)
    r2, acc = r1, _row_px(ws, r1)
    while acc < h:
        r2 += 1
        acc += _row_px(ws, r2)
    return r1, c1, r2, c2


def _pin_chart(ws, chart):
    """Anchor a chart to the cells it covers (a two-cell anchor): a program whose
    columns come out wider (FONT_SLACK) widens the chart with them, so the chart
    stays within its cells and on its page."""
    from openpyxl.drawing.spreadsheet_drawing import AnchorMarker, TwoCellAnchor
    r1, c1, r2, c2 = _chart_box(ws, chart)
    w, h = chart.width / 2.54 * 96, chart.height / 2.54 * 96
    dx = w - sum(_col_px(ws, c) for c in range(c1, c2))
    dy = h - sum(_row_px(ws, r) for r in range(r1, r2))
    emu = 9525                                     # EMU per pixel
    chart.anchor = TwoCellAnchor(
        _from=AnchorMarker(col=c1 - 1, row=r1 - 1),
        to=AnchorMarker(col=c2 - 1, colOff=int(dx * emu), row=r2 - 1, rowOff=int(dy * emu)))


def _box(ws, *items) -> tuple:
    """The smallest (row1, col1, row2, col2) holding ranges ('B5:K30'), charts and
    boxes."""
    from .excel_formula import parse_range
    boxes = []
    for it in items:
        if isinstance(it, str):
            boxes.append(parse_range(it) if ":" in it else parse_range(f"{it}:{it}"))
        elif isinstance(it, tuple):
            boxes.append(it)
        else:
            boxes.append(_chart_box(ws, it))
    return (min(b[0] for b in boxes), min(b[1] for b in boxes),
            max(b[2] for b in boxes), max(b[3] for b in boxes))


def _inside(inner, outer) -> bool:
    return (outer[0] <= inner[0] and inner[2] <= outer[2]
            and outer[1] <= inner[1] and inner[3] <= outer[3])


def _overlap(a, b) -> bool:
    return not (a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1])


def _ordered_print_area(refs: list, title: str):
    """A print area whose ranges keep the order given (openpyxl sorts them)."""
    from openpyxl.worksheet.cell_range import CellRange
    from openpyxl.worksheet.print_settings import PrintArea

    class InOrder(PrintArea):
        def sorted(self):
            return [CellRange(r) for r in refs]

    area = InOrder(refs)
    area.title = title
    return area


def _print_pages(lay: Layout, ws, pages: list):
    """Print ``ws`` as ``pages``: (what, box) in reading order, box a tuple from _box;
    a ``what`` ending in ' (per row)' is a long table split into page-high ranges.
    Every box is widened to the text that overflows out of it.  Checks that every
    chart lies on one page, every block on one page (or on the consecutive pages of
    a long table) and every cell with content on some page."""
    _fit_long_text(lay, ws)
    blocks = _block_cells(lay, ws)
    placed = [p for p in lay.placed if p.sheet == ws.title]

    def widen(box):
        r1, c1, r2, c2 = box
        ends = [_text_end(ws, blocks, r, c) for r in range(r1, r2 + 1)
                for c in range(c1, c2 + 1) if ws.cell(r, c).value is not None]
        return r1, c1, r2, max([c2] + ends)

    def width(box):
        return FONT_SLACK * sum(_col_px(ws, c) for c in range(box[1], box[3] + 1))

    def height(box):
        return sum(_row_px(ws, r) for r in range(box[0], box[2] + 1))

    pages = [(what, widen(box)) for what, box in pages]
    fit = [min(1.0, HEADROOM * BODY_PX[0] / width(b)) for _, b in pages]
    fit += [HEADROOM * BODY_PX[1] / height(b) for w, b in pages if not w.endswith("(per row)")]
    zoom = min(100, int(100 * min(fit)))
    body_h = HEADROOM * BODY_PX[1] * 100 / zoom
    out = []
    for what, box in pages:
        if not what.endswith("(per row)"):
            out.append((what, box))
            continue
        r1, c1, r2, c2 = box
        k, top = 0, r1
        while top <= r2:
            bottom, h = top, _row_px(ws, top)
            while bottom < r2 and h + _row_px(ws, bottom + 1) <= body_h:
                bottom += 1
                h += _row_px(ws, bottom)
            chunk = (top, c1, bottom, c2)
            if k:     # later pages: only the columns with content in these rows
                used = [c for (r, c) in blocks if top <= r <= bottom and c1 <= c <= c2]
                used += [c.column for row in ws.iter_rows(min_row=top, max_row=bottom,
                                                           min_col=c1, max_col=c2)
                         for c in row if c.value is not None]
                chunk = widen((top, c1, bottom, max(used, default=c1)))
            out.append((what if not k else what.replace("(per row)", f"(per row, cont. {k})"),
                        chunk))
            k, top = k + 1, bottom + 1
    # the design's promises
    boxes = [b for _, b in out]
    for ch in ws._charts:
        cb = _chart_box(ws, ch)
        if sum(_overlap(cb, b) for b in boxes) != 1 or not any(_inside(cb, b) for b in boxes):
            raise RuntimeError(f"{ws.title}: chart at {ch.anchor} is not on one page")
    for p in placed:
        region = p.region
        on = [b for b in boxes if _overlap(region, b)]
        whole = any(_inside(region, b) for b in on)
        long = all(b[1] <= region[1] and region[3] <= b[3] for b in on) and \
            sum(b[2] - b[0] + 1 for b in on) >= region[2] - region[0] + 1
        if not on or not (whole and len(on) == 1 or long and len(on) > 1):
            raise RuntimeError(f"{ws.title}: block {p.ref} is split or not printed")
    content = set(blocks) | {(c.row, c.column) for row in ws.iter_rows() for c in row
                             if c.value is not None}
    lost = [cell_name(*rc) for rc in sorted(content)
            if not any(_inside((rc[0], rc[1], rc[0], rc[1]), b) for b in boxes)]
    if lost:
        raise RuntimeError(f"{ws.title}: cells not printed: {lost[:8]}")
    for ch in ws._charts:
        _pin_chart(ws, ch)
    ws._print_area = _ordered_print_area([range_name(*b) for b in boxes], ws.title)
    _page_setup(ws, zoom=zoom)
    lay.pages[ws.title] = [(what, range_name(*b)) for what, b in out]
    return out


def _page_setup(ws, zoom=None, fit_width=False, repeat_rows=None):
    """Landscape, the margins and footer of every sheet; a fixed zoom, or fit to one
    page wide (as many pages down as needed)."""
    from openpyxl.worksheet.page import PageMargins
    ws.page_setup.orientation = "landscape"
    ws.page_margins = PageMargins(**MARGINS)
    ws.oddFooter.center.text = FOOTER
    ws.oddFooter.center.size = 9
    if zoom is not None:
        ws.page_setup.scale = zoom
        ws.sheet_properties.pageSetUpPr.fitToPage = False
    if fit_width:
        ws.page_setup.fitToWidth = 1
        ws.page_setup.fitToHeight = 0
        ws.sheet_properties.pageSetUpPr.fitToPage = True
    if repeat_rows:
        ws.print_title_rows = repeat_rows


ADAPT_COMMON = [
    ("How to use it with your own data",),
    "1. Paste your rows into the table on the Data sheet, over the example (keep the header "
    "row; rename the headers if you like). The table grows or shrinks with the data and the "
    "formulas follow it, because they refer to table columns (Table[[#All],[column]]: the "
    "header row is included, so its text names the rows of the block).",
    "2. Change which columns the formulas use: click a blue cell and edit its arguments. The "
    "companion formulas (GLMM_RANEF, GLMM_PREDICT) take the same leading arguments as the fit: "
    "copy the fit's arguments into them.",
    "3. Excel 365 / 2021 resizes the spilled blocks by itself. Excel 2019 and older show them "
    "as array formulas of a fixed size: to enlarge one, select its range plus the new cells, "
    "press F2, then Ctrl+Shift+Enter (to shrink one, delete it and enter it again over the "
    "smaller range).",
    "4. The caterpillar table (rank, level, BLUP, 1.96 x cond.SD) and the charts refer to "
    "fixed rows of the blocks: when the number of levels changes, extend or shorten that "
    "table and the chart ranges (and the print area, see 'Printing').",
    ("Without Excel for Windows",),
    "The functions run in Excel for Windows with the xlglmm add-in (see the README: "
    "xlglmm addin install), and in LibreOffice Calc with the xlglmm bridge "
    "(xlglmm libreoffice install). Anywhere else (Mac, Linux, a server) run "
    "  xlglmm recalc this.xlsx  : it evaluates every GLMM_ formula with the same code and "
    "the same arguments and stores the results in the cells, as Excel would spill them.",
    "The numbers stored in this file are real results, computed by xlglmm recalc when the "
    "template was built. Excel shows them when it opens the file, until it recalculates "
    "(then the add-in computes them again; without the add-in they become #NAME?). "
    "LibreOffice Calc evaluates the GLMM_ formulas itself when it opens the file: without "
    "the xlglmm bridge it does not know them, and every cell of every block shows #NAME? "
    "(the other cells and the charts keep the stored numbers). So in Calc install the bridge "
    "(xlglmm libreoffice install), or open a copy with values only, made by "
    "  xlglmm recalc this.xlsx -o copy.xlsx --values  (numbers and text, no formulas: any "
    "spreadsheet program shows them).",
]


def _printing_help(lay: Layout) -> list:
    """The Read me's 'Printing' paragraph: what is on which page of the Model sheet
    (and of the NB2 sheet), from the print areas that _print_pages made."""
    parts = []
    for sheet, pages in lay.pages.items():
        items, k = [], 0
        while k < len(pages):
            what = pages[k][0]
            j = k
            while j + 1 < len(pages) and pages[j + 1][0].startswith(
                    what.replace(" (per row)", " (per row, cont.")):
                j += 1
            what = what.replace(" (per row)", "")
            items.append(f"{k + 1}. {what}" if j == k else f"{k + 1}-{j + 1}. {what} "
                         f"(a row per observation or level, {j - k + 1} pages)")
            k = j + 1
        parts.append(f"The {sheet} sheet prints {len(pages)} pages: " + "; ".join(items) + ".")
    return [
        ("Printing",),
        "Every sheet prints landscape (Letter or A4). The Model sheet prints one block or "
        "chart per page, in the order of the screen. " + " ".join(parts) +
        " The Read me sheet prints as it is, the Data sheet repeats its header row on "
        "every page. The print areas (Excel: Page Layout > Print Area; Calc: Format > "
        "Print Ranges) cover the example's blocks, one range per page: when your data make "
        "a block longer, extend its range.",
    ]


BLOCK_HELP = [
    ("What the blocks mean",),
    "Fit block (GLMM_POISSON / GLMM_BINOMIAL / GLMM): 'Fixed effects' - one row per term: "
    "estimate, standard error, Wald z, p-value, 95% confidence interval, and on the ratio "
    "scale (IRR = rate ratio for Poisson, OR = odds ratio for the logit link) with its "
    "interval. 'Random effects' - the variance and SD of each grouping factor's random "
    "effect (and correlations for slopes). 'Model fit' - log-likelihood, AIC, BIC, "
    "deviance, numbers of rows and groups, method, convergence. 'Notes' - plain-language "
    "warnings (singular fit, convergence, dropped rows); 'none' when all is well.",
    "GLMM_RANEF: one row per level of each grouping factor: the conditional mode (BLUP) of "
    "its random effect, on the link scale, and its conditional SD. A level's effect is "
    "uncertain when BLUP +- 1.96 x cond.SD includes 0. Then the level's number of rows, "
    "its raw estimate (what the level's own rows say, on the same scale: their mean "
    "working residual from the fit without this factor's effects) and the shrinkage "
    "1 - BLUP / raw: how far the model pulled the level toward 0 (most for levels with "
    "few rows).",
    "GLMM_PREDICT with the new rows left blank: the fitted value of every data row "
    "(random effects included), on the response scale.",
]


# ---- workplace safety ----------------------------------------------------------------------

def _key_result(ws, label, fit: Placed, term: str, ratio_col: int):
    """A headline at L3: the ratio of one term with its interval, read from the block."""
    from openpyxl.styles import Alignment
    i = fit.rows_of(term)[0] - fit.row
    fmt = _number_format(*fit.block[i][ratio_col:ratio_col + 3])
    r = fit.row + i
    c = col_letters(fit.col + ratio_col)
    lo, hi = col_letters(fit.col + ratio_col + 1), col_letters(fit.col + ratio_col + 2)
    ws.cell(3, 12, f"{label} (95% CI)").font = _fonts()["label"]
    ws.cell(4, 12, f"={c}{r}").number_format = fmt
    ws.cell(4, 13, f"={lo}{r}").number_format = f'"from "{fmt}'
    ws.cell(4, 14, f"={hi}{r}").number_format = f'"to "{fmt}'
    for col in (12, 13, 14):
        ws.cell(4, col).font = _fonts()["bold"]
        ws.cell(4, col).alignment = Alignment(horizontal="left")


def _standard_model(lay: Layout, fit_args: str, fit_call: str, fit_block, ranef_formula,
                    ranef_block, pred_formula, pred_block, groups, effect_scale,
                    observed_expr, what, obs_title, observed, key):
    """The layout of the one-model templates: the fit block at B5, the key result
    (``key``: label, term, ratio column) and the caterpillar plots to its right, the
    random effects, caterpillar tables and fitted values below, side by side.  Printed
    as: the fit; the key result and the caterpillar plots; the random effects; the
    sorted tables; the observed-vs-fitted chart with the fitted values (over further
    pages)."""
    m = lay.model
    _label(m, 4, 2, f"Fit:  ={fit_call}")
    fit = lay.place(5, 2, f"={fit_args}", fit_block)
    top = fit.region[2] + 4
    _label(m, top - 1, 2, f"Random effects:  {ranef_formula[0]}")
    ranef = lay.place(top, 2, ranef_formula[1], ranef_block)
    cat_col = ranef.region[3] + 2                 # a blank column between
    _label(m, top - 1, cat_col, "Caterpillar data (sorted)")
    anchors = ["L5", "L20"]
    charts = []
    for k, (group, title) in enumerate(groups):
        # each factor's sorted table level with its rows of the block
        hrow = ranef.rows_of(group)[0] - 1
        charts.append(_caterpillar(lay, ranef, group, hrow, cat_col, title, anchors[k],
                                   effect_scale, height=7.0 if k == 0 else 6.0))
    sorted_tables = range_name(top, cat_col, ranef.region[2], cat_col + 4)
    pred_col = cat_col + 5
    _label(m, top - 1, pred_col, f"Fitted:  {pred_formula[0]}")
    pred = lay.place(top, pred_col, pred_formula[1], pred_block)
    obs = _observed_fitted(lay, pred, observed_expr, pred_col + 1, obs_title,
                           cell_name(top + 3, pred_col + 3), what, observed, width=14.0,
                           height=7.5)
    _key_result(m, key[0], fit, key[1], key[2])
    # L to N: the key result's three cells (and the sorted tables' last columns)
    widths = {"A": 2, "B": 19, "C": 12, "D": 11, "E": 11, "F": 11, "G": 11, "H": 12,
              "I": 11, "J": 11, "K": 11, "L": 19, "M": 19, "N": 11}
    # the fitted values, the observed ones and the line's ends
    widths.update({col_letters(pred_col): 19, col_letters(pred_col + 1): 19,
                   col_letters(pred_col + 2): 10})
    _widths(m, widths)
    m.freeze_panes = "A4"
    _print_pages(lay, m, [
        ("the fit", _box(m, "A1", fit.ref)),
        ("the key result and the caterpillar plots", _box(m, "L3:N4", *charts)),
        ("the random effects", _box(m, f"B{top - 1}", ranef.ref)),
        ("the sorted caterpillar data", _box(m, cell_name(top - 1, cat_col), sorted_tables)),
        ("observed against fitted: the chart and the fitted values (per row)",
         _box(m, cell_name(top - 1, pred_col), pred.ref, cell_name(top, pred_col + 2), obs)),
    ])
    return fit, ranef, pred


def _workplace():
    import numpy as np

    from ..sheet import udfs
    df = dataset("workplace_safety")
    wb, m = _new_book("Workplace safety: Poisson GLMM")
    T = "Safety"
    _data_sheet(wb, df, T, {"log_employees": "LN({t}[[#This Row],[employees]])"},
                "Workplace safety")
    lay = Layout(wb, m, wb["Data"])
    y = _cols(df, ["incidents"])
    X = _cols(df, ["training"])
    g = _cols(df, ["plant", "month"])
    off = [["log_employees"]] + [[float(v)] for v in np.log(df.employees)]
    ya, Xa, ga = f"{T}[[#All],[incidents]]", f"{T}[[#All],[training]]", \
        f"{T}[[#All],[plant]:[month]]"
    oa = f"{T}[[#All],[log_employees]]"
    args = f"{ya}, {Xa}, {ga}, {oa}"
    _title(m, "Workplace safety: incidents per employee-month, 20 plants x 8 months",
           "Poisson GLMM  incidents ~ training + (1 | plant) + (1 | month) + "
           "offset(log(employees)).  Blue cells hold the formulas; the blocks spill from "
           "them.  See the 'Read me' sheet.", 11)
    fit, ranef, pred = _standard_model(
        lay, f"GLMM_POISSON({args})",
        "GLMM_POISSON(y, X, groups, offset)  -  crossed random intercepts for plant and "
        "month, log(employees) as offset",
        udfs.GLMM_POISSON(y, X, g, off),
        ("=GLMM_RANEF(same arguments)", f"=GLMM_RANEF({args})"),
        udfs.GLMM_RANEF(y, X, g, off),
        ("=GLMM_PREDICT(y, X, groups, , , offset)",
         f"=GLMM_PREDICT({ya}, {Xa}, {ga}, , , {oa})"),
        udfs.GLMM_PREDICT(y, X, g, offset=off),
        [("plant", "Plant effects: BLUP \u00b1 1.96 cond. SD"),
         ("month", "Month effects: BLUP \u00b1 1.96 cond. SD")],
        "effect on log rate", lambda i: f"Data!E{i + 1}", "incidents",
        "Observed vs fitted incidents", list(df.incidents),
        ("Rate ratio for training", "training", 7))
    _workplace_nb(lay, fit, args, y, X, g, off)
    _workplace_intervals(lay, args, (ya, Xa, ga, oa), y, X, g, off)
    check = _workplace_checks(lay, args, y, X, g, off)
    power = _workplace_power(lay, args, y, X, g, off)
    _readme(wb, "Workplace safety - how to read this workbook", [
        ("What it shows",),
        "Incidents at 20 plants over 8 months, with the number of employees as exposure. "
        "Some plants had a safety training. A Poisson GLMM with crossed random intercepts for "
        "plant and month and log(employees) as offset estimates the training effect as a "
        "rate ratio (IRR): IRR 0.66 means about 34% fewer incidents per employee-month.",
        f"Model sheet: {cell_name(fit.row, fit.col)} the fit (=GLMM_POISSON), "
        f"{cell_name(ranef.row, ranef.col)} the random effects (=GLMM_RANEF), "
        f"{cell_name(pred.row, pred.col)} the fitted values (=GLMM_PREDICT) beside the "
        "observed counts; the charts read those cells. Data sheet: the table 'Safety'; its "
        "column log_employees is =LN([@employees]), the offset.",
        *BLOCK_HELP,
        "Sheet 'NB2 vs Poisson': the same model as a negative binomial GLMM "
        "(=GLMM_NEGBIN, variance mu + mu^2/theta), its AIC and logLik beside the Poisson "
        "fit's. theta runs to its upper limit - NB2 reduces to the Poisson model - and the "
        "block's note says the data show no overdispersion: the Poisson model is the one "
        "to keep (its AIC is lower by about 2, the price of theta).",
        "Sheet 'Intervals': =GLMM_CONFINT gives each parameter's 95% interval three ways - "
        "Wald (estimate +- 1.96 SE; none for an SD, whose likelihood is far from "
        "quadratic), the profile likelihood (as lme4's confint) and the parametric "
        f"bootstrap ({BOOTSTRAP_NSIM:,} simulated data sets refitted; seed "
        f"{BOOTSTRAP_SEED}: the same numbers on every machine; studentized intervals for "
        "the effects, basic ones for the SDs, which held their level in a coverage study) "
        "- side by side in a table "
        "and a dot chart. Below it, =GLMM_PREDICT with an interval: the expected incidents "
        "in a month at a new plant (change its number of employees), with and without "
        "training: the 95% CI of the mean, and the 95% prediction interval of the month's "
        "count, which adds the new plant's and the month's random effects and the Poisson "
        "noise.",
        f"Sheet 'Checks': =GLMM_CHECK (same arguments as the fit) checks the model, each "
        f"check with a verdict: {_check_summary(check)} The dispersion ratio is Pearson's "
        f"chi-squared over its df ({_block_number(check.block, PEARSON):.3f}, as R's "
        "performance::check_overdispersion); the simulated-residual tests (uniformity, "
        "dispersion, zero-inflation, outliers) rank the data among 250 data sets simulated "
        "from the fit and refitted (seed 1: the same p-values on every machine). "
        "=GLMM_RESID gives every row's fitted value and its residuals; the charts plot "
        "the deviance residuals against the fitted values (no pattern: the mean is right) "
        "and against their normal quantiles (near the dashed line y = x: no outlying "
        "counts). The free cells at the top right are for =GLMM_INFLUENCE.",
        f"Sheet '{POWER_SHEET}': =GLMM_POWER (the fit's arguments, then the term tested, "
        "its effect, the test, nsim, seed, and what the design points vary) answers 'how "
        "many plants does the next study need?'. It simulates studies from the fit with "
        "training's rate ratio set to the one to detect (yellow cell, "
        f"{POWER_RATIO:g}; the effect is =LN of it), refits the model to each and tests "
        "training by the likelihood-ratio test; the power is the share of studies that "
        f"detect the effect, with its 95% CI. {_power_summary(power)} The chart draws the "
        f"power against the number of plants with the {POWER_TARGET:.0%} target as a "
        f"dashed line. {POWER_NSIM} simulations per point keep the sheet quick; more "
        "narrow the CI (4 times as many halve it) and take longer.",
        "Caterpillar plots: each dot is a plant's (or month's) BLUP on the log-rate scale, "
        "sorted; the bars are \u00b1 1.96 x its conditional SD. Observed vs fitted: points "
        "near the dashed line are fitted well.",
        *ADAPT_COMMON,
        *_printing_help(lay),
    ])
    return wb, lay


# ---- grouse ticks --------------------------------------------------------------------------


def _place_side_by_side(m, lay, specs) -> list:
    """Blocks next to each other from row 6, each under a title and the lme4 call it
    corresponds to; returns the placements."""
    fits = []
    col = 2
    for title, lme4, formula, block in specs:
        _label(m, 4, col, title)
        m.cell(5, col, f"lme4: {lme4}").font = _fonts()["note"]
        p = lay.place(6, col, formula, block)
        fits.append(p)
        col = p.region[3] + 2
    return fits


def _side_by_side(m, r: int, fits: list, names: list, heads: list) -> str:
    """A small table at row ``r``, column B: one row per fit, its name and the values
    next to ``heads`` in its block (formulas).  The names get as many columns as
    they need (never cut); returns the table's range, its label row included."""
    from openpyxl.styles import Alignment
    f = _fonts()
    _label(m, r - 1, 2, "Side by side (cells of the blocks above)")
    need = max(_text_px(n, f["bold"]) for n in names) + 12
    c, have = 2, _col_px(m, 2)
    while have < need:
        c += 1
        have += _col_px(m, c)
    first = c + 1                       # the first column of numbers
    for j in range(2, first + len(heads)):
        cell = m.cell(r, j, "Model" if j == 2 else heads[j - first] if j >= first else None)
        cell.font, cell.border, cell.fill = f["bold"], f["under"], f["head"]
        if j >= first:
            cell.alignment = Alignment(horizontal="right")
    for k, (p, name) in enumerate(zip(fits, names), start=1):
        m.cell(r + k, 2, name)
        for j, lab in enumerate(heads):
            c = m.cell(r + k, first + j, f"={p.cell(lab, 1)}")
            c.number_format = _number_format(*(_block_number(q.block, lab) for q in fits))
    return f"B{r - 1}:{col_letters(first + len(heads) - 1)}{r + len(fits)}"


def _grouse():
    from ..sheet import udfs
    raw = dataset("grouseticks")
    df = raw[["TICKS", "YEAR", "LOCATION", "INDEX", "BROOD", "HEIGHT", "cHEIGHT"]].copy()
    wb, m = _new_book("Grouse ticks: three Poisson GLMMs")
    T = "Grouse"
    computed = {"YEAR96": "IF({t}[[#This Row],[YEAR]]=96,1,0)",
                "YEAR97": "IF({t}[[#This Row],[YEAR]]=97,1,0)"}
    _data_sheet(wb, df, T, computed, "Grouse ticks")
    lay = Layout(wb, m, wb["Data"])
    d = df.copy()
    d["YEAR96"] = (d.YEAR == 96).astype(float)
    d["YEAR97"] = (d.YEAR == 97).astype(float)
    y = _cols(d, ["TICKS"])
    X = _cols(d, ["YEAR96", "YEAR97"])
    loc = _cols(d, ["LOCATION"])
    loc_idx = _cols(d, ["LOCATION", "INDEX"])
    ya, Xa = f"{T}[[#All],[TICKS]]", f"{T}[[#All],[YEAR96]:[YEAR97]]"
    la, lia = f"{T}[[#All],[LOCATION]]", f"{T}[[#All],[LOCATION]:[INDEX]]"
    _title(m, "Grouse ticks: ticks counted on 403 chicks at 63 locations, 1995-97",
           "Three Poisson GLMMs side by side; compare them by AIC and likelihood-ratio tests. "
           "YEAR enters as 0/1 columns YEAR96 and YEAR97 (1995 is the reference). "
           "See the 'Read me' sheet.", 11)
    specs = [
        ("1. Location intercepts", "TICKS ~ YEAR + (1 | LOCATION)",
         f"=GLMM_POISSON({ya}, {Xa}, {la})", udfs.GLMM_POISSON(y, X, loc)),
        ("2. + observation-level random effect (overdispersion)",
         "TICKS ~ YEAR + (1 | LOCATION) + (1 | INDEX)",
         f"=GLMM_POISSON({ya}, {Xa}, {lia})", udfs.GLMM_POISSON(y, X, loc_idx)),
        ("3. Random YEAR slope by LOCATION", "TICKS ~ YEAR + (1 + YEAR | LOCATION)",
         f"=GLMM_POISSON({ya}, {Xa}, {la}, , {Xa})",
         udfs.GLMM_POISSON(y, X, loc, None, X)),
    ]
    fits = _place_side_by_side(m, lay, specs)
    bottom = max(p.region[2] for p in fits)
    widths = {"A": 2, "L": 19}          # L: between blocks 1 and 2, the sorted BLUPs
    for p in fits:
        widths[col_letters(p.col)] = 22
        widths.update({col_letters(c): 11 for c in range(p.col + 1, p.region[3] + 1)})
        widths[col_letters(p.col + 1)] = 12           # 'poisson (log)' in one line
        widths[col_letters(p.col + 7)] = 12           # 'CI high 95%' in one line
    _widths(m, widths)
    f = _fonts()
    r = bottom + 3
    table = _side_by_side(m, r, fits, [s[0] for s in specs], ["npar", "AIC", "BIC", "logLik"])
    r2 = r + 6
    _label(m, r2 - 1, 2, "Likelihood-ratio tests:  =GLMM_COMPARE(block 1, block 2)")
    cmp1 = lay.place(r2, 2, f"=GLMM_COMPARE({fits[0].ref}, {fits[1].ref})",
                     udfs.GLMM_COMPARE(fits[0].block, fits[1].block))
    r3 = cmp1.region[2] + 2
    cmp2 = lay.place(r3, 2, f"=GLMM_COMPARE({fits[0].ref}, {fits[2].ref})",
                     udfs.GLMM_COMPARE(fits[0].block, fits[2].block))
    note = m.cell(cmp2.region[2] + 1, 2,
                  "model 1 = location intercepts; model 2 = the other model of the pair")
    note.font = f["note"]
    r4 = cmp2.region[2] + 4
    _label(m, r4 - 1, 2, "Random effects of model 2:  =GLMM_RANEF(same arguments)")
    ranef = lay.place(r4, 2, f"=GLMM_RANEF({ya}, {Xa}, {lia})",
                      udfs.GLMM_RANEF(y, X, loc_idx))
    cat_col = ranef.region[3] + 2
    _label(m, r4 - 1, cat_col, "Caterpillar data (sorted)")
    cat = _caterpillar(lay, ranef, "LOCATION", r4, cat_col,
                       "Location effects (model 2): BLUP \u00b1 1.96 cond. SD",
                       f"M{bottom + 3}", "effect on log count", width=20.0, height=7.0)
    n_loc = len(ranef.rows_of("LOCATION"))
    pred_col = cat_col + 5
    _label(m, r4 - 1, pred_col, "Fitted (model 2):  =GLMM_PREDICT(same arguments as model 2)")
    pred = lay.place(r4, pred_col, f"=GLMM_PREDICT({ya}, {Xa}, {lia})",
                     udfs.GLMM_PREDICT(y, X, loc_idx))
    obs = _observed_fitted(lay, pred, lambda i: f"Data!A{i + 1}", pred_col + 1,
                           "Observed vs fitted ticks (model 2)", f"Y{bottom + 3}", "ticks",
                           list(d.TICKS), width=14.0, height=7.0)
    m.freeze_panes = "A4"
    _print_pages(lay, m, [
        ("model 1", _box(m, "A1", fits[0].ref)),
        ("model 2", _box(m, "M4", fits[1].ref)),
        ("model 3", _box(m, "X4", fits[2].ref)),
        ("the three models side by side and the likelihood-ratio tests",
         _box(m, table, cmp1.ref, cmp2.ref, note.coordinate)),
        ("the caterpillar plot of the location effects", _box(m, cat)),
        ("observed against fitted", _box(m, obs)),
        ("the random effects of model 2 (per row)", _box(m, f"B{r4 - 1}", ranef.ref)),
        ("the sorted location effects (per row)",
         _box(m, cell_name(r4 - 1, cat_col), cell_name(r4 + n_loc, cat_col + 4))),
        ("the fitted values of model 2 beside the observed counts (per row)",
         _box(m, cell_name(r4 - 1, pred_col), pred.ref, cell_name(r4 + 2, pred_col + 2))),
    ])
    _grouse_nb(lay, fits[:2], ["1. Poisson, location intercepts (Model sheet)",
                               "2. Poisson + observation-level effect (Model sheet)"],
               f"=GLMM_NEGBIN({ya}, {Xa}, {la})", y, X, loc)
    # the whole table as GLMM's data: Calc does not pass Grouse[#All], it does this
    whole_table = f"{T}[[#All],[{d.columns[0]}]:[{d.columns[-1]}]]"
    checks = _grouse_checks(lay, whole_table, ya, Xa, la, _cols(d, list(d.columns)), y, X,
                            loc)
    zi_text = _grouse_zero_inflation(lay, whole_table, _cols(d, list(d.columns)), ya)
    _readme(wb, "Grouse ticks - how to read this workbook", [
        ("What it shows",),
        "Ticks counted on the heads of 403 red grouse chicks (one row each), at 63 "
        "locations, in 1995-1997 (the grouseticks data of Elston et al. 2001, used in "
        "lme4's examples). Three Poisson GLMMs for the counts, side by side:",
        "1. a random intercept per location; 2. plus an observation-level random effect - "
        "a random intercept per chick (INDEX), the standard remedy for overdispersion; "
        "3. a random YEAR effect by location (each location gets its own year-to-year "
        "change; correlated with its intercept).",
        "Compare them with the AICs in the small table (lower is better) and the "
        "likelihood-ratio tests (GLMM_COMPARE takes two fit blocks). Here the "
        "observation-level effect lowers the AIC by about 440: the counts are strongly "
        "overdispersed.",
        "Sheet 'NB2 vs Poisson': the other remedy - a negative binomial GLMM "
        "(=GLMM_NEGBIN, variance mu + mu^2/theta) with location intercepts. theta is about "
        "2, well below its upper limit: strong overdispersion. Its AIC beside the Poisson "
        "models' AICs (GLMM_COMPARE does not compare models of different families; AIC "
        "does).",
        "Sheet 'Checks': =GLMM_CHECK of three models. " + " ".join(
            f"{name}: {_check_summary(p)}" for name, p in checks) +
        " The chart sets each model's dispersion and zeros side by side, as observed / "
        "expected (1: as the model expects). The second check names its model by an lme4 "
        "formula, as GLMM does (the whole table as its data: " + whole_table + "); the NB2 "
        "check uses 100 simulations, as each NB2 refit estimates theta again.",
        zi_text,
        "Model 2's random effects (GLMM_RANEF) and fitted values (GLMM_PREDICT) feed the "
        "caterpillar plot of the location effects and the observed-vs-fitted chart.",
        "Categorical predictors: Excel has no factors, so YEAR enters as 0/1 columns "
        "YEAR96 and YEAR97 (=IF([@YEAR]=96,1,0)); 1995 is the reference, as in R. "
        f"GLMM(\"TICKS ~ factor(YEAR) + (1|LOCATION)\", {whole_table}) fits the same "
        "model from an lme4 formula (LibreOffice Calc does not pass Grouse[#All] to a "
        "function: name the columns, first to last, as here).",
        *BLOCK_HELP,
        *ADAPT_COMMON,
        *_printing_help(lay),
    ])
    return wb, lay


# ---- CBPP ----------------------------------------------------------------------------------

def _cbpp():
    from ..sheet import udfs
    raw = dataset("cbpp")
    df = raw[["herd", "period", "incidence", "size"]].copy()
    wb, m = _new_book("CBPP: binomial GLMM")
    T = "CBPP"
    computed = {"period2": "IF({t}[[#This Row],[period]]=2,1,0)",
                "period3": "IF({t}[[#This Row],[period]]=3,1,0)",
                "period4": "IF({t}[[#This Row],[period]]=4,1,0)",
                "proportion": "{t}[[#This Row],[incidence]]/{t}[[#This Row],[size]]"}
    _data_sheet(wb, df, T, computed, "CBPP")
    lay = Layout(wb, m, wb["Data"])
    d = df.copy()
    for k in (2, 3, 4):
        d[f"period{k}"] = (d.period == k).astype(float)
    y = _cols(d, ["incidence"])
    X = _cols(d, ["period2", "period3", "period4"])
    g = _cols(d, ["herd"])
    tr = _cols(d, ["size"])
    ya, Xa = f"{T}[[#All],[incidence]]", f"{T}[[#All],[period2]:[period4]]"
    ga, ta = f"{T}[[#All],[herd]]", f"{T}[[#All],[size]]"
    _title(m, "CBPP: new cases of contagious bovine pleuropneumonia, 15 herds x 4 periods",
           "Binomial GLMM  cbind(incidence, size - incidence) ~ period + (1 | herd): "
           "incidence new cases out of size animals.  Blue cells hold the formulas; see "
           "'Read me'.", 11)
    fit, ranef, pred = _standard_model(
        lay, f"GLMM_BINOMIAL({ya}, {Xa}, {ga}, {ta})",
        "GLMM_BINOMIAL(y, X, groups, trials)  -  odds ratios in the OR columns",
        udfs.GLMM_BINOMIAL(y, X, g, tr),
        ('=GLMM_RANEF(y, X, groups, , , , , "binomial", trials)',
         f'=GLMM_RANEF({ya}, {Xa}, {ga}, , , , , "binomial", {ta})'),
        udfs.GLMM_RANEF(y, X, g, None, None, True, 1, "binomial", tr),
        ('=GLMM_PREDICT(y, X, groups, , , , , , , , , , , "binomial", trials)',
         f'=GLMM_PREDICT({ya}, {Xa}, {ga}, , , , , , , , , , , "binomial", {ta})'),
        udfs.GLMM_PREDICT(y, X, g, family="binomial", trials=tr),
        [("herd", "Herd effects: BLUP \u00b1 1.96 cond. SD")],
        "effect on log odds", lambda i: f"Data!H{i + 1}", "proportion",
        "Observed vs fitted proportion of new cases", list(d.incidence / d["size"]),
        ("Odds ratio, period 4 vs period 1", "period4", 7))
    _readme(wb, "CBPP - how to read this workbook", [
        ("What it shows",),
        "Contagious bovine pleuropneumonia in 15 zebu herds in Ethiopia, each followed over "
        "4 periods (lme4's cbpp data): incidence new cases out of size animals per herd and "
        "period. A binomial GLMM with trials (the size column) and a random intercept per "
        "herd estimates how the odds of a new case change over the periods.",
        f"Model sheet: {cell_name(fit.row, fit.col)} the fit (=GLMM_BINOMIAL), "
        f"{cell_name(ranef.row, ranef.col)} the random effects (=GLMM_RANEF), "
        f"{cell_name(pred.row, pred.col)} the fitted probabilities (=GLMM_PREDICT) beside "
        "the observed proportions; the charts read those cells.",
        "GLMM_BINOMIAL(y, X, groups, trials): y = new cases, trials = animals at risk. The OR "
        "columns are odds ratios against period 1: OR 0.21 for period 4 means the odds of "
        "a new case fell by about 80%.",
        "Categorical predictors: Excel has no factors, so period enters as 0/1 columns "
        "period2..period4 (=IF([@period]=2,1,0)); period 1 is the reference, as in R. The "
        "companions need family \"binomial\" and the trials column in their own argument "
        "places (GLMM_RANEF: 8th and 9th; GLMM_PREDICT: 14th and 15th).",
        *BLOCK_HELP,
        "Caterpillar plot: each dot is a herd's BLUP on the log-odds scale, sorted; bars "
        "\u00b1 1.96 x conditional SD. Observed vs fitted: the proportion of new cases "
        "(incidence / size, the Data sheet's proportion column) against GLMM_PREDICT's "
        "fitted probability.",
        *ADAPT_COMMON,
        *_printing_help(lay),
    ])
    return wb, lay


# ---- negative binomial (NB2) against Poisson: a sheet of its own -----------------------

NB_SHEET = "NB2 vs Poisson"


def _block_value(p: Placed, label: str) -> str:
    """A formula reading the value next to ``label`` in a fit block (on any sheet) by
    lookup on its first column, so it survives rows moving within the block."""
    r1, c1, r2, _ = p.region
    q = f"'{p.sheet}'!" if " " in p.sheet else f"{p.sheet}!"
    lab, val = col_letters(c1), col_letters(c1 + 1)
    return (f'=INDEX({q}${val}${r1}:${val}${r2},'
            f'MATCH("{label}",{q}${lab}${r1}:${lab}${r2},0))')


def _block_number(block, label):
    for r in block:
        if r and r[0] == label:
            return r[1]
    raise KeyError(label)


def _nb_sheet(lay: Layout, title: str, subtitle: str, call: str, formula: str, block,
              poisson: list, text: list):
    """The NB2 sheet: a GLMM_NEGBIN block at B6 and, to its right, the Poisson fits'
    and the NB2 fit's npar / logLik / AIC / BIC side by side (lookups on the blocks'
    labels), the AIC difference, theta, and ``text`` (lines of explanation).
    ``poisson``: (name, Placed) of the Poisson fits on the Model sheet."""
    from openpyxl.styles import Alignment
    wb = lay.wb
    ws = wb.create_sheet(NB_SHEET, wb.sheetnames.index("Data"))
    f = _fonts()
    _title(ws, title, subtitle, 1 + len(block[0]))
    _label(ws, 4, 2, f"Fit:  ={call}")
    nb = lay.place(6, 2, formula, block, ws)
    c0 = nb.region[3] + 2
    _label(ws, 4, c0, "Side by side (looked up in the blocks by their labels)")
    heads = ["Model", "npar", "logLik", "AIC", "BIC", "AIC - AIC of NB2"]
    for j, h in enumerate(heads):
        c = ws.cell(6, c0 + j, h)
        c.font, c.border, c.fill = f["bold"], f["under"], f["head"]
        if j:
            c.alignment = Alignment(horizontal="right")
    rows = poisson + [("Negative binomial (NB2), GLMM_NEGBIN", nb)]
    nb_row = 6 + len(rows)
    aic = col_letters(c0 + 3)
    fmts = {lab: _number_format(*(_block_number(p.block, lab) for _, p in rows))
            for lab in heads[1:5]}
    diffs = [_block_number(p.block, "AIC") - _block_number(block, "AIC") for _, p in rows]
    for k, (name, p) in enumerate(rows, start=1):
        ws.cell(6 + k, c0, name)
        for j, lab in enumerate(heads[1:5], start=1):
            c = ws.cell(6 + k, c0 + j, _block_value(p, lab))
            c.number_format = fmts[lab]
        c = ws.cell(6 + k, c0 + 5, f"={aic}{6 + k}-{aic}{nb_row}")
        c.number_format = _number_format(*diffs)
    r = nb_row + 2
    labs = [lab for lab in ("NB theta", "NB theta CI low", "NB theta CI high")
            if _block_number(block, lab) is not None]   # no CI when theta is at its limit
    for lab in labs:
        ws.cell(r, c0, lab).font = f["bold"]
        c = ws.cell(r, c0 + 1, _block_value(nb, lab))
        c.number_format = _number_format(*(_block_number(block, x) for x in labs))
        r += 1
    r += 1
    _label(ws, r, c0, "How to read it")
    for line in text:
        r += 1
        c = ws.cell(r, c0, line)
        if line.startswith("("):
            c.font = f["note"]
    widths = {"A": 2, col_letters(nb.col): 30}      # 30: the notes wrap in fewer lines
    widths.update({col_letters(c): 11 for c in range(nb.col + 1, nb.region[3] + 1)})
    # the names in full: the column as wide as the longest
    widths[col_letters(c0)] = max(38, math.ceil(
        (max(_text_px(name, None) for name, _ in rows) + 14) / 7))
    widths.update({col_letters(c0 + j): 11 for j in range(1, 5)})
    widths[col_letters(c0 + 5)] = 18
    _widths(ws, widths)
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        ("the NB2 fit", _box(ws, "A1", nb.ref)),
        ("NB2 against the Poisson models, and how to read it",
         _box(ws, f"{col_letters(c0)}4", f"{col_letters(c0 + 5)}{r}")),
    ])
    return nb


def _fmt(v, nd=1):
    return f"{v:,.{nd}f}"


def _workplace_nb(lay: Layout, fit: Placed, args: str, y, X, g, off):
    from ..sheet import udfs
    block = udfs.GLMM_NEGBIN(y, X, g, off)
    theta = _block_number(block, "NB theta")
    aic_p, aic_nb = _block_number(fit.block, "AIC"), _block_number(block, "AIC")
    ll_p, ll_nb = _block_number(fit.block, "logLik"), _block_number(block, "logLik")
    nb = _nb_sheet(
        lay, "Workplace safety: negative binomial (NB2) against the Poisson model",
        "Same data, same terms, same offset; NB2 adds one parameter, theta (variance "
        "mu + mu^2/theta), for counts more variable than Poisson.",
        "GLMM_NEGBIN(y, X, groups, offset)  -  theta left blank: estimated",
        f"=GLMM_NEGBIN({args})", block,
        [("Poisson, GLMM_POISSON (Model sheet)", fit)],
        [f"theta ran to its upper limit ({_fmt(theta, 0)}): as theta grows the NB2 "
         "variance mu + mu^2/theta",
         "shrinks to mu, the Poisson variance. The data show no overdispersion beyond the "
         "plant and month effects,",
         "and the block's note says so. This is the honest result, not a failure: NB2 "
         "collapses onto the Poisson model.",
         f"logLik: NB2 {ll_nb:.3f}, Poisson {ll_p:.3f} - the same fit. AIC: NB2 "
         f"{aic_nb:.1f}, Poisson {aic_p:.1f}: NB2 pays",
         "about 2 AIC points for theta and gains nothing. Keep the Poisson model; the "
         "training effect (IRR) is the same in both.",
         "(GLMM_COMPARE refuses models of different families - compare them by AIC, as "
         "here. theta has no SE or CI at its limit.)",
         "(Compare the grouse ticks template, where theta is about 2 and NB2 lowers the "
         "AIC by several hundred.)"])
    return nb


# ---- intervals: Wald, profile and bootstrap side by side, and a new plant ---------------

INTERVALS_SHEET = "Intervals"
BOOTSTRAP_NSIM, BOOTSTRAP_SEED = 1000, 1
METHOD_COLOURS = {"Wald": "7F7F7F", "profile": BLUE, "bootstrap": "C55A11"}


def _lookup(p: Placed, label: str, col_offset: int) -> str:
    """INDEX/MATCH of the cell ``col_offset`` columns right of ``label`` in block ``p``
    (on this sheet); "none" when that cell is empty (Excel's INDEX gives 0 there)."""
    r1, c1, r2, _ = p.region
    lab, val = col_letters(c1), col_letters(c1 + col_offset)
    x = f"INDEX(${val}${r1}:${val}${r2},MATCH(\"{label}\",${lab}${r1}:${lab}${r2},0))"
    return f'=IF({x}="","none",{x})'


def _interval_dots(ws, top: int, col: int, n: int, title: str, anchor: str, ytitle: str,
                   colours: list, width=17.0, height=8.0):
    """A dot chart of the ``n`` rows below ``top``: categories in ``col``, the
    estimate in ``col`` + 1, custom error bars from the minus/plus columns ``col`` + 4
    and ``col`` + 5 (0: no bar), each dot coloured by ``colours`` (one per row)."""
    from openpyxl.chart import LineChart, Reference
    from openpyxl.chart.marker import DataPoint, Marker
    from openpyxl.chart.shapes import GraphicalProperties
    ch = LineChart()
    ch.title = _chart_title(title)
    ch.style = 2
    ch.height, ch.width = height, width
    ch.y_axis.title = _axis_title(ytitle)
    ch.add_data(Reference(ws, min_col=col + 1, min_row=top, max_row=top + n),
                titles_from_data=True)
    ch.set_categories(Reference(ws, min_col=col, min_row=top + 1, max_row=top + n))
    s = ch.series[0]
    s.graphicalProperties.line.noFill = True
    s.smooth = False
    s.marker.symbol = "circle"
    s.marker.size = 7
    for i, colour in enumerate(colours):
        gp = GraphicalProperties(solidFill=colour)
        gp.line.solidFill = colour
        s.dPt.append(DataPoint(idx=i, marker=Marker(symbol="circle", size=7, spPr=gp)))
    q = f"'{ws.title}'!"
    minus, plus = (f"{q}${col_letters(col + k)}${top + 1}:${col_letters(col + k)}${top + n}"
                   for k in (4, 5))
    s.errBars = _error_bars(minus, plus, "404040")
    ch.legend = None
    ch.x_axis.delete = False
    ch.y_axis.delete = False
    ch.x_axis.tickLblPos = "low"
    ch.y_axis.majorGridlines = None
    ws.add_chart(ch, anchor)
    return ch


def _head_row(ws, row: int, col: int, heads: list, text_cols=(0,)):
    """A table's header row; right-aligned over numbers, left over ``text_cols``."""
    from openpyxl.styles import Alignment
    f = _fonts()
    for j, h in enumerate(heads):
        c = ws.cell(row, col + j, h)
        c.font, c.border, c.fill = f["bold"], f["under"], f["head"]
        c.alignment = Alignment(horizontal="left" if j in text_cols else "right")


def _workplace_intervals(lay: Layout, args: str, new_call: tuple, y, X, g, off):
    """The Intervals sheet: GLMM_CONFINT by Wald, profile and parametric bootstrap
    (stacked, one block each), a table and a dot chart comparing the three for the SDs
    and the training effect (lookups on the blocks' labels); then expected incidents
    for a new plant of ``employees`` (an input cell) with and without training, with
    the 95% CI of the mean and the 95% prediction interval of a month's count
    (GLMM_PREDICT with ``interval``), and a column chart of both."""
    import numpy as np
    from openpyxl.styles import Alignment

    from ..sheet import udfs
    wb, f = lay.wb, _fonts()
    ws = wb.create_sheet(INTERVALS_SHEET, wb.sheetnames.index("Data"))
    _title(ws, "Workplace safety: how sure are we? Three kinds of interval, and a new plant",
           "GLMM_CONFINT gives each parameter's 95% interval by Wald (estimate +- 1.96 SE), "
           "by the profile likelihood and by the parametric bootstrap; GLMM_PREDICT with an "
           "interval gives the expected incidents at a new plant with the 95% CI of the mean "
           "and the 95% prediction interval of one month's count.", 9)
    calls = [("Wald", f"=GLMM_CONFINT({args})", {}),
             ("profile", f'=GLMM_CONFINT({args}, , , , , , , "profile")',
              {"method": "profile"}),
             ("bootstrap", f'=GLMM_CONFINT({args}, , , , , , , "bootstrap", '
                           f'{BOOTSTRAP_NSIM}, {BOOTSTRAP_SEED})',
              {"method": "bootstrap", "nsim": BOOTSTRAP_NSIM, "seed": BOOTSTRAP_SEED})]
    blocks, r = {}, 5
    for method, formula, kw in calls:
        _label(ws, r, 2, f"{method}:  {formula}")
        blocks[method] = lay.place(r + 1, 2, formula, udfs.GLMM_CONFINT(y, X, g, off, **kw),
                                   ws)
        r = blocks[method].region[2] + 3
    # the comparison: one row per parameter and method, read from the blocks
    params = [("sd_(Intercept)|plant", "SD of plant effects"),
              ("sd_(Intercept)|month", "SD of month effects"),
              ("training", "training (log rate ratio)")]
    top = r
    _label(ws, top - 1, 2, "Side by side (looked up in the blocks; the chart reads these "
                           "cells)")
    _head_row(ws, top, 2, ["parameter and method", "estimate", "lower", "upper",
                           "bar below", "bar above"])
    colours = []
    k = top
    for name, text in params:
        for method, _, _ in calls:
            k += 1
            colours.append(METHOD_COLOURS[method])
            p = blocks[method]
            ws.cell(k, 2, f"{text}: {method}")
            ws.cell(k, 3, _lookup(p, name, 1))
            ws.cell(k, 4, _lookup(p, name, 2))
            ws.cell(k, 5, _lookup(p, name, 3))
            ws.cell(k, 6, f"=IF(ISNUMBER(D{k}),C{k}-D{k},0)")     # 0: no bar
            ws.cell(k, 7, f"=IF(ISNUMBER(E{k}),E{k}-C{k},0)")
            for c in range(3, 8):
                ws.cell(k, c).number_format = "0.000"
    compare = f"B{top}:G{k}"
    dots = _interval_dots(ws, top, 2, k - top, "95% intervals: Wald (grey), profile (blue), "
                          "bootstrap (orange)", f"H{top}", "log-rate scale", colours)
    _pin_chart(ws, dots)
    # a new plant
    r = max(k, top + 16) + 3
    _label(ws, r, 2, "A new plant: expected incidents in a month, with and without training")
    ws.cell(r + 1, 2, "employees at the new plant (change it)")
    emp = ws.cell(r + 1, 3, 200)
    emp.font, emp.fill = f["bold"], f["fill"]
    rows = r + 3
    _head_row(ws, rows, 2, ["training", "plant", "month", "log_employees"], (0, 1, 2))
    for i, t in enumerate((0, 1), start=1):
        ws.cell(rows + i, 2, t).alignment = Alignment(horizontal="left")
        ws.cell(rows + i, 3, "new plant")
        ws.cell(rows + i, 5, f"=LN($C${r + 1})").number_format = "0.000"
    ws.cell(rows + 3, 2, "(month left blank: a month like those observed, its effect "
                         "drawn from the month SD)").font = f["note"]
    new_x, new_g, new_off = (f"B{rows}:B{rows + 2}", f"C{rows}:D{rows + 2}",
                             f"E{rows}:E{rows + 2}")
    nx = [["training"], [0.0], [1.0]]
    ng = [["plant", "month"], ["new plant", None], ["new plant", None]]
    no = [["log_employees"]] + [[float(np.log(200.0))]] * 2
    ya, Xa, ga, oa = new_call
    r = rows + 5
    preds = {}
    for kind, what in (("confidence", "the expected count (95% CI of the mean)"),
                       ("prediction", "one month's count (95% prediction interval)")):
        formula = (f"=GLMM_PREDICT({ya}, {Xa}, {ga}, {new_x}, {new_g}, {oa}, {new_off}"
                   f', , , , , , , , , , "{kind}")')
        _label(ws, r, 2, f"{what}:  " + formula.replace(f"{ya}, {Xa}, {ga}", "y, X, groups"))
        ws.cell(r + 2, 2, "without training")
        ws.cell(r + 3, 2, "with training")
        preds[kind] = lay.place(r + 1, 3, formula,
                                udfs.GLMM_PREDICT(y, X, g, nx, ng, off, no, interval=kind), ws)
        r += 6
    # the chart's table: the two kinds side by side per scenario
    ptop = r
    _head_row(ws, ptop, 2, ["", "expected", "CI below", "CI above", "PI below", "PI above"])
    ci, pi = preds["confidence"], preds["prediction"]
    for i, text in enumerate(("without training", "with training"), start=1):
        a, b = ci.row + i, pi.row + i
        ws.cell(ptop + i, 2, text)
        ws.cell(ptop + i, 3, f"=C{a}")
        ws.cell(ptop + i, 4, f"=C{a}-E{a}")
        ws.cell(ptop + i, 5, f"=F{a}-C{a}")
        ws.cell(ptop + i, 6, f"=C{b}-E{b}")
        ws.cell(ptop + i, 7, f"=F{b}-C{b}")
        for c in range(3, 8):
            ws.cell(ptop + i, c).number_format = "0.00"
    bars = _prediction_bars(ws, ptop, f"H{rows - 2}")
    _pin_chart(ws, bars)
    # the blocks' Note column (H) wide enough for a note in two lines
    _widths(ws, {"A": 2, "B": 36, "C": 12, "D": 12, "E": 14, "F": 12, "G": 12, "H": 64})
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        ("the three kinds of interval", _box(ws, "A1", *(p.ref for p in blocks.values()))),
        ("the intervals side by side, and their chart", _box(ws, f"B{top - 1}", compare, dots)),
        ("a new plant: expected incidents with both intervals",
         _box(ws, f"B{rows - 4}", ci.ref, pi.ref, f"B{ptop}:G{ptop + 2}", bars)),
    ])
    return blocks, preds


def _prediction_bars(ws, top: int, anchor: str, width=15.0, height=8.0):
    """Columns of the expected count for the two scenarios (rows below ``top``), one
    series with the CI of the mean and one (the same height) with the prediction
    interval as error bars."""
    from openpyxl.chart import Reference, Series
    from openpyxl.chart.shapes import GraphicalProperties
    ch = _column_chart("A new plant: expected incidents per month", "incidents in a month",
                       width, height)
    cats = Reference(ws, min_col=2, min_row=top + 1, max_row=top + 2)
    q = f"'{ws.title}'!"
    for title, colour, (lo, hi) in (("95% CI of the mean", BLUE, (4, 5)),
                                    ("95% prediction interval", "C55A11", (6, 7))):
        s = Series(Reference(ws, min_col=3, min_row=top + 1, max_row=top + 2), title=title)
        s.graphicalProperties = GraphicalProperties(solidFill=colour)
        ref = lambda c: f"{q}${col_letters(c)}${top + 1}:${col_letters(c)}${top + 2}"
        s.errBars = _error_bars(ref(lo), ref(hi), "000000")
        ch.series.append(s)
    ch.set_categories(cats)
    return _place_column_chart(ws, ch, anchor)


def _column_chart(title: str, ytitle: str, width: float, height: float):
    """A clustered column chart, titled, without series yet."""
    from openpyxl.chart import BarChart
    ch = BarChart()
    ch.type, ch.grouping, ch.style = "col", "clustered", 2
    ch.title = _chart_title(title)
    ch.height, ch.width = height, width
    ch.y_axis.title = _axis_title(ytitle)
    return ch


def _place_column_chart(ws, ch, anchor: str):
    """Both axes shown, no gridlines, the legend below; the chart put at ``anchor``."""
    ch.x_axis.delete = False
    ch.y_axis.delete = False
    ch.y_axis.majorGridlines = None
    ch.legend.position = "b"
    ws.add_chart(ch, anchor)
    return ch


def _grouse_nb(lay: Layout, fits: list, names: list, formula: str, y, X, g):
    from ..sheet import udfs
    block = udfs.GLMM_NEGBIN(y, X, g)
    theta = _block_number(block, "NB theta")
    lo, hi = _block_number(block, "NB theta CI low"), _block_number(block, "NB theta CI high")
    aic = [_block_number(p.block, "AIC") for p in fits]
    aic_nb = _block_number(block, "AIC")
    nb = _nb_sheet(
        lay, "Grouse ticks: negative binomial (NB2) against the Poisson models",
        "TICKS ~ YEAR + (1 | LOCATION) as NB2: the same terms as model 1 on the Model sheet, "
        "plus theta (variance mu + mu^2/theta).",
        "GLMM_NEGBIN(y, X, groups)  -  theta left blank: estimated",
        formula, block, list(zip(names, fits)),
        [f"theta = {theta:.2f} (95% CI {lo:.2f} to {hi:.2f}): the variance of a count with "
         f"mean 5 is 5 + 25/{theta:.1f}, about",
         f"{5 + 25 / theta:.0f} - far more than the Poisson's 5. The counts are strongly "
         "overdispersed.",
         f"AIC: Poisson model 1 {aic[0]:,.1f}, NB2 {aic_nb:,.1f}: NB2 is better by "
         f"{aic[0] - aic_nb:,.0f} points with one parameter more.",
         f"Model 2 (Poisson + a random intercept per chick) has AIC {aic[1]:,.1f}: the "
         "observation-level effect",
         "is the other remedy for overdispersion; here NB2 fits a little "
         f"{'better' if aic_nb < aic[1] else 'worse'} (AIC {abs(aic_nb - aic[1]):.1f} "
         f"{'lower' if aic_nb < aic[1] else 'higher'}). Both beat the plain Poisson model.",
         "(GLMM_COMPARE refuses models of different families - compare them by AIC, as "
         "here; lower is better.)"])
    return nb


# ---- model checks: is the model any good? --------------------------------------------

CHECKS_SHEET = "Checks"
#: the workplace Checks sheet's rows left free at the top right (column I on) for
#: GLMM_INFLUENCE's block, a plant per row, beside the check block
INFLUENCE_ROWS = (4, 28)
#: NB2 refits estimate theta again each time: 250 of them take about a minute, the
#: whole of a worksheet call's time budget
NB_CHECK_NSIM = 100
#: the check block's columns: Check, Value, Expected, p, Problem, Verdict (wrapped)
CHECK_WIDTHS = {"A": 2, "B": 25, "C": 11, "D": 11, "E": 11, "F": 9, "G": 52}


def _checks_sheet(lay: Layout, title: str, subtitle: str):
    """The Checks sheet, before the Data sheet, with its title over the check
    block's width."""
    wb = lay.wb
    ws = wb.create_sheet(CHECKS_SHEET, wb.sheetnames.index("Data"))
    _title(ws, title, subtitle, len(CHECK_WIDTHS))
    return ws


def _check_block(lay: Layout, ws, row: int, label: str, formula: str, block) -> Placed:
    """A GLMM_CHECK block at column B under ``label``."""
    _label(ws, row, 2, label)
    return lay.place(row + 1, 2, formula, block, ws)


def _check_summary(check: Placed) -> str:
    """A GLMM_CHECK block's finding in a sentence: the checks that flag a problem
    (with the dispersion ratios), or that none does."""
    flagged = [r[0] for r in check.block[1:] if r[4] is True]
    if not flagged:
        return "no problem found (every Problem cell FALSE)."
    sim = _block_number(check.block, "dispersion")
    return (f"{', '.join(flagged)} flag a problem (dispersion ratio "
            f"{_block_number(check.block, PEARSON):.2f}, simulated {sim:.2f}).")


def _workplace_checks(lay: Layout, args: str, y, X, g, off):
    """The workplace Checks sheet: GLMM_CHECK of the Poisson fit (top left; the top
    right, INFLUENCE_ROWS, is GLMM_INFLUENCE's), GLMM_RESID below on the right and,
    on the left, the deviance residuals against the fitted values and on a normal
    Q-Q plot with its line y = x, as the workplace study draws them."""
    from ..sheet import udfs
    ws = _checks_sheet(
        lay, "Workplace safety: is the Poisson model any good?",
        "GLMM_CHECK runs every check of the fit, each with a verdict in words: the "
        "dispersion ratio (as R's performance), the simulated-residual tests (DHARMa's, "
        "p-values from refitted simulations), R\u00b2 and the ICC. GLMM_RESID gives every "
        "row's fitted value and residuals; the two charts plot them.")
    check = _check_block(lay, ws, 4, "Checks:  =GLMM_CHECK(same arguments as the fit)  -  "
                         "250 refitted simulations, seed 1 (the defaults)",
                         f"=GLMM_CHECK({args})", udfs.GLMM_CHECK(y, X, g, off))
    top = INFLUENCE_ROWS[1] + 2
    _label(ws, top - 1, 9, "Residuals:  =GLMM_RESID(same arguments)  -  one row per data row")
    resid = lay.place(top, 9, f"=GLMM_RESID({args})", udfs.GLMM_RESID(y, X, g, off), ws)
    n = resid.shape[0] - 1

    def column(head):
        c = resid.col + resid.block[0].index(head)
        return range_name(top + 1, c, top + n, c)
    fitted, deviance = column("fitted"), column("deviance resid")
    quantile = column("normal quantile (deviance)")
    _widths(ws, {**CHECK_WIDTHS, "H": 3,
                 **{col_letters(c): 12 for c in range(9, resid.region[3] + 2)}})
    r0 = check.region[2] + 3
    versus = _scatter(ws, "Deviance residuals against fitted values", fitted, deviance,
                      f"B{r0}", "fitted incidents", "deviance residual", "rows of the data",
                      width=16.0, height=8.0)
    line = _line_ends(ws, top, resid.region[3] + 1, f"=MIN({quantile},{deviance})",
                      f"=MAX({quantile},{deviance})", "0.00")
    qq = _scatter(ws, "Normal Q-Q plot of the deviance residuals", quantile, deviance,
                  f"B{r0 + 17}", "normal quantile", "deviance residual", "rows of the data",
                  line, "y = x", width=16.0, height=8.0)
    influence, cooks = _workplace_influence(lay, ws, args, y, X, g, off)
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        ("the model checks", _box(ws, "A1", check.ref)),
        ("the influence of each plant and its chart",
         _box(ws, cell_name(INFLUENCE_ROWS[0], 9), influence.ref, cooks)),
        ("residuals against fitted values and the normal Q-Q plot", _box(ws, versus, qq)),
        ("the residuals (per row)", _box(ws, cell_name(top - 1, 9), resid.ref, line)),
    ])
    return check


#: the workplace sheet that plans the next study with GLMM_POWER
POWER_SHEET = "Plan the next study"
#: its inputs as built: the rate ratio to detect, the test, the simulations per design
#: point (100: the template recalculates in seconds; more narrow the CI), the seed,
#: the target power (the chart's line) and the numbers of plants
POWER_RATIO, POWER_TEST, POWER_NSIM, POWER_SEED, POWER_TARGET = 0.7, "lrt", 100, 1, 0.8
POWER_PLANTS = (10, 20, 30, 40)
INPUT_FILL = "FFF2CC"          # the cells an analyst changes (yellow)
#: where the inputs and the block are: (row of the first input, row of the block)
POWER_ROWS = (5, 22)


def _power_summary(power: Placed) -> str:
    """The power block's curve in a sentence: the power at each number of plants."""
    rows = power.block[1:[r[0] for r in power.block].index("Notes")]
    k = power.block[0].index("power")
    parts = [f"{r[k]:.0%} with {r[0]:g} plants" for r in rows]
    return "Here: " + ", ".join(parts) + "."


def _workplace_power(lay: Layout, args: str, y, X, g, off):
    """The workplace sheet "Plan the next study": the inputs an analyst changes
    (yellow cells: the rate ratio to detect, its log =LN(ratio) beside it, the test,
    nsim, seed, the target power, a column of plant counts), GLMM_POWER over them
    (the fit's arguments, term "training", along "plant") and a line chart of the
    power and its 95% CI against the number of plants with the target as a dashed
    line."""
    import math

    from openpyxl.chart import LineChart, Reference
    from openpyxl.styles import PatternFill
    from ..sheet import udfs
    wb, f = lay.wb, _fonts()
    ws = wb.create_sheet(POWER_SHEET, wb.sheetnames.index("Data"))
    _title(ws, "Workplace safety: how many plants does the next study need?",
           "GLMM_POWER simulates new studies from the fitted model - its SDs of the plant "
           "and month effects and its incident rate - with the training effect set to the "
           "rate ratio you want to detect, refits the model to each and tests training: "
           "the power is the share of studies that find it. Change the yellow cells.", 9)
    fill = PatternFill("solid", fgColor=INPUT_FILL)
    r0, top = POWER_ROWS
    _label(ws, r0 - 1, 2, "Inputs (yellow cells: change them)")
    inputs = [("rate ratio of training to detect (0.7: 30% fewer incidents)", POWER_RATIO,
               "0.00"),
              ("its effect on the log scale: =LN(rate ratio)", f"=LN(C{r0})", "0.0000"),
              ("test: \"lrt\", \"wald\" or \"profile\"", POWER_TEST, None),
              ("simulated studies per number of plants (nsim)", POWER_NSIM, "0"),
              ("seed (the same seed, the same numbers)", POWER_SEED, "0"),
              ("target power (the chart's dashed line)", POWER_TARGET, "0%"),
              ("numbers of plants (the design points)", None, None)]
    for k, (text, v, fmt) in enumerate(inputs):
        ws.cell(r0 + k, 2, text)
        if v is not None:
            c = ws.cell(r0 + k, 3, v)
            if fmt:
                c.number_format = fmt
            if not (isinstance(v, str) and v.startswith("=")):
                c.font, c.fill = f["bold"], fill
    ratio, effect, test, nsim, seed, target = (f"C{r0 + k}" for k in range(6))
    p0 = r0 + 6
    for k, n in enumerate(POWER_PLANTS):
        c = ws.cell(p0 + k, 3, n)
        c.font, c.fill, c.number_format = f["bold"], fill, "0"
    plants = f"C{p0}:C{p0 + len(POWER_PLANTS) - 1}"
    note_row = p0 + len(POWER_PLANTS) + 1
    ws.cell(note_row, 2, f"{POWER_NSIM} simulations per point keep the sheet quick (a few "
                         "seconds); the CI is then about +-10 percentage points wide: more "
                         "simulations narrow it (4 times as many halve it). Another plant "
                         "count: add it below the last one and widen the formula's range.")
    ws.cell(note_row + 1, 2, "Plants beyond the 20 observed are copies of them (the same "
                             "employees, half of them trained), each with its own random "
                             "effect; fewer than 20 are a balanced subset.")
    for r in (note_row, note_row + 1):       # wrapped in column B, clear of the chart
        ws.cell(r, 2).font, ws.cell(r, 2).alignment = f["note"], f["wrap"]
    formula = (f"=GLMM_POWER({args}, , , , , , , \"training\", {effect}, {test}, {nsim}, "
               f"{seed}, \"plant\", {plants})")
    _label(ws, top - 1, 2, "Power by number of plants:  =GLMM_POWER(same arguments as the "
                           "fit, , , , , , , \"training\", "
                           f"{effect}, {test}, {nsim}, {seed}, \"plant\", {plants})")
    placed = lay.place(top, 2, formula, udfs.GLMM_POWER(
        y, X, g, off, term="training", effect=math.log(POWER_RATIO), test=POWER_TEST,
        nsim=POWER_NSIM, seed=POWER_SEED, along="plant",
        values=[[float(n)] for n in POWER_PLANTS]), ws)
    head = placed.block[0]
    n = len(POWER_PLANTS)
    first, last = top + 1, top + n
    col = lambda name: placed.col + head.index(name)
    for name, fmt in (("power", "0%"), ("CI low 95%", "0%"), ("CI high 95%", "0%")):
        for r in range(first, last + 1):
            ws.cell(r, col(name)).number_format = fmt
    # the target repeated per point, beside the block: the chart's dashed line
    tcol = placed.region[3] + 1
    ws.cell(top, tcol, "target").font = f["bold"]
    for r in range(first, last + 1):
        ws.cell(r, tcol, f"=${target[0]}${target[1:]}").number_format = "0%"
    ch = LineChart()
    ch.title = _chart_title("Power to detect the training effect, by number of plants")
    ch.style = 2
    ch.height, ch.width = 8.0, 16.0
    ch.y_axis.title = _axis_title("power")
    ch.x_axis.title = _axis_title("number of plants")
    for name, colour, dash, width in (("power", BLUE, None, 28575),
                                      ("CI low 95%", "7F7F7F", "dash", 12700),
                                      ("CI high 95%", "7F7F7F", "dash", 12700)):
        ch.add_data(Reference(ws, min_col=col(name), min_row=top, max_row=last),
                    titles_from_data=True)
        s = ch.series[-1]
        s.graphicalProperties.line.solidFill = colour
        s.graphicalProperties.line.width = width
        if dash:
            s.graphicalProperties.line.dashStyle = dash
        s.smooth = False
        if name == "power":
            s.marker.symbol = "circle"
            s.marker.size = 6
    ch.add_data(Reference(ws, min_col=tcol, min_row=top, max_row=last), titles_from_data=True)
    s = ch.series[-1]
    s.graphicalProperties.line.solidFill = "C00000"
    s.graphicalProperties.line.dashStyle = "sysDash"
    s.smooth = False
    ch.set_categories(Reference(ws, min_col=placed.col, min_row=first, max_row=last))
    ch.y_axis.scaling.min, ch.y_axis.scaling.max = 0.0, 1.0
    ch.y_axis.number_format = "0%"
    ch.y_axis.majorGridlines = None
    ch.x_axis.delete = False
    ch.y_axis.delete = False
    ch.legend.position = "b"
    ws.add_chart(ch, cell_name(r0 - 1, 5))
    _widths(ws, {"A": 2, "B": 60, "C": 12,
                 **{col_letters(c): 11 for c in range(placed.col + 1, tcol + 1)}})
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        ("the inputs and the power curve", _box(ws, "A1", f"B{r0 - 1}:C{note_row + 1}", ch)),
        ("the GLMM_POWER block", _box(ws, f"B{top - 1}", placed.ref,
                                      range_name(top, tcol, last, tcol))),
    ])
    return placed


def _workplace_influence(lay: Layout, ws, args: str, y, X, g, off):
    """GLMM_INFLUENCE by plant at the top right of the Checks sheet (INFLUENCE_ROWS,
    column I on) and a column chart of each plant's Cook's distance beside it, with
    the cut-off 4/n as a second series: the plants the model leans on."""
    from openpyxl.chart import BarChart, LineChart, Reference
    from ..sheet import udfs
    row0 = INFLUENCE_ROWS[0]
    _label(ws, row0, 9, "Influence:  =GLMM_INFLUENCE(same arguments)  -  the model refitted "
                        "without each plant (the first grouping column)")
    placed = lay.place(row0 + 1, 9, f"=GLMM_INFLUENCE({args})",
                       udfs.GLMM_INFLUENCE(y, X, g, off), ws)
    head = placed.block[0]
    levels = [k for k, r in enumerate(placed.block) if k and r[0] not in ("cut-offs", "note")]
    first, last = placed.row + levels[0], placed.row + levels[-1]
    cook_col = placed.col + head.index("Cook's distance")
    cut_row = placed.row + next(k for k, r in enumerate(placed.block) if r[0] == "cut-offs")
    # the cut-off repeated per plant, for the chart's line (a formula on the block's cell)
    cut_col = placed.region[3] + 1
    ws.column_dimensions[col_letters(placed.region[3])].width = 44    # the notes, whole words
    ws.cell(row0 + 1, cut_col, "cut-off 4/n")
    for r in range(first, last + 1):
        ws.cell(r, cut_col, f"={col_letters(cook_col)}${cut_row}").number_format = "0.00"
    ch = BarChart()
    ch.type, ch.style = "col", 2
    ch.title = _chart_title("Cook's distance of each plant")
    ch.height, ch.width = 8.0, 16.0
    ch.y_axis.title = _axis_title("Cook's distance")
    ch.add_data(Reference(ws, min_col=cook_col, min_row=placed.row, max_row=last),
                titles_from_data=True)
    ch.set_categories(Reference(ws, min_col=placed.col, min_row=first, max_row=last))
    line = LineChart()
    line.add_data(Reference(ws, min_col=cut_col, min_row=row0 + 1, max_row=last),
                  titles_from_data=True)
    ch += line
    chart = _place_column_chart(ws, ch, cell_name(row0, cut_col + 2))
    return placed, chart


def _grouse_checks(lay: Layout, table: str, ya: str, Xa: str, la: str, cells: list, y, X,
                   loc):
    """The grouseticks Checks sheet: GLMM_CHECK of model 1 (Poisson, location
    intercepts), of the Poisson model with an observation-level effect (by its lme4
    formula, GLMM's form, with ``table`` -- the whole Data table -- as data; ``cells``:
    what it holds) and of the NB2 model, one under the other; below them each model's dispersion and
    zero-inflation ratio looked up in its block, and a column chart of them.  Returns
    (short name, placed block) per model."""
    from ..sheet import udfs
    ws = _checks_sheet(
        lay, "Grouse ticks: which model fits the counts?",
        "GLMM_CHECK of three models of the ticks: the Poisson model with location "
        "intercepts, the same with a random intercept per chick (the observation-level "
        "effect) and the negative binomial. A check flags a problem at p < 0.05; the "
        "verdicts say what to try.")
    olre = "TICKS ~ factor(YEAR) + (1|LOCATION) + (1|INDEX)"
    specs = [
        ("1. Poisson", "1. Poisson, location intercepts (Model sheet, model 1):  "
         "=GLMM_CHECK(y, X, groups)",
         f"=GLMM_CHECK({ya}, {Xa}, {la})", udfs.GLMM_CHECK(y, X, loc)),
        ("2. Poisson + (1 | INDEX)", "2. Poisson + a random intercept per chick:  "
         f'=GLMM_CHECK("{olre}", data)',
         f'=GLMM_CHECK("{olre}", {table})', udfs.GLMM_CHECK(olre, cells)),
        ("3. Negative binomial (NB2)", "3. Negative binomial (NB2 sheet):  =GLMM_CHECK(y, X, "
         f'groups, , , , , "negbin", , , {NB_CHECK_NSIM}, 1)',
         f'=GLMM_CHECK({ya}, {Xa}, {la}, , , , , "negbin", , , {NB_CHECK_NSIM}, 1)',
         udfs.GLMM_CHECK(y, X, loc, None, None, True, 1, "negbin", None, None,
                         NB_CHECK_NSIM, 1)),
    ]
    checks, row = [], 4
    for _, label, formula, block in specs:
        checks.append(_check_block(lay, ws, row, label, formula, block))
        row = checks[-1].region[2] + 3
    # the ratios side by side, and their chart
    _label(ws, row, 2, "Observed / expected under each model (looked up in the blocks)")
    heads = ["Model", "dispersion", "zero-inflation"]
    top = row + 1
    _head_row(ws, top, 2, heads)
    for k, (name, *_rest) in enumerate(specs, start=1):
        ws.cell(top + k, 2, name)
        for j, label in enumerate(heads[1:], start=1):
            c = ws.cell(top + k, 2 + j, _block_value(checks[k - 1], label))
            c.number_format = "0.00"
    ratios = _ratio_columns(ws, top, 2, len(specs),
                            "Dispersion and zeros: observed / expected (1 = as the model "
                            "expects)", cell_name(top + len(specs) + 2, 2))
    _widths(ws, CHECK_WIDTHS)
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        *((f"the checks of model {name}", _box(ws, "A1" if k == 0 else cell_name(p.row - 1, 2),
                                                 p.ref))
          for k, ((name, *_), p) in enumerate(zip(specs, checks))),
        ("the ratios side by side and their chart",
         _box(ws, cell_name(row, 2), cell_name(top + len(specs), 4), ratios)),
    ])
    return [(name, p) for (name, *_), p in zip(specs, checks)]


def _ratio_columns(ws, top: int, col: int, n: int, title: str, anchor: str, width=14.0,
                   height=7.0):
    """A clustered column chart of the table under ``top``: categories in ``col``, one
    series per further column (their heads in row ``top``)."""
    from openpyxl.chart import Reference
    ch = _column_chart(title, "observed / expected", width, height)
    ch.add_data(Reference(ws, min_col=col + 1, max_col=col + 2, min_row=top,
                          max_row=top + n), titles_from_data=True)
    ch.set_categories(Reference(ws, min_col=col, min_row=top + 1, max_row=top + n))
    for s, colour in zip(ch.series, (BLUE, "C55A11")):
        s.graphicalProperties.solidFill = colour
    return _place_column_chart(ws, ch, anchor)


#: the grouseticks sheet of zero inflation
ZI_SHEET = "Zero inflation"
#: its model (the glmmTMB references' grouse_zip / grouse_zinb2: YEAR a factor, cHEIGHT)
ZI_FORMULA = "TICKS ~ factor(YEAR) + cHEIGHT + (1|LOCATION)"


def _grouse_zero_inflation(lay: Layout, table: str, cells: list, y_col: str):
    """The grouseticks sheet of zero inflation: one model, ``ZI_FORMULA``, as Poisson,
    zero-inflated Poisson, NB2 and zero-inflated NB2 (GLMM's formula form over the whole Data ``table``;
    ``cells``: what it holds) side by side; below them their npar, logLik and AIC
    (AIC valid across families) with the observed zeros (COUNTIF of ``y_col``) and
    each model's expected zeros (the SUM of its GLMM_PREDICT(..., "zero") column, far
    right), a column chart of the zeros, and GLMM_COMPARE of each family against its
    zero-inflated form (the tests of zero inflation, with their boundary note)."""
    from openpyxl.chart import Reference
    from ..sheet import udfs
    wb = lay.wb
    ws = wb.create_sheet(ZI_SHEET, wb.sheetnames.index("Data"))
    f = _fonts()
    _title(ws, "Grouse ticks: too many zeros? Poisson and NB2, with and without zero "
           "inflation",
           f"One model, {ZI_FORMULA}, with four families. AIC compares them (valid across "
           "families: lower is better); the expected zeros show which family has as many "
           "zeros as the data.", 11)
    specs = [("1. Poisson", "poisson"), ("2. Zero-inflated Poisson", "zipoisson"),
             ("3. Negative binomial (NB2)", "negbin"), ("4. Zero-inflated NB2", "zinb")]
    r_calls = ["lme4: glmer(..., family = poisson)",
               "glmmTMB: ziformula = ~1, family = poisson", "glmmTMB: family = nbinom2",
               "glmmTMB: ziformula = ~1, family = nbinom2"]
    fits, col = [], 2
    for (title, family), r_call in zip(specs, r_calls):
        _label(ws, 4, col, f'{title}:  family "{family}"')
        ws.cell(5, col, r_call).font = f["note"]
        p = lay.place(6, col, f'=GLMM("{ZI_FORMULA}", {table}, "{family}")',
                      udfs.GLMM(ZI_FORMULA, cells, family), ws)
        fits.append(p)
        col = p.region[3] + 2
    bottom = max(p.region[2] for p in fits)
    # each model's P(zero) per row, far right: their sums are the expected zeros
    preds = []
    for k, (title, family) in enumerate(specs):
        _label(ws, 4, col, f"P(0) {k + 1}")
        call = f'=GLMM_PREDICT("{ZI_FORMULA}", {table}, , "{family}", , , , , , "zero")'
        preds.append(lay.place(6, col, call, udfs.GLMM_PREDICT(
            ZI_FORMULA, cells, None, family, None, None, None, None, None, "zero"), ws))
        col += 1
    r = bottom + 3
    _label(ws, r - 1, 2, "Side by side: AIC (lower is better) and the zeros")
    heads = ["Model", "npar", "logLik", "AIC", "zeros observed", "zeros expected"]
    _head_row(ws, r, 2, heads)
    n_rows = len(cells) - 1
    for k, ((title, _), p, q) in enumerate(zip(specs, fits, preds), start=1):
        ws.cell(r + k, 2, title)
        for j, lab in enumerate(("npar", "logLik", "AIC"), start=1):
            c = ws.cell(r + k, 2 + j, _block_value(p, lab))
            c.number_format = _number_format(*(_block_number(x.block, lab) for x in fits))
        c = ws.cell(r + k, 6, f"=COUNTIF({y_col},0)")
        c.number_format = "0"
        first, last = q.row + 1, q.row + n_rows
        c = ws.cell(r + k, 7, f"=SUM({cell_name(first, q.col)}:{cell_name(last, q.col)})")
        c.number_format = "0.0"
    ch = _column_chart("Zeros: observed and expected by each model", "rows with 0 ticks",
                       14.0, 7.0)
    ch.add_data(Reference(ws, min_col=6, max_col=7, min_row=r, max_row=r + len(specs)),
                titles_from_data=True)
    ch.set_categories(Reference(ws, min_col=2, min_row=r + 1, max_row=r + len(specs)))
    for s, colour in zip(ch.series, ("7F7F7F", BLUE)):
        s.graphicalProperties.solidFill = colour
    chart = _place_column_chart(ws, ch, cell_name(r - 1, 13))
    r2 = max(r + len(specs), _chart_box(ws, chart)[2]) + 3      # below the chart
    compares = []
    for a, b, what in ((0, 1, "Poisson"), (2, 3, "NB2")):
        _label(ws, r2 - 1, 2, f"Is zero inflation needed in the {what} model?  "
               f"=GLMM_COMPARE({what} block, zero-inflated {what} block)")
        compares.append(lay.place(r2, 2, f"=GLMM_COMPARE({fits[a].ref}, {fits[b].ref})",
                                  udfs.GLMM_COMPARE(fits[a].block, fits[b].block), ws))
        r2 = compares[-1].region[2] + 3
    cmp = compares[-1]
    note = ws.cell(cmp.region[2] + 1, 2, "model 1 = without zero inflation; model 2 = with it")
    note.font = f["note"]
    widths = {"A": 2}
    for p in fits:
        widths[col_letters(p.col)] = 24
        widths.update({col_letters(c): 11 for c in range(p.col + 1, p.region[3] + 1)})
        widths[col_letters(p.col + 7)] = 12
    for q in preds:
        widths[col_letters(q.col)] = 17
    _widths(ws, widths)
    ws.freeze_panes = "A4"
    _print_pages(lay, ws, [
        *((f"the {title} fit", _box(ws, "A1" if k == 0 else cell_name(4, p.col), p.ref))
          for k, ((title, _), p) in enumerate(zip(specs, fits))),
        ("the models side by side and the zeros",
         _box(ws, cell_name(r - 1, 2), cell_name(r + len(specs), 7), chart)),
        ("the tests of zero inflation",
         _box(ws, cell_name(compares[0].row - 1, 2), compares[0].ref, cmp.ref,
              note.coordinate)),
        ("each model's probability of a zero count (per row)",
         _box(ws, cell_name(4, preds[0].col), preds[-1].ref)),
    ])
    aic = [_block_number(p.block, "AIC") for p in fits]
    zeros = [sum(r[0] for r in q.block[1:]) for q in preds]
    observed = sum(1 for row in cells[1:] if row[0] == 0)
    return (f"Sheet '{ZI_SHEET}': {ZI_FORMULA} with four families - Poisson, zero-inflated "
            f"Poisson (family \"zipoisson\"), NB2 (\"negbin\") and zero-inflated NB2 "
            f"(\"zinb\"; \"zinb ~ x\" lets the probability of a structural zero depend "
            f"on x). AIC is valid across families: {aic[0]:,.1f}, {aic[1]:,.1f}, "
            f"{aic[2]:,.1f} and {aic[3]:,.1f}. The data have {observed} zeros; the Poisson "
            f"model expects {zeros[0]:.1f} (each model's GLMM_PREDICT(..., \"zero\") "
            f"column, summed), zero inflation lifts that to {zeros[1]:.1f}, and NB2 "
            f"expects {zeros[2]:.1f} on its own: its overdispersion already makes the "
            "zeros, so zero inflation adds nothing there (its probability goes to 0, the "
            "boundary, and the fit block's note says so). GLMM_COMPARE tests a family "
            "against its zero-inflated form; the test is on the boundary (p0 = 0), so "
            "its chi-square p-value is halved, as its note explains.")


# ---- sleep study: linear mixed models ------------------------------------------------------

def _sleep():
    from openpyxl.styles import Alignment

    from ..sheet import udfs
    df = dataset("sleepstudy")[["Reaction", "Days", "Subject"]].copy()
    wb, m = _new_book("Sleep study: linear mixed models")
    T = "Sleep"
    _data_sheet(wb, df, T, {}, "Sleep study")
    lay = Layout(wb, m, wb["Data"])
    y, X, g = _cols(df, ["Reaction"]), _cols(df, ["Days"]), _cols(df, ["Subject"])
    ya, Xa, ga = f"{T}[[#All],[Reaction]]", f"{T}[[#All],[Days]]", f"{T}[[#All],[Subject]]"
    _title(m, "Sleep study: reaction times of 18 subjects over 10 days of sleep deprivation",
           "Linear mixed models (LMM, as lme4::lmer)  Reaction ~ Days + (Days | Subject).  "
           "Blue cells hold the formulas; the blocks spill from them.  See 'Read me'.", 9)
    specs = [
        ("1. REML (the default)", "Reaction ~ Days + (Days | Subject)",
         f"=LMM({ya}, {Xa}, {ga}, {Xa})", udfs.LMM(y, X, g, X)),
        ("2. Maximum likelihood (REML = FALSE)", "Reaction ~ Days + (Days | Subject), REML = FALSE",
         f"=LMM({ya}, {Xa}, {ga}, {Xa}, FALSE)", udfs.LMM(y, X, g, X, False)),
        ("3. Random intercepts only (REML): ICC", "Reaction ~ Days + (1 | Subject)",
         f"=LMM({ya}, {Xa}, {ga})", udfs.LMM(y, X, g)),
    ]
    fits = _place_side_by_side(m, lay, specs)
    bottom = max(p.region[2] for p in fits)
    widths = {"A": 2}
    for p in fits:
        widths[col_letters(p.col)] = 40               # the blocks' note wraps in 3 lines
        widths.update({col_letters(c): 11 for c in range(p.col + 1, p.region[3] + 1)})
        widths[col_letters(p.col + 7)] = 12           # 'CI high 95%' in one line
        widths[col_letters(p.region[3] + 1)] = 14     # the gap: room for the title
    _widths(m, widths)
    f = _fonts()
    r = bottom + 3
    table = _side_by_side(m, r, fits, [s[0] for s in specs],
                          ["npar", "logLik", "AIC", "BIC", "sigma (residual SD)"])
    note = m.cell(r + 4, 2, "REML and ML log-likelihoods are not comparable: compare fixed "
                  "effects with ML fits (model 2), variance components with REML.")
    note.font = f["note"]
    note.alignment = Alignment(wrap_text=True, vertical="top")     # under the table
    m.merge_cells(f"B{r + 4}:{table.split(':')[1].rstrip('0123456789')}{r + 4}")
    r4 = r + 8
    # fit_intercept and nAGQ written out in both GLMM_RANEF calls: Calc passes an empty
    # argument as 0, and its bridge reads an empty one as omitted (not FALSE) only where
    # the sheet's calls with as many arguments leave the same places empty
    ranef_f = f'=GLMM_RANEF({ya}, {Xa}, {ga}, , {Xa}, TRUE, 1, "gaussian")'
    _label(m, r4 - 2, 2, "(Intercept) and Days effects of model 1")
    _label(m, r4 - 1, 2, 'Formula:  =GLMM_RANEF(y, X, groups, , x_random, TRUE, 1, "gaussian")')
    ranef = lay.place(r4, 2, ranef_f,
                      udfs.GLMM_RANEF(y, X, g, None, X, True, 1, "gaussian"))
    c1 = ranef.region[3] + 2
    _label(m, r4 - 1, c1, "Caterpillar data (sorted): intercepts")
    cat1 = _caterpillar(lay, ranef, "Subject", r4, c1,
                        "Subject intercepts (model 1): BLUP \u00b1 1.96 cond. SD",
                        f"{col_letters(fits[2].region[3] + 2)}4", "ms, relative to the mean",
                        width=15.0, height=7.0)
    c2 = c1 + 6
    _label(m, r4 - 1, c2, "Caterpillar data (sorted): Days slopes")
    cat2 = _caterpillar(lay, ranef, "Subject", r4, c2,
                        "Subject Days slopes (model 1): BLUP \u00b1 1.96 cond. SD",
                        f"{col_letters(fits[2].region[3] + 2)}19", "ms per day, relative",
                        term_col=4, width=15.0, height=7.0)
    # the shrinkage plot from model 3: with a random Days slope (model 1) a subject's
    # raw estimate (its mean distance from the average line) mixes intercept and slope
    r5 = ranef.region[2] + 4
    _label(m, r5 - 2, 2, "Random intercepts of model 3, with their shrinkage")
    _label(m, r5 - 1, 2, 'Formula:  =GLMM_RANEF(y, X, groups, , , TRUE, 1, "gaussian")')
    ranef3 = lay.place(r5, 2, f'=GLMM_RANEF({ya}, {Xa}, {ga}, , , TRUE, 1, "gaussian")',
                       udfs.GLMM_RANEF(y, X, g, None, None, True, 1, "gaussian"))
    shrink, shrink_line = _shrinkage_chart(
        m, ranef3, "Subject", cell_name(4, _chart_box(m, cat1)[3] + 2),
        "Subject intercepts (model 3): raw estimate against BLUP", "ms")
    c3 = c2 + 6
    pred_f = f'=GLMM_PREDICT({ya}, {Xa}, {ga}, , , , , {Xa}, , , , , , "gaussian")'
    _label(m, r4 - 1, c3, "Fitted (model 1):  =GLMM_PREDICT(y, X, groups, , , , , x_random, "
           ', , , , , , "gaussian")')
    pred = lay.place(r4, c3, pred_f,
                     udfs.GLMM_PREDICT(y, X, g, x_random=X, family="gaussian"))
    obs = _observed_fitted(lay, pred, lambda i: f"Data!A{i + 1}", c3 + 1,
                           "Observed vs fitted reaction time (model 1)",
                           f"{col_letters(c3 + 3)}{r4}", "reaction time (ms)",
                           list(df.Reaction), width=14.0, height=7.5)
    m.freeze_panes = "A4"
    _print_pages(lay, m, [
        ("model 1", _box(m, "A1", fits[0].ref, f"{col_letters(fits[0].region[3] + 1)}4")),
        ("model 2", _box(m, f"{col_letters(fits[1].col)}4", fits[1].ref)),
        ("model 3", _box(m, f"{col_letters(fits[2].col)}4", fits[2].ref)),
        ("the three models side by side", _box(m, table, note.coordinate)),
        ("the caterpillar plots of the subjects' effects", _box(m, cat1, cat2)),
        ("the shrinkage of the subjects' intercepts", _box(m, shrink, shrink_line)),
        ("the random effects of model 1", _box(m, f"B{r4 - 2}", ranef.ref)),
        ("the random intercepts of model 3", _box(m, f"B{r5 - 2}", ranef3.ref)),
        ("the sorted intercepts (caterpillar data)",
         _box(m, f"{col_letters(c1)}{r4 - 1}", f"{col_letters(c1 + 4)}{ranef.region[2]}")),
        ("the sorted Days slopes (caterpillar data)",
         _box(m, f"{col_letters(c2)}{r4 - 1}", f"{col_letters(c2 + 4)}{ranef.region[2]}")),
        ("observed against fitted: the chart and the fitted values (per row)",
         _box(m, f"{col_letters(c3)}{r4 - 1}", pred.ref, f"{col_letters(c3 + 2)}{r4 + 2}",
              obs)),
    ])
    icc = _block_number(fits[2].block, "ICC: Subject")
    shrinkage = ranef3.block[1][ranef3.block[0].index("shrinkage")]
    sig = _block_number(fits[0].block, "sigma (residual SD)")
    days = next(r for r in fits[0].block if r[0] == "Days")
    _readme(wb, "Sleep study - how to read this workbook", [
        ("What it shows",),
        "Average reaction time (ms) of 18 subjects on each of 10 days of sleep deprivation "
        "(lme4's sleepstudy data, Belenky et al. 2003). A linear mixed model with a random "
        "intercept and a random Days slope per subject (correlated): each subject has "
        "their own starting level and their own daily slowdown around the average line.",
        f"Model sheet: {cell_name(fits[0].row, fits[0].col)} model 1, =LMM(y, X, groups, "
        f"x_random) fitted by REML; {cell_name(fits[1].row, fits[1].col)} model 2, the same "
        f"by maximum likelihood (REML = FALSE); {cell_name(fits[2].row, fits[2].col)} model 3, "
        "random intercepts only, which shows the ICC. Below: the subjects' effects "
        "(=GLMM_RANEF with family \"gaussian\") and the fitted values (=GLMM_PREDICT); "
        "the charts read those cells.",
        f"Days: {days[1]:.2f} ms per day (95% CI {days[6]:.1f} to {days[7]:.1f}, "
        f"t test on {days[3]:.1f} df) on "
        f"average; the subjects' own slopes scatter around it with SD "
        f"{next(r for r in fits[0].block if r[:2] == ['Subject', 'Days'])[3]:.1f}.",
        ("What the LMM block means",),
        "'Fixed effects' - estimate, standard error, degrees of freedom, t, p-value and "
        "95% interval of each term, as lmerTest's summary: t tests with Satterthwaite's "
        "degrees of freedom (lme4 prints no p-values for LMMs). The last argument ddf = "
        "\"z\" gives the normal approximation instead; the note in the block says which.",
        "'Random effects' - variance and SD of each random term, correlations beside them, "
        "and the Residual: the variance of the observations around their subject's line. "
        f"Its SD is also the model-fit row 'sigma (residual SD)' ({sig:.1f} ms here).",
        "'REML criterion' (REML fits only) - minus twice the REML log-likelihood, what "
        "REML minimises; lme4 prints it as 'REML criterion at convergence'. The ML fit "
        "shows 'deviance' instead (minus twice its log-likelihood).",
        "'ICC: Subject' (models with random intercepts only) - the intraclass "
        "correlation: the share of the variance due to subjects, subject variance / "
        f"(subject variance + residual variance). Model 3: {icc:.2f} - two reaction times "
        "of the same subject are that strongly correlated. With random slopes the share "
        "depends on Days, so no ICC row is shown.",
        "REML or ML: REML (the default) gives unbiased variance components - report "
        "those. To compare models that differ in their fixed effects (by AIC or "
        "likelihood-ratio tests, GLMM_COMPARE), fit both with REML = FALSE. The fixed "
        "effects are the same here; their standard errors differ slightly.",
        *BLOCK_HELP[2:],
        "Caterpillar plots: each dot is a subject's BLUP - its deviation from the average "
        "intercept (ms) or from the average Days slope (ms per day) - sorted; the bars "
        "are \u00b1 1.96 x its conditional SD. Observed vs fitted: each subject's own "
        "line reproduces the data closely.",
        "Shrinkage chart (model 3, random intercepts; its GLMM_RANEF block is under model "
        "1's): each subject's raw intercept (x: the subject's mean distance from the "
        "average line, the block's raw column) against its BLUP (y). On the dashed line "
        "BLUP = raw a subject would keep its own estimate; the model pulls every subject "
        "toward the average (0), the more the less its own data say: by (sigma^2 / n) / "
        "(subject variance + sigma^2 / n) of the raw estimate, with n its number of rows. "
        f"Every subject has 10 days here, so every one is shrunk by {shrinkage:.1%}: the "
        "points lie on a line through 0, a little flatter than the dashed one. (Model 1's "
        "block has the same columns, but with a random Days slope a subject's mean "
        "distance mixes its intercept and its slope: read its shrinkage with care.)",
        *ADAPT_COMMON,
        *_printing_help(lay),
    ])
    return wb, lay


_BUILDERS = {"workplace_safety": _workplace, "grouseticks": _grouse, "cbpp": _cbpp,
             "sleepstudy": _sleep}


def build(name: str, path, *, out=None, values_only=False):
    """Build template ``name`` into ``path`` (formulas, charts and cached results).
    Returns the :class:`xlglmm.workbook.recalc.RecalcResult` of the final recalculation."""
    from .book import Book
    from .recalc import recalc
    if name not in _BUILDERS:
        raise ValueError(f"unknown template {name!r}; choose from {', '.join(TEMPLATES)}")
    path = Path(path)
    wb, lay = _BUILDERS[name]()
    wb.active = wb.sheetnames.index("Model")
    for ws in wb.worksheets:
        ws.sheet_view.tabSelected = ws.title == "Model"
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.formulas.xlsx")
    wb.save(tmp)
    try:
        res = recalc(tmp, path, out=out, values_only=values_only)
    finally:
        tmp.unlink(missing_ok=True)
    if not res.ok:
        raise RuntimeError(f"template {name}: " + "; ".join(
            f"{o.where}: {o.message}" for o in res.problems))
    # the blocks must have the sizes the layout was made for
    if not values_only:
        book = Book(path)
        for p in lay.placed:
            fc = book.formulas[p.sheet].get((p.row, p.col))
            if fc is None or fc.array_ref != p.region:
                got = None if fc is None else fc.array_ref
                raise RuntimeError(f"template {name}: the block at "
                                   f"{cell_name(p.row, p.col)} spilled to {got}, "
                                   f"not {p.ref}")
    return res


def build_all(directory, out=None) -> list:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    return [build(n, directory / f"{n}.xlsx", out=out) for n in TEMPLATES]
