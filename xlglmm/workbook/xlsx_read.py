"""Reading an .xlsx package with bounded memory: the guards ``xlglmm recalc`` runs
before openpyxl (or anything else) unpacks a workbook.

A zip entry's declared size is not trusted: every part is decompressed in chunks
and counted, and reading stops as soon as a limit is passed, so a 2 MB file that
unpacks to gigabytes (a zip bomb, including entries that share one compressed
stream) costs at most ``MAX_PART_BYTES`` of decompression work per part and never
that much memory.  Every XML part is parsed once with expat, streaming: it must be
well-formed and declare no DOCTYPE (the Open Packaging Conventions forbid DTDs in
a package, so entity expansion -- billion laughs, external entities -- never
starts).  Worksheet parts are counted on the way: cells in all, and the last row
and column, which must lie inside Excel's grid.

The limits (module constants, listed in ``xlglmm recalc --help`` and :data:`LIMITS_TEXT`)
bound what the later steps hold in memory: openpyxl keeps every cell as an object
(with ``Book``'s own dictionaries about 0.6 kB a cell; the stored values of formula
cells are read streaming, not by a second full load), the writer holds one
worksheet part at a time (at most ``MAX_PART_BYTES``) plus a small record per cell.
Measured: a 200,000-cell workbook recalculates in 0.34 GB peak (0.17 GB of it the
interpreter with numpy, scipy, numba and openpyxl), i.e. about 0.2 GB + 1 kB per
cell, so at most about 2.2 GB at ``MAX_CELLS``; a zip bomb is refused at the
interpreter's own footprint.  What openpyxl turns into objects besides cells is
counted in the same pass: shared strings (``MAX_STRINGS``), each list of styles.xml
(``MAX_STYLES``) and every other XML element (``MAX_RECORDS``; defined names,
comments, tables, merged cells...), each about as costly as a cell (a 250 kB file
with 6,000,000 shared strings took 0.74 GB and 93 s before it was counted).
"""
from __future__ import annotations

import codecs
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from xml.parsers import expat

from ..sheet.grid import MAX_COL, MAX_ROW
from .excel_formula import col_number

MAX_ENTRIES = 10_000                  # parts in the package
MAX_PART_BYTES = 256 << 20            # one part, unpacked
MAX_TOTAL_BYTES = 1 << 30             # all parts, unpacked
MAX_CELLS = 2_000_000                 # cells (<c> elements) in all worksheets
MAX_STRINGS = MAX_CELLS               # shared strings (<si>): no more than cells use
MAX_STYLES = 64_000                   # entries of one list in styles.xml (Excel's limit
                                      # of cell formats): xfs, fonts, fills, borders...
MAX_RECORDS = 2_000_000               # XML elements of all other parts, and of the
                                      # worksheets outside their cells (names, comments,
                                      # tables, merged cells, hyperlinks...)
CHUNK = 1 << 16

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"


def _mb(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):g} GB"
    return f"{n / (1 << 20):,.0f} MB" if n >= 1 << 20 else f"{n / 1000:,.0f} kB"


LIMITS_TEXT = (f"at most {_mb(MAX_PART_BYTES)} per part and {_mb(MAX_TOTAL_BYTES)} in all "
               f"unpacked, {MAX_ENTRIES:,} parts, {MAX_CELLS:,} cells")


class XlsxError(ValueError):
    """The file is not a workbook xlglmm can read or edit (one line: what is wrong)."""


class TooLarge(XlsxError):
    """The workbook passes a size limit (a zip bomb, or simply too big)."""


# ---- zip entries, read with a cap -------------------------------------------------------

def open_zip(path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise XlsxError(f"not an .xlsx file (not a readable zip package: {e})") from None


def iter_part(z: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int = MAX_PART_BYTES):
    """The unpacked bytes of one entry in chunks; :class:`TooLarge` as soon as more
    than ``cap`` bytes come out, whatever the entry's header declares."""
    n = 0
    try:
        with z.open(info) as f:
            while True:
                chunk = f.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if n > cap:
                    raise TooLarge(f"the part {info.filename} unpacks to more than "
                                   f"{_mb(cap)} (a zip bomb?)")
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError,
            RuntimeError, OSError) as e:
        raise XlsxError(f"the part {info.filename} cannot be unpacked ({e})") from None


def read_part(z: zipfile.ZipFile, name_or_info, cap: int = MAX_PART_BYTES) -> bytes:
    info = name_or_info if isinstance(name_or_info, zipfile.ZipInfo) else z.getinfo(name_or_info)
    return b"".join(iter_part(z, info, cap))


def is_xml_part(name: str) -> bool:
    return name.lower().endswith((".xml", ".rels", ".vml"))


# ---- streaming XML checks -----------------------------------------------------------------

CELL_REF = re.compile(r"\$?([A-Za-z]{1,3})\$?([0-9]{1,7})$")


