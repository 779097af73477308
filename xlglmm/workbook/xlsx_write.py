"""Write cell values into an existing .xlsx without disturbing anything else.

``xlglmm recalc`` must keep a workbook's charts, tables, styles, names and macros
(openpyxl drops charts and images on a load/save round trip), so instead of
re-saving the workbook it edits the package directly, through a real XML parser:
expat reads each worksheet part it must change and reports where every ``<row>``
and ``<c>`` element starts and ends (byte offsets), and only the cells and rows
written are replaced or inserted -- every other byte of the part, and every other
part of the package, is copied unchanged.  So any well-formed spelling the format
allows works: single or double quotes, comments and processing instructions,
any namespace prefix, CDATA, CRLF, self-closing rows and cells; a part in UTF-16
or a declared 8-bit encoding is re-encoded as UTF-8 (its declaration says so); a
part with a DOCTYPE, or that is not well-formed, is refused and nothing is
written.  Formula cells keep their ``<f>`` element and get a cached ``<v>`` value,
so Excel and LibreOffice show the results before (or without) recalculating.

Spilled blocks are written the way Excel 365 stores a dynamic-array formula: the
anchor holds ``<f t="array" ref="B5:K25">`` and ``cm="1"`` (cell metadata pointing at
the ``XLDAPR`` dynamic-array property in ``xl/metadata.xml``, added if missing --
the layout XlsxWriter uses), the other cells of the block hold plain values.  Excel
2019 and older read the same XML as a classic Ctrl+Shift+Enter array formula over
that range.  ``xl/calcChain.xml`` is removed when present (Excel rebuilds it).

Memory: one worksheet part at a time (read with the caps of
:mod:`xlglmm.workbook.xlsx_read`) plus a small record per cell; the other parts are copied
in chunks.  The written package is read back and checked (every part unpacks with
its checksum, every rewritten part is well-formed) before the caller moves it into
place.
"""
from __future__ import annotations

import math
import posixpath
import re
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date, datetime, time
from xml.parsers import expat

from ..sheet.calling import ErrorValue  # written with t="e"
from .excel_formula import cell_name, col_number
from .xlsx_read import (CELL_REF, MAX_PART_BYTES, XlsxError, as_utf8, iter_part, open_zip,
                        read_part, xml_parser)

__all__ = ["CellWrite", "ErrorValue", "XlsxError", "patch", "sheet_parts", "typed"]

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
NS_CT = "http://schemas.openxmlformats.org/package/2006/content-types"
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


# ---- locating elements with expat ---------------------------------------------------------

# a start tag, from its '<' to its '>': attribute values may hold '>' but not their quote
_STAG = re.compile(rb"""<[^\s/>]+(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>""")


def _qname(name: str) -> tuple:
    """expat's 'uri local prefix' -> (uri, local, qualified name as written)."""
    parts = name.split(" ")
    if len(parts) == 3:
        return parts[0], parts[1], f"{parts[2]}:{parts[1]}"
    if len(parts) == 2:
        return parts[0], parts[1], parts[1]
    return "", name, name


def _attr_pairs(attrs: list) -> list:
    """expat's ordered attribute list -> [(qualified name, value, expat's name)]."""
    return [(_qname(attrs[i])[2], attrs[i + 1], attrs[i]) for i in range(0, len(attrs), 2)]


def _attr_esc(v: str) -> str:
    return (v.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\t", "&#9;").replace("\n", "&#10;")
            .replace("\r", "&#13;"))


def _start_tag(qname: str, attrs, decls=(), close: bool = False) -> bytes:
    """A start tag (or empty-element tag with ``close``), double-quoted."""
    ns = "".join(f' xmlns{":" + p if p else ""}="{_attr_esc(u)}"' for p, u in decls)
    at = "".join(f' {k}="{_attr_esc(str(v))}"' for k, v in
                 (attrs.items() if isinstance(attrs, dict) else attrs))
    return f"<{qname}{ns}{at}{'/>' if close else '>'}".encode("utf-8")


def _prefix(qname: str) -> str:
    return qname.split(":")[0] + ":" if ":" in qname else ""


