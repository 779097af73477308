"""Reading a workbook for ``xlglmm recalc``: its formulas, stored values, Excel
tables and defined names.

The first step of a recalculation (:mod:`xlglmm.workbook.recalc`): the package is
checked before openpyxl unpacks anything (:func:`guard_package`), then :class:`Book`
holds every sheet's cells as a worksheet function would receive them (numbers as
floats, blanks as ``None``, errors as error values), each formula as a
:class:`FormulaCell` (its text, its array range, its stored result), the tables
(:class:`TableInfo`) and the names.  The evaluator (:mod:`xlglmm.workbook.evaluator`)
reads the workbook through this alone; a formula it cannot evaluate raises
:class:`Unsupported`, which carries the Excel error the cell shows.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, datetime

from . import excel_formula as xf
from .excel_formula import cell_name
from ..files import InputProblem, check_input
from ..sheet.calling import ErrorValue as XLError
from .xlsx_read import LIMITS_TEXT, TooLarge, XlsxError, check_package

class Unsupported(Exception):
    """A formula that cannot be evaluated: ``code`` is the Excel error shown
    (#NAME? for unknown functions, #REF! for unresolvable references)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# ---- the workbook as read ---------------------------------------------------------------

@dataclass
class FormulaCell:
    sheet: str
    row: int
    col: int
    text: str                       # '=...'
    array_ref: tuple | None         # (r1, c1, r2, c2) of an array formula
    cached: object
    node: object = None
    parse_error: str | None = None

    @property
    def key(self):
        return (self.sheet, self.row, self.col)

    @property
    def where(self) -> str:
        return f"{self.sheet}!{cell_name(self.row, self.col)}"


@dataclass
class TableInfo:
    name: str
    sheet: str
    r1: int
    c1: int
    r2: int
    c2: int
    header_rows: int
    totals_rows: int
    columns: list


def _norm(v, data_type=None):
    """An openpyxl cell value -> what xlwings hands a UDF (floats, bool, str, None,
    datetime; errors as XLError)."""
    if v is None:
        return None
    if data_type == "e":
        return XLError(str(v))
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, (datetime, date)):
        return v if isinstance(v, datetime) else datetime(v.year, v.month, v.day)
    return str(v) if not isinstance(v, str) else v


def guard_package(path):
    """:func:`xlglmm.workbook.xlsx_read.check_package` (sizes counted while unpacking, XML
    well-formed without DTDs, cells inside the limits), before openpyxl unpacks
    anything; its refusal as an :class:`InputProblem` (exit 3), one line."""
    try:
        return check_package(path)
    except TooLarge as e:
        raise InputProblem(path, f"is too large to read safely: {e}",
                           f"xlglmm recalc reads {LIMITS_TEXT}; nothing was written") from None
    except XlsxError as e:
        raise InputProblem(path, f"cannot be read as a workbook: {e}",
                           "open it in Excel or Calc and save it again as .xlsx; "
                           "nothing was written") from None


def _cached_values(path, wb_f) -> dict:
    """Sheet -> {(r, c): the stored value of a formula cell} (normalized by
    :func:`_norm`), for the formula cells of ``wb_f`` only.  openpyxl's own worksheet
    parser, as ``load_workbook(data_only=True)`` runs it, but streaming (read-only),
    so the other cells are not held a second time: about 40% less memory than a
    second full load."""
    import openpyxl
    from openpyxl.worksheet._reader import WorkSheetParser

    wanted = {ws.title: {k for k, cell in ws._cells.items() if cell.data_type == "f"
                         or not isinstance(cell.value, (str, int, float, bool, type(None),
                                                        datetime, date))}
              for ws in wb_f.worksheets}
    wb_v = openpyxl.load_workbook(path, data_only=True, read_only=True)
    try:
        out = {}
        for s, keys in wanted.items():
            if not keys:
                continue
            ws = wb_v[s]
            got = out[s] = {}
            with ws._get_source() as src:
                parser = WorkSheetParser(src, ws._shared_strings, data_only=True,
                                         epoch=wb_v.epoch, date_formats=wb_v._date_formats,
                                         timedelta_formats=wb_v._timedelta_formats)
                for _, row in parser.parse():
                    for cell in row:
                        key = (cell["row"], cell["column"])
                        if key in keys:
                            got[key] = _norm(cell["value"], cell["data_type"])
        return out
    finally:
        wb_v.close()


class Book:
    """Formulas, cached values, tables and names of an .xlsx file (via openpyxl,
    after :func:`guard_package`)."""

    def __init__(self, path):
        import openpyxl
        from openpyxl.worksheet.formula import ArrayFormula

        self.path = check_input(path)
        self.package = guard_package(self.path)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                wb_f = openpyxl.load_workbook(self.path, data_only=False)
                cached_values = _cached_values(self.path, wb_f)
        except Exception as e:       # zip, XML or openpyxl errors
            detail = str(e).strip() or type(e).__name__
            raise InputProblem(self.path, f"cannot be read as a workbook (damaged? {detail})",
                               "open it in Excel or Calc and save it again as .xlsx") \
                from None
        self.sheet_names = list(wb_f.sheetnames)
        self.values: dict = {}
        self.formulas: dict = {}
        self.extent: dict = {}
        self.tables: dict = {}
        self.names: dict = {}
        for ws in wb_f.worksheets:
            s = ws.title
            cached_of = cached_values.get(s, {})
            vals, forms = {}, {}
            max_r = max_c = 0
            for (r, c), cell in ws._cells.items():
                cached = cached_of.get((r, c))
                raw = cell.value
                if cell.data_type == "f" or isinstance(raw, ArrayFormula):
                    if isinstance(raw, ArrayFormula):
                        text, ref = raw.text, xf.parse_range(raw.ref)
                        if ref[:2] != (r, c):
                            ref = None
                    elif isinstance(raw, str):
                        text, ref = raw, None
                    else:                 # a data-table formula: left as it is
                        vals[(r, c)] = cached
                        continue
                    if not text.startswith("="):
                        text = "=" + text
                    forms[(r, c)] = FormulaCell(s, r, c, text, ref, cached)
                    vals[(r, c)] = cached
                else:
                    vals[(r, c)] = _norm(raw, cell.data_type)
                if raw is not None or cached is not None:
                    max_r, max_c = max(max_r, r), max(max_c, c)
            self.values[s] = vals
            self.formulas[s] = forms
            self.extent[s] = (max_r, max_c)
            for t in ws.tables.values():
                r1, c1, r2, c2 = xf.parse_range(t.ref)
                cols = [tc.name for tc in t.tableColumns] or \
                    [str(ws.cell(r1, c).value) for c in range(c1, c2 + 1)]
                self.tables[t.displayName.lower()] = TableInfo(
                    t.displayName, s, r1, c1, r2, c2,
                    1 if t.headerRowCount is None else int(t.headerRowCount),
                    int(t.totalsRowCount or 0), cols)
            for name, dn in getattr(ws, "defined_names", {}).items():
                self.names[(s.lower(), name.lower())] = dn.attr_text
        for name, dn in wb_f.defined_names.items():
            self.names[(None, name.lower())] = dn.attr_text

    def sheet(self, name: str | None, default: str) -> str:
        if name is None:
            return default
        for s in self.sheet_names:
            if s.lower() == name.lower():
                return s
        raise Unsupported("#REF!", f"there is no sheet named '{name}'")

    def formula_texts(self) -> dict:
        return {s: {k: fc.text[1:] for k, fc in f.items()} for s, f in self.formulas.items()}