def xml_parser(name: str):
    """An expat parser for one part of the package: namespaces resolved (``uri
    local``), text buffered, and any DOCTYPE or entity declaration refused (the Open
    Packaging Conventions forbid DTDs in a package; they are how XML entity attacks
    come in)."""
    def refuse(*_args):
        raise XlsxError(f"the part {name} declares a DOCTYPE (DTDs are not allowed in "
                        "an .xlsx package; an XML entity attack?)")
    p = expat.ParserCreate(namespace_separator=" ")
    p.buffer_text = True
    p.StartDoctypeDeclHandler = refuse
    p.EntityDeclHandler = refuse
    return p


@dataclass
class PartStats:
    worksheet: bool = False
    cells: int = 0
    max_row: int = 0
    max_col: int = 0
    strings: int = 0
    records: int = 0


class _Scan:
    """One streaming expat pass over an XML part: well-formed, no DOCTYPE; for a
    worksheet the number of cells and the largest row and column."""

    def __init__(self, name: str, cells_left: int, strings_left: int = MAX_STRINGS,
                 records_left: int = MAX_RECORDS):
        self.name = name
        self.cells_left = cells_left
        self.strings_left = strings_left
        self.records_left = records_left
        self.kind = None
        self.in_cells = 0           # depth of <sheetData> while inside it, else 0
        self.style_list = 0
        self.stats = PartStats()
        self.depth = 0
        self.row = 0
        self.col = 0
        self.p = p = xml_parser(name)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end

    def _start(self, tag, attrs):
        d = self.depth = self.depth + 1
        if d == 1:
            self.stats.worksheet = tag == f"{NS_MAIN} worksheet"
            self.kind = {f"{NS_MAIN} sst": "sst", f"{NS_MAIN} styleSheet": "styles"}.get(
                tag, "worksheet" if self.stats.worksheet else "other")
            return
        # what openpyxl turns into objects besides cells is counted too (a 250 kB file
        # with 6,000,000 shared strings took 0.74 GB, 1,000,000 <xf/> 1.1 GB)
        kind = self.kind
        if kind == "sst":
            if d == 2:
                self.stats.strings += 1
                if self.stats.strings > self.strings_left:
                    raise TooLarge(f"it has more than {MAX_STRINGS:,} shared strings "
                                   f"(in {self.name})")
            return
        if kind == "styles":
            if d == 2:
                self.style_list, self.style_tag = 0, tag.rpartition(" ")[2]
            elif d == 3:
                self.style_list += 1
                if self.style_list > MAX_STYLES:
                    raise TooLarge(f"its styles list <{self.style_tag}> has "
                                   f"more than {MAX_STYLES:,} entries (in {self.name})")
            return
        if kind == "worksheet" and d == 2 and tag == f"{NS_MAIN} sheetData":
            self.in_cells = 2
        if not self.in_cells:
            if kind == "worksheet" and d == 3 and tag == f"{NS_MAIN} mergeCell":
                self._merged(attrs.get("ref") or "")
            self.stats.records += 1
            if self.stats.records > self.records_left:
                raise TooLarge(f"it has more than {MAX_RECORDS:,} XML elements besides "
                               f"cells, shared strings and styles (counted up to {self.name})")
            return
        if d not in (3, 4):
            return
        if d == 3 and tag == f"{NS_MAIN} row":
            r = attrs.get("r")
            self.row = self._int(r, "row number") if r is not None else self.row + 1
            self.col = 0
            if self.row > MAX_ROW or self.row < 1:
                raise XlsxError(f"the part {self.name} has a row numbered {self.row:,}, "
                                f"outside Excel's rows 1 to {MAX_ROW:,}")
            self.stats.max_row = max(self.stats.max_row, self.row)
        elif d == 4 and tag == f"{NS_MAIN} c":
            ref = attrs.get("r")
            if ref is not None:
                m = CELL_REF.match(ref)
                if not m:
                    raise XlsxError(f"the part {self.name} has a cell named {ref[:20]!r}, "
                                    "not a cell reference")
                col = col_number(m.group(1))
                if int(m.group(2)) != self.row:
                    raise XlsxError(f"the part {self.name} has the cell {ref} inside "
                                    f"row {self.row}")
            else:
                col = self.col + 1
            self.col = col
            if col > MAX_COL:
                raise XlsxError(f"the part {self.name} has a cell in column {col:,}, "
                                f"beyond Excel's last column XFD ({MAX_COL:,})")
            self.stats.max_col = max(self.stats.max_col, col)
            self.stats.cells += 1
            if self.stats.cells > self.cells_left:
                raise TooLarge(f"it has more than {MAX_CELLS:,} cells (counted up to "
                               f"{self.name})")

    def _merged(self, ref: str):
        """openpyxl makes an object for every cell of a merged range: they count as
        cells (one <mergeCell ref="A1:XFD1048576"/> would be 17 billion)."""
        a, _, b = ref.partition(":")
        ma, mb = CELL_REF.match(a), CELL_REF.match(b or a)
        if not (ma and mb):
            raise XlsxError(f"the part {self.name} merges {ref[:30]!r}, not a range")
        rows = abs(int(mb.group(2)) - int(ma.group(2))) + 1
        cols = abs(col_number(mb.group(1)) - col_number(ma.group(1))) + 1
        self.stats.cells += rows * cols - 1
        if self.stats.cells > self.cells_left:
            raise TooLarge(f"it has more than {MAX_CELLS:,} cells, merged ones counted "
                           f"(counted up to {self.name})")

    def _int(self, text, what):
        try:
            return int(text)
        except ValueError:
            raise XlsxError(f"the part {self.name} has a {what} {text[:20]!r}, "
                            "not a number") from None

    def _end(self, tag):
        if self.depth == self.in_cells:
            self.in_cells = 0
        self.depth -= 1

    def feed(self, chunk: bytes, final: bool = False):
        try:
            self.p.Parse(chunk, final)
        except expat.ExpatError as e:
            raise XlsxError(f"the part {self.name} is not well-formed XML "
                            f"({expat.ErrorString(e.code)} at line {e.lineno}, "
                            f"column {e.offset})") from None
        except XlsxError:
            raise
        except (LookupError, ValueError) as e:
            # expat reads UTF-8, UTF-16 and 8-bit encodings; an unknown name is a
            # LookupError, a multi-byte one (Shift_JIS, EUC-JP, GBK, Big5) a ValueError
            m = _DECL.match(chunk[:200].decode("latin-1")) if chunk else None
            enc = repr(m.group(2)) if m else "an encoding"
            raise XlsxError(f"the part {self.name} is encoded in {enc}, which recalc "
                            f"cannot read ({e}; it reads UTF-8, UTF-16 and 8-bit "
                            "encodings)") from None


