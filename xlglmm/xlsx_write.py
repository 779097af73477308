"""Write cell values into an existing .xlsx without disturbing anything else.

``xlglmm recalc`` must keep a workbook's charts, tables, styles, names and macros
(openpyxl drops charts and images on a load/save round trip), so instead of
re-saving the workbook it edits the package directly: each worksheet's
``<sheetData>`` element is split into rows and cells with regular expressions, the
cells to change are rewritten, and every other byte of the package is copied
unchanged.  Formula cells keep their ``<f>`` element and get a cached ``<v>`` value,
so Excel and LibreOffice show the results before (or without) recalculating.

Spilled blocks are written the way Excel 365 stores a dynamic-array formula: the
anchor holds ``<f t="array" ref="B5:K25">`` and ``cm="1"`` (cell metadata pointing at
the ``XLDAPR`` dynamic-array property in ``xl/metadata.xml``, added if missing --
the layout XlsxWriter uses), the other cells of the block hold plain values.  Excel
2019 and older read the same XML as a classic Ctrl+Shift+Enter array formula over
that range.  ``xl/calcChain.xml`` is removed when present (Excel rebuilds it).
"""
from __future__ import annotations

import math
import posixpath
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime, time
from xml.etree import ElementTree as ET

from .excel_formula import cell_name, parse_cell

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
REL_METADATA = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sheetMetadata"
CT_METADATA = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheetMetadata+xml"
DYNAMIC_ARRAY_EXT = "{bdbb8cdc-fa1e-496e-a857-3c3f30c029c3}"

METADATA_XML = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<metadata xmlns="{NS_MAIN}" '
    'xmlns:xda="http://schemas.microsoft.com/office/spreadsheetml/2017/dynamicarray">'
    '<metadataTypes count="1"><metadataType name="XLDAPR" minSupportedVersion="120000" '
    'copy="1" pasteAll="1" pasteValues="1" merge="1" splitFirst="1" rowColShift="1" '
    'clearFormats="1" clearComments="1" assign="1" coerce="1" cellMeta="1"/>'
    '</metadataTypes><futureMetadata name="XLDAPR" count="1"><bk><extLst>'
    f'<ext uri="{DYNAMIC_ARRAY_EXT}"><xda:dynamicArrayProperties fDynamic="1" '
    'fCollapsed="0"/></ext></extLst></bk></futureMetadata>'
    '<cellMetadata count="1"><bk><rc t="1" v="0"/></bk></cellMetadata></metadata>')


class XlsxError(ValueError):
    """The file is not a workbook this module can edit."""


class ErrorValue(str):
    """An Excel error value (#N/A, #NAME?, ...), written with t="e"."""


@dataclass
class CellWrite:
    """What to do with one cell.

    kind "value": a constant (any formula there is removed); "formula": keep the
    cell's formula and store ``value`` as its cached result (``array_ref`` makes it
    an array formula over that range, ``dynamic`` marks it as an Excel 365 spill);
    "clear": remove the content, keep the style."""
    kind: str
    value: object = None
    array_ref: str | None = None
    dynamic: bool = False


# ---- package parts -----------------------------------------------------------------------

def _attr_map(attrs: str) -> dict:
    return dict(re.findall(r'([\w:]+)\s*=\s*"([^"]*)"', attrs))


def _attr_text(d: dict) -> str:
    return "".join(f' {k}="{v}"' for k, v in d.items())


def sheet_parts(files: dict) -> dict:
    """Sheet name -> part path (e.g. 'xl/worksheets/sheet1.xml')."""
    try:
        wb = ET.fromstring(files["xl/workbook.xml"])
        rels = ET.fromstring(files["xl/_rels/workbook.xml.rels"])
    except KeyError as e:
        raise XlsxError(f"not an Excel workbook: {e.args[0]} is missing") from None
    targets = {}
    for r in rels.findall(f"{{{NS_PKG_REL}}}Relationship"):
        t = r.get("Target", "")
        path = t.lstrip("/") if t.startswith("/") else posixpath.normpath(posixpath.join("xl", t))
        targets[r.get("Id")] = path
    out = {}
    sheets = wb.find(f"{{{NS_MAIN}}}sheets")
    for s in (sheets if sheets is not None else []):
        rid = s.get(f"{{{NS_REL}}}id")
        if rid in targets:
            out[s.get("name")] = targets[rid]
    return out