class _El:
    """Where one element is: ``start`` (its '<'), ``tag_end`` (after its start tag),
    ``inner_end`` (its end tag's '<'; == tag_end - 2 for an empty-element tag) and
    ``end`` (after the element)."""
    __slots__ = ("uri", "local", "qname", "attrs", "decls", "start", "tag_end",
                 "inner_end", "end", "depth", "kids", "extra")

    def __init__(self, uri, local, qname, attrs, decls, start, tag_end, depth):
        self.uri, self.local, self.qname = uri, local, qname
        self.attrs, self.decls = attrs, decls
        self.start, self.tag_end, self.depth = start, tag_end, depth
        self.inner_end = self.end = tag_end
        self.kids = None
        self.extra = None

    @property
    def empty(self) -> bool:
        return self.end == self.tag_end

    def get(self, name, default=None):
        """An attribute without a namespace."""
        for k, v, raw in self.attrs:
            if raw == name:
                return v
        return default

    def get_ns(self, uri, local, default=None):
        for k, v, raw in self.attrs:
            if raw == f"{uri} {local}" or raw.startswith(f"{uri} {local} "):
                return v
        return default

    def attr_dict(self) -> dict:
        return {k: v for k, v, raw in self.attrs}


class _Parser:
    """One expat pass over a whole part (bytes, UTF-8).  ``want(depth, uri, local,
    parent)`` says which elements to record; recorded elements get their children
    recorded in ``kids`` when ``want`` accepts them too.  A DOCTYPE is refused."""

    def __init__(self, data: bytes, name: str, want):
        self.data, self.name, self.want = data, name, want
        self.stack: list = []           # (_El or None)
        self.decls: list = []
        self.found: list = []           # recorded elements of depth 1..n, in order
        p = self.p = xml_parser(name)
        p.namespace_prefixes = True
        p.ordered_attributes = True
        p.StartNamespaceDeclHandler = lambda prefix, uri: self.decls.append((prefix or "", uri))
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end

    def _start(self, name, attrs):
        decls, self.decls = self.decls, []
        parent = self.stack[-1] if self.stack else None
        depth = len(self.stack) + 1
        uri, local, qname = _qname(name)
        if (depth == 1 or parent is not None) and self.want(depth, uri, local, parent):
            start = self.p.CurrentByteIndex
            m = _STAG.match(self.data, start)
            if m is None:                       # cannot happen for well-formed input
                raise XlsxError(f"the part {self.name}: cannot locate the element at byte "
                                f"{start}")
            el = _El(uri, local, qname, _attr_pairs(attrs), decls, start, m.end(), depth)
            self.started(el, parent)
            self.stack.append(el)
        else:
            self.stack.append(None)

    def _end(self, name):
        el = self.stack.pop()
        if el is None:
            return
        if self.data[el.tag_end - 2:el.tag_end] == b"/>":
            el.inner_end = el.end = el.tag_end
        else:
            el.inner_end = self.p.CurrentByteIndex
            el.end = self.data.index(b">", el.inner_end) + 1
        self.ended(el)

    def started(self, el, parent):
        if parent is not None:
            if parent.kids is None:
                parent.kids = []
            parent.kids.append(el)
        self.found.append(el)

    def ended(self, el):
        pass

    def run(self) -> list:
        try:
            self.p.Parse(self.data, True)
        except expat.ExpatError as e:
            raise XlsxError(f"the part {self.name} is not well-formed XML "
                            f"({expat.ErrorString(e.code)} at line {e.lineno}, "
                            f"column {e.offset})") from None
        return self.found


def _elements(data: bytes, name: str, depth: int = 99) -> list:
    """Every element of a (small) part down to ``depth``, in document order."""
    return _Parser(data, name, lambda d, uri, local, parent: d <= depth).run()


# ---- package parts -----------------------------------------------------------------------

def _target_path(target: str, base: str = "xl") -> str:
    return target.lstrip("/") if target.startswith("/") else \
        posixpath.normpath(posixpath.join(base, target))


def _root(data: bytes, name: str, depth: int = 3) -> list:
    els = _elements(data, name, depth)
    if not els:
        raise XlsxError(f"the part {name} is empty")
    return els