@dataclass
class PackageInfo:
    names: list = field(default_factory=list)
    unpacked: int = 0
    cells: int = 0
    strings: int = 0
    records: int = 0
    parts: dict = field(default_factory=dict)      # name -> PartStats (XML parts)


def check_package(path) -> PackageInfo:
    """Every guard, before anything else unpacks the workbook: the number of parts,
    each part's and the total unpacked size (counted while decompressing), every
    XML part well-formed without a DOCTYPE, and the cells of all worksheets
    (count and grid).  Raises :class:`XlsxError` (:class:`TooLarge` for a limit)
    with one line saying what is wrong; memory stays at a few chunks."""
    info = PackageInfo()
    with open_zip(path) as z:
        entries = z.infolist()
        if len(entries) > MAX_ENTRIES:
            raise TooLarge(f"it has {len(entries):,} parts")
        seen = set()
        for e in entries:
            if e.filename in seen:
                raise XlsxError(f"the package holds two parts named {e.filename}")
            seen.add(e.filename)
        info.names = [e.filename for e in entries]
        for e in entries:
            if e.is_dir():
                continue
            scan = _Scan(e.filename, MAX_CELLS - info.cells, MAX_STRINGS - info.strings,
                         MAX_RECORDS - info.records) if is_xml_part(e.filename) else None
            for chunk in iter_part(z, e, MAX_PART_BYTES):
                info.unpacked += len(chunk)
                if info.unpacked > MAX_TOTAL_BYTES:
                    raise TooLarge(f"it unpacks to more than {_mb(MAX_TOTAL_BYTES)} "
                                   f"(reached in {e.filename}: a zip bomb?)")
                if scan is not None:
                    scan.feed(chunk)
            if scan is not None:
                scan.feed(b"", True)
                info.parts[e.filename] = scan.stats
                info.cells += scan.stats.cells
                info.strings += scan.stats.strings
                info.records += scan.stats.records
    return info


# ---- encodings ------------------------------------------------------------------------------

_DECL = re.compile(r"""^<\?xml\s[^?]*?encoding\s*=\s*(["'])([A-Za-z0-9._-]+)\1""")
_UTF8_NAMES = {"utf-8", "utf8", "us-ascii", "ascii"}


def as_utf8(data: bytes, name: str) -> bytes:
    """An XML part in UTF-8 (a UTF-8 part is returned as it is; UTF-16 or a declared
    8-bit encoding is decoded and re-encoded, its declaration saying UTF-8), so that
    byte offsets can be spliced.  :class:`XlsxError` when it cannot be decoded."""
    if data.startswith(codecs.BOM_UTF8):
        return data
    enc = None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        enc = "utf-16"
    elif data.startswith(b"<\x00?\x00"):
        enc = "utf-16-le"
    elif data.startswith(b"\x00<\x00?"):
        enc = "utf-16-be"
    else:
        m = _DECL.match(data[:200].decode("latin-1"))
        if m and m.group(2).lower() not in _UTF8_NAMES:
            enc = m.group(2)
    if enc is None:
        return data
    try:
        text = data.decode(enc)
    except (LookupError, UnicodeError) as e:
        raise XlsxError(f"the part {name} cannot be decoded ({e})") from None
    text = text.lstrip("\ufeff")
    m = _DECL.match(text)
    if m:
        text = text[:m.start(2)] + "UTF-8" + text[m.end(2):]
    return text.encode("utf-8")