def _ensure_metadata(files: dict) -> int | None:
    """The cm index of the dynamic-array cell metadata, adding xl/metadata.xml when
    the workbook has none; None when an existing metadata part has no such entry."""
    rels_name = "xl/_rels/workbook.xml.rels"
    rels = files[rels_name].decode("utf-8")
    m = re.search(r'<Relationship\b[^>]*Type="' + re.escape(REL_METADATA) + r'"[^>]*/>', rels)
    if m:
        target = _attr_map(m.group(0)).get("Target", "metadata.xml")
        path = target.lstrip("/") if target.startswith("/") else \
            posixpath.normpath(posixpath.join("xl", target))
        if path not in files:
            return None
        try:
            root = ET.fromstring(files[path])
        except ET.ParseError:
            return None
        types = root.find(f"{{{NS_MAIN}}}metadataTypes")
        names = [t.get("name") for t in (types if types is not None else [])]
        if "XLDAPR" not in names:
            return None
        t_index = names.index("XLDAPR") + 1
        future = [f for f in root.findall(f"{{{NS_MAIN}}}futureMetadata")
                  if f.get("name") == "XLDAPR"]
        dynamic_bk = set()
        if future:
            for k, bk in enumerate(future[0].findall(f"{{{NS_MAIN}}}bk")):
                for el in bk.iter():
                    if el.tag.endswith("dynamicArrayProperties") and el.get("fDynamic") in ("1", "true"):
                        dynamic_bk.add(k)
        cm = root.find(f"{{{NS_MAIN}}}cellMetadata")
        for i, bk in enumerate(cm if cm is not None else [], start=1):
            rc = bk.find(f"{{{NS_MAIN}}}rc")
            if rc is not None and rc.get("t") == str(t_index) and int(rc.get("v", -1)) in dynamic_bk:
                return i
        return None
    if "xl/metadata.xml" in files:
        return None
    files["xl/metadata.xml"] = METADATA_XML.encode("utf-8")
    ids = {int(x) for x in re.findall(r'Id="rId(\d+)"', rels)}
    rid = f"rId{max(ids, default=0) + 1}"
    rels = rels.replace("</Relationships>", f'<Relationship Id="{rid}" Type="{REL_METADATA}" '
                        'Target="metadata.xml"/></Relationships>')
    files[rels_name] = rels.encode("utf-8")
    ct = files["[Content_Types].xml"].decode("utf-8")
    ct = ct.replace("</Types>", f'<Override PartName="/xl/metadata.xml" '
                    f'ContentType="{CT_METADATA}"/></Types>')
    files["[Content_Types].xml"] = ct.encode("utf-8")
    return 1


def _drop_calc_chain(files: dict) -> None:
    if "xl/calcChain.xml" not in files:
        return
    del files["xl/calcChain.xml"]
    rels = files["xl/_rels/workbook.xml.rels"].decode("utf-8")
    rels = re.sub(r'<Relationship\b[^>]*Target="[^"]*calcChain\.xml"[^>]*/>', "", rels)
    files["xl/_rels/workbook.xml.rels"] = rels.encode("utf-8")
    ct = files["[Content_Types].xml"].decode("utf-8")
    ct = re.sub(r'<Override\b[^>]*PartName="/xl/calcChain\.xml"[^>]*/>', "", ct)
    files["[Content_Types].xml"] = ct.encode("utf-8")


# ---- values ------------------------------------------------------------------------------