def sheet_parts(files) -> dict:
    """Sheet name -> part path (e.g. 'xl/worksheets/sheet1.xml'); ``files`` maps a
    part name to its bytes (only xl/workbook.xml and its relationships are read)."""
    try:
        wb, rels = files["xl/workbook.xml"], files["xl/_rels/workbook.xml.rels"]
    except KeyError as e:
        raise XlsxError(f"not an Excel workbook: {e.args[0]} is missing") from None
    targets = {}
    for el in _root(rels, "xl/_rels/workbook.xml.rels", 2):
        if el.depth == 2 and el.uri == NS_PKG_REL and el.local == "Relationship":
            targets[el.get("Id")] = _target_path(el.get("Target", ""))
    out = {}
    for el in _root(wb, "xl/workbook.xml", 3):
        if el.depth == 3 and el.uri == NS_MAIN and el.local == "sheet":
            rid = el.get_ns(NS_REL, "id")
            if rid in targets:
                out[el.get("name")] = targets[rid]
    return out


def _splice(data: bytes, ops: list) -> bytes:
    """Apply (start, end, replacement) operations (non-overlapping; insertions have
    start == end and go before a replacement starting at the same place)."""
    out, pos = [], 0
    for start, end, rep in sorted(ops, key=lambda o: (o[0], o[1] != o[0])):
        if start < pos:
            raise XlsxError("internal error: overlapping edits")
        out.append(data[pos:start])
        out.append(rep)
        pos = end
    out.append(data[pos:])
    return b"".join(out)


def _insert_before_end(root: _El, data: bytes, xml: bytes) -> tuple:
    """An operation adding ``xml`` as the last child of ``root``."""
    if root.empty:
        tag = data[root.start:root.tag_end - 2].rstrip() + b">"
        return (root.start, root.end, tag + xml + f"</{root.qname}>".encode("utf-8"))
    return (root.inner_end, root.inner_end, xml)


def _ensure_metadata(files: dict) -> int | None:
    """The cm index of the dynamic-array cell metadata, adding xl/metadata.xml when
    the workbook has none; None when an existing metadata part has no such entry."""
    rels_name = "xl/_rels/workbook.xml.rels"
    rels = files[rels_name]
    rel_els = _root(rels, rels_name, 2)
    meta = [el for el in rel_els if el.depth == 2 and el.local == "Relationship"
            and el.get("Type") == REL_METADATA]
    if meta:
        path = _target_path(meta[0].get("Target", "metadata.xml"))
        if path not in files:
            return None
        return _dynamic_cm(files[path], path)
    if "xl/metadata.xml" in files:
        return None
    files["xl/metadata.xml"] = METADATA_XML.encode("utf-8")
    ids = {el.get("Id") for el in rel_els if el.depth == 2}
    n = 1 + max((int(m.group(1)) for i in ids if i and (m := re.fullmatch(r"rId(\d+)", i))),
                default=0)
    while f"rId{n}" in ids:
        n += 1
    root = rel_els[0]
    p = _prefix(root.qname)
    files[rels_name] = _splice(rels, [_insert_before_end(root, rels, _start_tag(
        f"{p}Relationship", {"Id": f"rId{n}", "Type": REL_METADATA,
                             "Target": "metadata.xml"}, close=True))])
    ct_name = "[Content_Types].xml"
    ct = files[ct_name]
    root = _root(ct, ct_name, 1)[0]
    files[ct_name] = _splice(ct, [_insert_before_end(root, ct, _start_tag(
        f"{_prefix(root.qname)}Override", {"PartName": "/xl/metadata.xml",
                                            "ContentType": CT_METADATA}, close=True))])
    return 1


def _dynamic_cm(data: bytes, name: str) -> int | None:
    """The 1-based index of the cellMetadata block marking a dynamic array."""
    els = _elements(data, name)
    main = [el for el in els if el.uri == NS_MAIN]
    names = [el.get("name") for el in main if el.local == "metadataType" and el.depth == 3]
    if "XLDAPR" not in names:
        return None
    t_index = names.index("XLDAPR") + 1
    future = [el for el in main if el.local == "futureMetadata" and el.depth == 2
              and el.get("name") == "XLDAPR"]
    dynamic_bk = set()
    if future:
        bks = [el for el in (future[0].kids or []) if el.local == "bk"]
        for k, bk in enumerate(bks):
            for el in els:
                if bk.start < el.start < bk.end and el.local == "dynamicArrayProperties" \
                        and el.get("fDynamic") in ("1", "true"):
                    dynamic_bk.add(k)
    cms = [el for el in main if el.local == "cellMetadata" and el.depth == 2]
    bks = [el for el in (cms[0].kids or []) if el.local == "bk"] if cms else []
    for i, bk in enumerate(bks, start=1):
        rc = [el for el in (bk.kids or []) if el.local == "rc"]
        if rc and rc[0].get("t") == str(t_index):
            try:
                v = int(rc[0].get("v", -1))
            except ValueError:
                continue
            if v in dynamic_bk:
                return i
    return None


def _drop_calc_chain(files: dict) -> None:
    if "xl/calcChain.xml" not in files:
        return
    del files["xl/calcChain.xml"]
    rels_name = "xl/_rels/workbook.xml.rels"
    rels = files[rels_name]
    files[rels_name] = _splice(rels, [
        (el.start, el.end, b"") for el in _root(rels, rels_name, 2)
        if el.depth == 2 and el.local == "Relationship"
        and _target_path(el.get("Target", "")) == "xl/calcChain.xml"])
    ct_name = "[Content_Types].xml"
    ct = files[ct_name]
    files[ct_name] = _splice(ct, [
        (el.start, el.end, b"") for el in _root(ct, ct_name, 2)
        if el.depth == 2 and el.local == "Override"
        and (el.get("PartName") or "").lower() == "/xl/calcchain.xml"])
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

class _SheetDoc(_Parser):
    """Where the rows and cells of one worksheet part are.  ``rows``: the <row>
    elements of <sheetData> in order (``extra`` = the row number), each with its
    cells in ``kids`` (``extra`` = the column).  Cells of rows in ``keep_rows`` and
    cells holding a formula are kept whole (attributes, <f> and <v> children);
    the others only as (column, start, end), to keep memory small."""

    def __init__(self, data: bytes, name: str, keep_rows=()):
        self.keep_rows = set(keep_rows)
        self.sheet_data = None
        self.dimension = None
        self.rows: list = []
        self.last_r = 0
        self.last_c = 0
        super().__init__(data, name, self._want)

    def _want(self, depth, uri, local, parent):
        if uri != NS_MAIN:
            return False
        if depth == 1:
            if local != "worksheet":
                raise XlsxError(f"the part {self.name} is not a worksheet")
            return True
        if depth == 2:
            return local in ("sheetData", "dimension")
        if depth == 3:
            return parent is self.sheet_data and local == "row"
        if depth == 4:
            return local == "c"
        return depth == 5 and local in ("f", "v")

    def started(self, el, parent):
        d = el.depth
        if d == 2:
            if el.local == "sheetData":
                if self.sheet_data is not None:
                    raise XlsxError(f"the part {self.name} has two <sheetData> elements")
                self.sheet_data = el
            elif self.dimension is None:
                self.dimension = el
        elif d == 3:
            r = el.get("r")
            try:
                r = int(r) if r is not None else self.last_r + 1
            except ValueError:
                raise XlsxError(f"the part {self.name} has a row numbered {r[:20]!r}") from None
            if r <= self.last_r:
                raise XlsxError(f"the part {self.name} has row {r} after row {self.last_r} "
                                "(rows must be in ascending order)")
            el.extra = self.last_r = r
            self.last_c = 0
            el.kids = []
            self.rows.append(el)
        elif d == 4:
            ref = el.get("r")
            if ref is not None:
                m = CELL_REF.match(ref)
                if not m or int(m.group(2)) != self.last_r:
                    raise XlsxError(f"the part {self.name} has a cell named {ref[:20]!r} "
                                    f"in row {self.last_r}")
                c = col_number(m.group(1))
            else:
                c = self.last_c + 1
            if c <= self.last_c:
                raise XlsxError(f"the part {self.name} has the cell {cell_name(self.last_r, c)} "
                                f"after column {self.last_c} (cells must be in ascending order)")
            el.extra = self.last_c = c
            parent.kids.append(el)
        elif d == 5:
            if parent.kids is None:
                parent.kids = []
            parent.kids.append(el)

    def ended(self, el):
        if el.depth == 4:
            row = self.rows[-1]
            if row.extra not in self.keep_rows and not any(
                    k.local == "f" for k in (el.kids or ())):
                row.kids[-1] = (el.extra, el.start, el.end)     # a light record

    def run(self):
        super().run()
        if self.sheet_data is None:
            raise XlsxError(f"the worksheet {self.name} has no <sheetData>")
        return self