_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(s: str) -> str:
    s = _BAD_XML.sub("", str(s))
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def number_text(v: float) -> str:
    f = float(v)
    if f.is_integer() and abs(f) < 1e15:
        return str(int(f))
    return repr(f)


def _excel_serial(v) -> float:
    from openpyxl.utils.datetime import to_excel
    return float(to_excel(v))


def typed(value):
    """A Python value -> (t attribute or None, text of <v>) for a cell holding it;
    (None, None) for a blank."""
    if value is None:
        return None, None
    if isinstance(value, ErrorValue):
        return "e", str(value)
    if isinstance(value, bool):
        return "b", "1" if value else "0"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        f = float(value)
        if not math.isfinite(f):
            return "e", "#NUM!"
        return None, number_text(f)
    if isinstance(value, (datetime, date, time)):
        return None, number_text(_excel_serial(value))
    if hasattr(value, "item"):          # NumPy scalar
        return typed(value.item())
    return "str", str(value)


# ---- sheetData -------------------------------------------------------------------------

class _Sheet:
    """The rows and cells of one worksheet part, as raw XML strings."""

    def __init__(self, xml: str):
        self.xml = xml
        m = re.search(r"<(\w+:)?sheetData\b", xml)
        if not m:
            raise XlsxError("worksheet without <sheetData>")
        self.p = m.group(1) or ""
        p = re.escape(self.p)
        whole = re.compile(rf"<{p}sheetData\b[^>]*?(?:/>|>(.*?)</{p}sheetData>)", re.S)
        m = whole.search(xml)
        self.span = m.span()
        body = m.group(1) or ""
        self.open_tag = re.match(rf"<{p}sheetData\b[^>]*?(?=/?>)", m.group(0)).group(0) + ">"
        self._row_re = re.compile(rf"<{p}row\b([^>]*?)(?:/>|>(.*?)</{p}row>)", re.S)
        self._cell_re = re.compile(rf"<{p}c\b([^>]*?)(?:/>|>(.*?)</{p}c>)", re.S)
        self.rows: dict[int, list] = {}        # r -> [attrs dict, {col: cell xml}]
        last_r = 0
        for rm in self._row_re.finditer(body):
            attrs = _attr_map(rm.group(1))
            r = int(attrs.get("r", last_r + 1))
            attrs["r"] = str(r)
            last_r = r
            cells = {}
            last_c = 0
            for cm in self._cell_re.finditer(rm.group(2) or ""):
                ca = _attr_map(cm.group(1))
                if "r" in ca:
                    _, c = parse_cell(ca["r"])
                else:
                    c = last_c + 1
                    ca["r"] = cell_name(r, c)
                last_c = c
                cells[c] = (ca, cm.group(2) or "")
            self.rows[r] = [attrs, cells]
        self.touched_rows: set = set()

    # cells are kept as (attrs dict, inner xml)
    def get(self, r, c):
        row = self.rows.get(r)
        return None if row is None else row[1].get(c)

    def put(self, r, c, cell):
        row = self.rows.setdefault(r, [{"r": str(r)}, {}])
        if cell is None:
            row[1].pop(c, None)
        else:
            row[1][c] = cell
        self.touched_rows.add(r)

    def f_element(self, inner: str):
        m = re.search(rf"<{re.escape(self.p)}f\b([^>]*?)(?:/>|>(.*?)</{re.escape(self.p)}f>)",
                      inner, re.S)
        if not m:
            return None
        return _attr_map(m.group(1)), m.group(2) or ""

    def serialize(self) -> str:
        p = self.p
        out = [self.open_tag]
        max_r = max_c = 0
        min_r = min_c = None
        for r in sorted(self.rows):
            attrs, cells = self.rows[r]
            if r in self.touched_rows:
                attrs = {k: v for k, v in attrs.items() if k != "spans"}
            if not cells and set(attrs) <= {"r", "spans"}:
                continue
            out.append(f"<{p}row{_attr_text(attrs)}")
            if not cells:
                out.append("/>")
                continue
            out.append(">")
            for c in sorted(cells):
                ca, inner = cells[c]
                ca = dict(ca)
                ca["r"] = cell_name(r, c)
                ca = {"r": ca.pop("r"), **ca}
                out.append(f"<{p}c{_attr_text(ca)}" + (f">{inner}</{p}c>" if inner else "/>"))
                max_c = max(max_c, c)
                min_c = c if min_c is None else min(min_c, c)
            out.append(f"</{p}row>")
            max_r = max(max_r, r)
            min_r = r if min_r is None else min(min_r, r)
        out.append(f"</{p}sheetData>")
        xml = self.xml[:self.span[0]] + "".join(out) + self.xml[self.span[1]:]
        if min_r is not None:
            ref = cell_name(min_r, min_c) if (min_r, min_c) == (max_r, max_c) else \
                f"{cell_name(min_r, min_c)}:{cell_name(max_r, max_c)}"
            xml = re.sub(rf"(<{re.escape(p)}dimension\b[^>]*\bref=\")[^\"]*(\")",
                         lambda m: m.group(1) + ref + m.group(2), xml, count=1)
        return xml