def _light(cell) -> tuple:
    """(column, start, end) of a cell record."""
    return cell if isinstance(cell, tuple) else (cell.extra, cell.start, cell.end)


class _State:
    """The new content of a cell: start-tag attributes (qualified name -> value),
    namespace declarations, the <f> element (attributes, raw inner XML) or None,
    the raw XML of its other children, and the raw text of <v> (None: no <v>)."""
    __slots__ = ("qname", "attrs", "decls", "f", "f_qname", "rest", "v")

    def __init__(self, qname, attrs, decls=(), f=None, f_qname=None, rest=b"", v=None):
        self.qname, self.attrs, self.decls = qname, attrs, list(decls)
        self.f, self.f_qname, self.rest, self.v = f, f_qname, rest, v

    @classmethod
    def of(cls, doc: _SheetDoc, el: _El) -> "_State":
        data = doc.data
        kids = el.kids or []
        f = next((k for k in kids if k.local == "f"), None)
        v = next((k for k in kids if k.local == "v"), None)
        inner = data[el.tag_end:el.inner_end] if not el.empty else b""
        rest = inner
        f_spec = None
        if f is not None:
            rest = data[el.tag_end:f.start] + data[f.end:el.inner_end]
            f_spec = (f.attr_dict(), data[f.tag_end:f.inner_end] if not f.empty else b"")
        return cls(el.qname, el.attr_dict(), el.decls, f_spec, f.qname if f else None, rest,
                   data[v.tag_end:v.inner_end] if v is not None and not v.empty else
                   (b"" if v is not None else None))

    def xml(self) -> bytes:
        p = _prefix(self.qname)
        attrs = dict(self.attrs)
        attrs = {"r": attrs.pop("r"), **attrs} if "r" in attrs else attrs
        body = b""
        if self.f is not None:
            fq = self.f_qname or f"{p}f"
            fa, ftext = self.f
            body = _start_tag(fq, fa) + ftext + f"</{fq}>".encode("utf-8") if ftext \
                else _start_tag(fq, fa, close=True)
        body += self.rest
        if not body:
            return _start_tag(self.qname, attrs, self.decls, close=True)
        return _start_tag(self.qname, attrs, self.decls) + body + \
            f"</{self.qname}>".encode("utf-8")


def _v_xml(p: str, text: str) -> bytes:
    return f"<{p}v>{esc(text)}</{p}v>".encode("utf-8")


def _value_cell(st: _State, value):
    p = _prefix(st.qname)
    attrs = {k: v for k, v in st.attrs.items() if k in ("r", "s", "ph")}
    t, v = typed(value)
    if v is None:
        return _State(st.qname, attrs, st.decls) if "s" in attrs else None
    if t == "str":
        attrs["t"] = "inlineStr"
        return _State(st.qname, attrs, st.decls, rest=(
            f'<{p}is><{p}t xml:space="preserve">{esc(v)}</{p}t></{p}is>').encode("utf-8"))
    if t:
        attrs["t"] = t
    return _State(st.qname, attrs, st.decls, rest=_v_xml(p, v))


def _formula_cell(st: _State, f_attrs: dict, f_text: bytes, value, array_ref=None, cm=None):
    p = _prefix(st.qname)
    attrs = {k: v for k, v in st.attrs.items() if k in ("r", "s", "ph", "cm")}
    if array_ref is not None:
        f_attrs = {k: v for k, v in f_attrs.items() if k not in ("t", "ref", "si", "ca")}
        f_attrs = {"t": "array", "ref": array_ref, **f_attrs}
        if cm is not None:
            attrs["cm"] = str(cm)
    t, v = typed(value)
    if t:
        attrs["t"] = t
    return _State(st.qname, attrs, st.decls, (f_attrs, f_text), st.f_qname,
                  _v_xml(p, v) if v is not None else b"")