def _value_cell(sheet: _Sheet, ca: dict, value):
    p = sheet.p
    ca = {k: v for k, v in ca.items() if k in ("r", "s", "ph")}
    t, v = typed(value)
    if v is None:
        return (ca, "") if "s" in ca else None
    if t == "str":
        ca["t"] = "inlineStr"
        return ca, f'<{p}is><{p}t xml:space="preserve">{esc(v)}</{p}t></{p}is>'
    if t:
        ca["t"] = t
    return ca, f"<{p}v>{esc(v)}</{p}v>"


def _formula_cell(sheet: _Sheet, ca: dict, f_attrs: dict, f_text: str, value,
                  array_ref=None, cm=None):
    p = sheet.p
    ca = {k: v for k, v in ca.items() if k in ("r", "s", "ph", "cm")}
    if array_ref is not None:
        f_attrs = {k: v for k, v in f_attrs.items() if k not in ("t", "ref", "si", "ca")}
        f_attrs = {"t": "array", "ref": array_ref, **f_attrs}
        if cm is not None:
            ca["cm"] = str(cm)
    t, v = typed(value)
    if t:
        ca["t"] = t
    f_xml = f"<{p}f{_attr_text(f_attrs)}>{f_text}</{p}f>" if f_text else \
        f"<{p}f{_attr_text(f_attrs)}/>"
    v_xml = f"<{p}v>{esc(v)}</{p}v>" if v is not None else ""
    return ca, f_xml + v_xml