def _strip_formula(st: _State) -> _State:
    """A formula cell -> a value cell with its cached value."""
    p = _prefix(st.qname)
    attrs = {k: v for k, v in st.attrs.items() if k in ("r", "s", "t", "ph")}
    if attrs.get("t") == "str":
        attrs["t"] = "inlineStr"
        return _State(st.qname, attrs, st.decls, rest=(
            f'<{p}is><{p}t xml:space="preserve">'.encode("utf-8") + (st.v or b"")
            + f"</{p}t></{p}is>".encode("utf-8")))
    if st.v is None:
        attrs.pop("t", None)
        return _State(st.qname, attrs, st.decls)
    return _State(st.qname, attrs, st.decls, rest=st.rest, v=st.v)


def _row_tag(row: _El, data: bytes, close: bool = False) -> bytes:
    """A touched row's start tag: its attributes without ``spans`` (the cells may
    now reach outside them), ``r`` explicit."""
    attrs = {k: v for k, v in row.attr_dict().items() if k != "spans"}
    attrs = {"r": str(row.extra), **{k: v for k, v in attrs.items() if k != "r"}}
    return _start_tag(row.qname, attrs, row.decls, close)


def _patch_sheet(data: bytes, name: str, sheet: str, sheet_writes: dict, ftexts: dict,
                 values_only: bool, cm_index) -> bytes:
    data = as_utf8(data, name)
    doc = _SheetDoc(data, name, {r for r, _ in sheet_writes}).run()
    rows = {row.extra: row for row in doc.rows}
    states: dict = {}                 # (r, c) -> _State, or None: the cell goes

    by_col: dict = {}

    def element(r, c):
        row = rows.get(r)
        if row is None:
            return None
        if r not in by_col:
            by_col[r] = {_light(cell)[0]: cell for cell in row.kids}
        return by_col[r].get(c)

    def current(r, c):
        if (r, c) in states:
            return states[(r, c)]
        el = element(r, c)
        if el is None:
            return None
        if isinstance(el, tuple):
            raise XlsxError(f"internal error: {sheet}!{cell_name(r, c)} was not kept")
        return _State.of(doc, el)

    # shared formula groups touched by a write: expand them into explicit formulas
    expand = set()
    for (r, c) in sheet_writes:
        st = current(r, c)
        if st is not None and st.f is not None and st.f[0].get("t") == "shared":
            expand.add(st.f[0].get("si"))
    if expand or values_only:
        for row in doc.rows:
            for cell in row.kids:
                if isinstance(cell, tuple):
                    continue
                st = _State.of(doc, cell)
                if st.f is None:
                    continue
                r, c = row.extra, cell.extra
                if values_only:
                    states[(r, c)] = _strip_formula(st)
                elif st.f[0].get("t") == "shared" and st.f[0].get("si") in expand:
                    text = ftexts.get((r, c))
                    if text is None:
                        raise XlsxError(f"{sheet}!{cell_name(r, c)}: shared formula "
                                        "without text")
                    fa = {k: v for k, v in st.f[0].items() if k not in ("t", "si", "ref")}
                    st.f = (fa, esc(text).encode("utf-8"))
                    states[(r, c)] = st
    for (r, c), w in sorted(sheet_writes.items()):
        cur = current(r, c)
        if cur is None:
            row = rows.get(r)
            p = _prefix(row.qname if row is not None else doc.sheet_data.qname)
            cur = _State(f"{p}c", {"r": cell_name(r, c)})
        else:
            cur.attrs.pop("vm", None)
            cur.attrs["r"] = cell_name(r, c)
        if w.kind == "clear" or (w.kind == "value" and values_only and w.value is None):
            keep = {k: v for k, v in cur.attrs.items() if k in ("r", "s")}
            states[(r, c)] = _State(cur.qname, keep, cur.decls) if "s" in keep else None
        elif w.kind == "value" or values_only:
            states[(r, c)] = _value_cell(cur, w.value)
        elif w.kind == "formula":
            fe = cur.f
            if fe is None:
                text = ftexts.get((r, c))
                if text is None:
                    raise XlsxError(f"{sheet}!{cell_name(r, c)} holds no formula")
                fe = ({}, esc(text).encode("utf-8"))
            cm = cm_index if w.dynamic else None
            if w.array_ref is not None and cm is None:
                cur.attrs.pop("cm", None)
            states[(r, c)] = _formula_cell(cur, fe[0], fe[1], w.value, w.array_ref, cm)
        else:
            raise ValueError(f"unknown write kind {w.kind!r}")
    return _assemble(doc, rows, states)