def patch(src, dst, writes: dict, *, formulas: dict | None = None,
          values_only: bool = False) -> dict:
    """Copy workbook ``src`` to ``dst`` applying ``writes`` (sheet name -> {(row, col):
    CellWrite}).  ``formulas`` (sheet -> {(row, col): formula text without '='}) is
    used to expand shared formulas when a cell of a shared group changes.
    ``values_only``: every formula cell keeps its cached value and loses its formula.
    Returns a small summary (``dynamic``: whether spills were marked as Excel 365
    dynamic arrays)."""
    formulas = formulas or {}
    try:
        with zipfile.ZipFile(src) as z:
            infos = z.infolist()
            files = {i.filename: z.read(i.filename) for i in infos}
    except zipfile.BadZipFile:
        raise XlsxError(f"{src} is not an .xlsx file (not a zip package)") from None
    parts = sheet_parts(files)
    unknown = set(writes) - set(parts)
    if unknown:
        raise XlsxError(f"no worksheet named {sorted(unknown)[0]!r}")
    cm_index = None
    if not values_only and any(w.dynamic for ws in writes.values() for w in ws.values()):
        cm_index = _ensure_metadata(files)
    for name, part in parts.items():
        sheet_writes = writes.get(name, {})
        if not sheet_writes and not values_only:
            continue
        sheet = _Sheet(files[part].decode("utf-8"))
        ftexts = formulas.get(name, {})
        # shared formula groups touched by a write: expand them into explicit formulas
        expand = set()
        for (r, c) in sheet_writes:
            cell = sheet.get(r, c)
            if cell is None:
                continue
            fe = sheet.f_element(cell[1])
            if fe and fe[0].get("t") == "shared":
                expand.add(fe[0].get("si"))
        if expand or values_only:
            for r, (attrs, cells) in list(sheet.rows.items()):
                for c, (ca, inner) in list(cells.items()):
                    fe = sheet.f_element(inner)
                    if not fe:
                        continue
                    if values_only:
                        cells[c] = _strip_formula(sheet, ca, inner)
                        sheet.touched_rows.add(r)
                    elif fe[0].get("t") == "shared" and fe[0].get("si") in expand:
                        text = ftexts.get((r, c))
                        if text is None:
                            raise XlsxError(f"{name}!{cell_name(r, c)}: shared formula "
                                            "without text")
                        fa = {k: v for k, v in fe[0].items() if k not in ("t", "si", "ref")}
                        f_xml = f"<{sheet.p}f{_attr_text(fa)}>{esc(text)}</{sheet.p}f>"
                        rest = re.sub(rf"<{re.escape(sheet.p)}f\b[^>]*?(?:/>|>.*?</{re.escape(sheet.p)}f>)",
                                      "", inner, count=1, flags=re.S)
                        cells[c] = (ca, f_xml + rest)
                        sheet.touched_rows.add(r)
        for (r, c), w in sorted(sheet_writes.items()):
            cur = sheet.get(r, c)
            ca = dict(cur[0]) if cur else {"r": cell_name(r, c)}
            ca.pop("vm", None)
            if w.kind == "clear" or (w.kind == "value" and values_only and w.value is None):
                keep = {k: v for k, v in ca.items() if k in ("r", "s")}
                sheet.put(r, c, (keep, "") if "s" in keep else None)
            elif w.kind == "value" or values_only:
                sheet.put(r, c, _value_cell(sheet, ca, w.value))
            elif w.kind == "formula":
                fe = sheet.f_element(cur[1]) if cur else None
                if fe is None:
                    text = ftexts.get((r, c))
                    if text is None:
                        raise XlsxError(f"{name}!{cell_name(r, c)} holds no formula")
                    fe = ({}, esc(text))
                cm = cm_index if w.dynamic else None
                if w.array_ref is not None and cm is None:
                    ca.pop("cm", None)
                sheet.put(r, c, _formula_cell(sheet, ca, fe[0], fe[1], w.value, w.array_ref, cm))
            else:
                raise ValueError(f"unknown write kind {w.kind!r}")
        files[part] = sheet.serialize().encode("utf-8")
    _drop_calc_chain(files)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as z:
        names = [i.filename for i in infos if i.filename in files]
        names += [n for n in files if n not in names]
        # [Content_Types].xml first, as Office writes it
        names.sort(key=lambda n: n != "[Content_Types].xml")
        for n in names:
            z.writestr(n, files[n])
    return {"dynamic": cm_index is not None}


def _strip_formula(sheet: _Sheet, ca: dict, inner: str):
    """A formula cell -> a value cell with its cached value."""
    p = re.escape(sheet.p)
    ca = {k: v for k, v in ca.items() if k in ("r", "s", "t", "ph")}
    rest = re.sub(rf"<{p}f\b[^>]*?(?:/>|>.*?</{p}f>)", "", inner, count=1, flags=re.S)
    if ca.get("t") == "str":
        m = re.search(rf"<{p}v>(.*?)</{p}v>", rest, re.S)
        text = m.group(1) if m else ""
        ca["t"] = "inlineStr"
        return ca, f'<{sheet.p}is><{sheet.p}t xml:space="preserve">{text}</{sheet.p}t></{sheet.p}is>'
    if not re.search(rf"<{p}v>", rest):
        ca.pop("t", None)
        return ca, ""
    return ca, rest