def _assemble(doc: _SheetDoc, rows: dict, states: dict) -> bytes:
    """The part with ``states`` spliced in: changed cells replaced, new cells and rows
    inserted in order, every other byte as it was."""
    data = doc.data
    ops = []
    by_row: dict = {}
    for (r, c), st in states.items():
        by_row.setdefault(r, {})[c] = st
    new_rows = []
    for r in sorted(by_row):
        row = rows.get(r)
        changes = by_row[r]
        if row is None:
            cells = [changes[c].xml() for c in sorted(changes) if changes[c] is not None]
            if cells:
                p = _prefix(doc.sheet_data.qname)
                new_rows.append((r, f'<{p}row r="{r}">'.encode("utf-8") + b"".join(cells)
                                 + f"</{p}row>".encode("utf-8")))
            continue
        existing = [_light(cell) for cell in row.kids]
        cols = {c for c, _, _ in existing}
        left = [c for c, _, _ in existing if not (c in changes and changes[c] is None)]
        added = sorted(c for c in changes if c not in cols and changes[c] is not None)
        attrs = {k for k, _, _ in row.attrs}
        if not left and not added and attrs <= {"r", "spans"}:
            ops.append((row.start, row.end, b""))      # the row is empty now: it goes
            continue
        if row.empty:
            body = b"".join(changes[c].xml() for c in added)
            ops.append((row.start, row.end, _row_tag(row, data) + body
                        + f"</{row.qname}>".encode("utf-8") if body
                        else _row_tag(row, data, close=True)))
            continue
        ops.append((row.start, row.tag_end, _row_tag(row, data)))
        for c, start, end in existing:
            if c in changes:
                st = changes[c]
                ops.append((start, end, st.xml() if st is not None else b""))
        i = 0
        for c in added:
            while i < len(existing) and existing[i][0] < c:
                i += 1
            at = existing[i][1] if i < len(existing) else row.inner_end
            ops.append((at, at, changes[c].xml()))
    tail = []
    for r, xml in new_rows:
        nxt = next((row for row in doc.rows if row.extra > r), None)
        if nxt is not None:
            ops.append((nxt.start, nxt.start, xml))
        else:
            tail.append(xml)
    if tail:
        ops.append(_insert_before_end(doc.sheet_data, data, b"".join(tail)))
    ops += _dimension_op(doc, rows, by_row)
    return _splice(data, ops)


def _dimension_op(doc: _SheetDoc, rows: dict, by_row: dict) -> list:
    """<dimension ref> set to the cells' extent after the changes."""
    dim = doc.dimension
    if dim is None:
        return []
    min_r = max_r = min_c = max_c = None
    for r in sorted(set(rows) | set(by_row)):
        changes = by_row.get(r, {})
        cols = {_light(cell)[0] for cell in rows[r].kids} if r in rows else set()
        cols = {c for c in cols if not (c in changes and changes[c] is None)}
        cols |= {c for c, st in changes.items() if st is not None}
        if not cols:
            continue
        min_r = r if min_r is None else min_r
        max_r = r
        min_c = min(cols) if min_c is None else min(min_c, min(cols))
        max_c = max(cols) if max_c is None else max(max_c, max(cols))
    if min_r is None:
        return []
    ref = cell_name(min_r, min_c) if (min_r, min_c) == (max_r, max_c) else \
        f"{cell_name(min_r, min_c)}:{cell_name(max_r, max_c)}"
    if dim.get("ref") == ref or dim.get("ref") is None:
        return []
    attrs = dim.attr_dict()
    attrs["ref"] = ref
    return [(dim.start, dim.tag_end, _start_tag(dim.qname, attrs, dim.decls, close=dim.empty))]


# ---- the package ----------------------------------------------------------------------------

_SMALL_PARTS = ("xl/workbook.xml", "xl/_rels/workbook.xml.rels", "[Content_Types].xml")


def patch(src, dst, writes: dict, *, formulas: dict | None = None,
          values_only: bool = False) -> dict:
    """Copy workbook ``src`` to ``dst`` applying ``writes`` (sheet name -> {(row, col):
    CellWrite}).  ``formulas`` (sheet -> {(row, col): formula text without '='}) is
    used to expand shared formulas when a cell of a shared group changes.
    ``values_only``: every formula cell keeps its cached value and loses its formula.
    Returns a small summary (``dynamic``: whether spills were marked as Excel 365
    dynamic arrays).  :class:`XlsxError` when the package cannot be edited safely
    (then ``dst`` is incomplete and must be thrown away -- ``recalc`` writes it to a
    temporary file)."""
    formulas = formulas or {}
    try:
        return _patch(src, dst, writes, formulas, values_only)
    except (zipfile.BadZipFile, zlib.error, EOFError, UnicodeError) as e:
        raise XlsxError(f"the package cannot be read ({type(e).__name__}: {e})") from None


def _patch(src, dst, writes, formulas, values_only) -> dict:
    with open_zip(src) as zin:
        infos = [i for i in zin.infolist()]
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            raise XlsxError("the package holds two parts with the same name")
        files = {n: read_part(zin, n) for n in _SMALL_PARTS if n in names}
        parts = sheet_parts(files)
        unknown = set(writes) - set(parts)
        if unknown:
            raise XlsxError(f"no worksheet named {sorted(unknown)[0]!r}")
        cm_index = None
        if not values_only and any(w.dynamic for ws in writes.values() for w in ws.values()):
            meta = [n for n in names if n.startswith("xl/") and n.endswith("metadata.xml")]
            for n in meta:
                files[n] = read_part(zin, n)
            cm_index = _ensure_metadata(files)
        calc_chain = "xl/calcChain.xml" in names
        if calc_chain:
            files["xl/calcChain.xml"] = b""
            _drop_calc_chain(files)           # and from the relationships, content types
        sheets = {part: name for name, part in parts.items()
                  if writes.get(name) or values_only}
        missing = [p for p in sheets if p not in names]
        if missing:
            raise XlsxError(f"the worksheet part {missing[0]} is missing")
        order = [n for n in names if not (calc_chain and n == "xl/calcChain.xml")]
        order += [n for n in files if n not in names]                  # xl/metadata.xml
        order.sort(key=lambda n: n != "[Content_Types].xml")     # first, as Office writes it
        changed = set(files) - set(sheets)
        by_name = {i.filename: i for i in infos}
        with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
            for n in order:
                info = by_name.get(n)
                zi = zipfile.ZipInfo(n, date_time=info.date_time if info else
                                     datetime.now().timetuple()[:6])
                zi.compress_type = zipfile.ZIP_DEFLATED
                if info is not None:
                    zi.external_attr = info.external_attr
                if n in sheets:
                    s = sheets[n]
                    zout.writestr(zi, _patch_sheet(read_part(zin, info), n, s,
                                                   writes.get(s, {}), formulas.get(s, {}),
                                                   values_only, cm_index))
                elif n in changed:
                    zout.writestr(zi, files[n])
                elif info.is_dir():
                    zout.writestr(zi, b"")
                else:
                    with zout.open(zi, "w") as f:
                        for chunk in iter_part(zin, info):
                            f.write(chunk)
    _verify(dst, order, set(sheets) | changed)
    return {"dynamic": cm_index is not None}


def _verify(path, names: list, rewritten: set) -> None:
    """The package just written is complete: the parts expected, each unpacking
    with its checksum, every rewritten part well-formed XML."""
    with open_zip(path) as z:
        got = [i.filename for i in z.infolist()]
        if got != names:
            raise XlsxError("the written package lacks parts (internal error)")
        for info in z.infolist():
            p = expat.ParserCreate() if info.filename in rewritten else None
            try:
                for chunk in iter_part(z, info, MAX_PART_BYTES * 2):
                    if p is not None:
                        p.Parse(chunk, False)
                if p is not None:
                    p.Parse(b"", True)
            except expat.ExpatError as e:
                raise XlsxError(f"the rewritten part {info.filename} is not well-formed "
                                f"({expat.ErrorString(e.code)}; internal error)") from None
