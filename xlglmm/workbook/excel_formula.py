"""A whitelist parser for the Excel formula language, as stored in .xlsx files.

``parse("=GLMM_POISSON(Data!E1:E161, Safety[[#All],[training]], F2#)")`` returns a
small syntax tree (the node classes below).  Nothing is ever evaluated as Python:
the text is split into tokens by regular expressions and assembled by a recursive
descent parser; anything outside the grammar raises :class:`FormulaSyntaxError`.

Grammar (Excel's operator precedence, highest first: ``:`` range, unary ``-``/``+``,
``%``, ``^``, ``*`` ``/``, ``+`` ``-``, ``&``, comparisons)::

    formula    := ['='] expr
    expr       := concat (('=' | '<>' | '<' | '>' | '<=' | '>=') concat)*
    concat     := additive ('&' additive)*
    additive   := term (('+' | '-') term)*
    term       := power (('*' | '/') power)*
    power      := unary ('^' unary)*
    unary      := ('-' | '+') unary | postfix
    postfix    := primary ['%']
    primary    := number | "text" | TRUE | FALSE | #error | '(' expr ')'
                | name '(' [args] ')' | reference | '{' array '}'
    reference  := [sheet '!'] (A1 | A1:B2 | A:B) ['#']
                | Table[...]            (structured reference)
                | defined name

Function names may carry the prefixes Excel writes into files (``_xlfn.``,
``_xlws.``, ``_xludf.``) or an add-in qualifier (``[1]!GLMM_POISSON``,
``'C:\\...\\xlglmm.xlam'!GLMM_POISSON``); :func:`function_key` strips them.  A spill
reference ``F2#`` is stored by Excel as ``_xlfn.ANCHORARRAY(F2)``; both parse.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..sheet.grid import MAX_ROW

# Nesting levels a formula may have: parentheses, function calls, unary signs and
# percent signs each add one.  Excel allows 64 levels of nested functions; the
# parser refuses deeper text before its own recursion (about 9 Python frames a
# level) could exhaust the interpreter's stack.
MAX_NESTING = 64

ERROR_CODES = ("#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A",
               "#GETTING_DATA", "#SPILL!", "#CALC!")


class FormulaSyntaxError(ValueError):
    """The text is not a formula this parser understands."""


# ---- nodes -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Num:
    value: float


@dataclass(frozen=True)
class Str:
    value: str


@dataclass(frozen=True)
class Bool:
    value: bool


@dataclass(frozen=True)
class ErrorLit:
    code: str


@dataclass(frozen=True)
class Missing:
    """An empty argument: ``f(a,,b)``."""


@dataclass(frozen=True)
class Ref:
    """A cell or rectangular range; rows/columns 1-based, inclusive.  ``sheet`` is
    None for the formula's own sheet; ``external`` holds a workbook qualifier such
    as ``[1]`` (never resolved).  ``spill``: ``A1#``."""
    sheet: str | None
    r1: int
    c1: int
    r2: int
    c2: int
    spill: bool = False
    external: str | None = None
    text: str = ""


@dataclass(frozen=True)
class StructRef:
    """``Table[...]``: ``items`` are the special items (#All, #Data, #Headers,
    #Totals, #This Row) and ``columns`` the first and last column name (or None)."""
    table: str
    items: tuple
    columns: tuple | None
    text: str = ""


@dataclass(frozen=True)
class Name:
    name: str
    sheet: str | None = None


@dataclass(frozen=True)
class Call:
    name: str          # as written (prefixes included)
    args: tuple


@dataclass(frozen=True)
class Unary:
    op: str
    operand: object


@dataclass(frozen=True)
class Binary:
    op: str
    left: object
    right: object


@dataclass(frozen=True)
class Percent:
    operand: object


@dataclass(frozen=True)
class ArrayLit:
    rows: tuple        # tuple of tuples of constant nodes


# ---- helpers ---------------------------------------------------------------------------

_PREFIXES = ("_xlfn._xlws.", "_xlfn.", "_xlws.", "_xludf.", "_xll.")


def function_key(name: str) -> str:
    """Upper-case function name without the prefixes Excel stores in files and
    without an add-in qualifier (``[1]!``, ``'...xlam'!``)."""
    n = name.strip()
    if "!" in n:
        n = n.rsplit("!", 1)[1]
    n = n.upper()
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if n.startswith(p.upper()):
                n = n[len(p):]
                changed = True
    return n


def col_number(letters: str) -> int:
    n = 0
    for ch in letters.upper():
        n = n * 26 + (ord(ch) - 64)
    return n


def col_letters(n: int) -> str:
    s = ""
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


def cell_name(row: int, col: int) -> str:
    return f"{col_letters(col)}{row}"


def range_name(r1, c1, r2, c2) -> str:
    a = cell_name(r1, c1)
    return a if (r1, c1) == (r2, c2) else f"{a}:{cell_name(r2, c2)}"


def quote_sheet(name: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name) and not re.fullmatch(
            r"[A-Za-z]{1,3}\d+", name) and name.upper() not in ("TRUE", "FALSE"):
        return name
    return "'" + name.replace("'", "''") + "'"


def parse_cell(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\$?([A-Za-z]{1,3})\$?(\d+)", text.strip())
    if not m:
        raise FormulaSyntaxError(f"not a cell reference: {text!r}")
    return int(m.group(2)), col_number(m.group(1))


def parse_range(text: str) -> tuple[int, int, int, int]:
    """'B5:K25' or 'B5' -> (r1, c1, r2, c2), normalised."""
    parts = text.replace("$", "").split(":")
    if len(parts) == 1:
        r, c = parse_cell(parts[0])
        return r, c, r, c
    if len(parts) != 2:
        raise FormulaSyntaxError(f"not a range: {text!r}")
    (ra, ca), (rb, cb) = parse_cell(parts[0]), parse_cell(parts[1])
    return min(ra, rb), min(ca, cb), max(ra, rb), max(ca, cb)


# ---- tokens ----------------------------------------------------------------------------

@dataclass
class Tok:
    kind: str
    value: object
    pos: int
    extra: dict = field(default_factory=dict)


_WS = re.compile(r"\s+")
_STRING = re.compile(r'"((?:[^"]|"")*)"')
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_ERROR = re.compile("|".join(re.escape(e) for e in sorted(ERROR_CODES, key=len, reverse=True)),
                    re.I)
_QUOTED_SHEET = re.compile(r"'((?:[^']|'')+)'!")
_EXTERNAL = re.compile(r"\[(\d+)\]([A-Za-z_][A-Za-z0-9_. ]*)?!")
_SHEET = re.compile(r"([A-Za-z_\u00c0-\uffff][A-Za-z0-9_.\u00c0-\uffff]*)!")
_FUNC = re.compile(r"([A-Za-z_\\][A-Za-z0-9_.]*)\s*\(")
_AREA = re.compile(r"(\$?[A-Za-z]{1,3}\$?\d+)(?::(\$?[A-Za-z]{1,3}\$?\d+))?"
                   r"(?![A-Za-z0-9_.(\[!])")
_COLS = re.compile(r"(\$?[A-Za-z]{1,3}):(\$?[A-Za-z]{1,3})(?![A-Za-z0-9_.(\[!])")
_BOOL = re.compile(r"(TRUE|FALSE)(?![A-Za-z0-9_.(\[!])", re.I)
_IDENT = re.compile(r"[A-Za-z_\\\u00c0-\uffff][A-Za-z0-9_.\\\u00c0-\uffff]*")
_OPS = ("<>", "<=", ">=", "=", "<", ">", "+", "-", "*", "/", "^", "&", "%")


def _brackets(text: str, i: int) -> int:
    """Index just past the bracket group opening at text[i] == '['; ``'`` escapes
    the next character inside column names."""
    depth = 0
    j = i
    while j < len(text):
        ch = text[j]
        if ch == "'":
            j += 2
            continue
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise FormulaSyntaxError(f"unbalanced '[' at position {i + 1}")


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(text)
    while i < n:
        m = _WS.match(text, i)
        if m:
            i = m.end()
            continue
        ch = text[i]
        if ch == '"':
            m = _STRING.match(text, i)
            if not m:
                raise FormulaSyntaxError(f"unterminated text at position {i + 1}")
            toks.append(Tok("STR", m.group(1).replace('""', '"'), i))
            i = m.end()
            continue
        if ch == "#":
            prev = toks[-1] if toks else None
            if prev is not None and prev.kind in ("REF", "NAME") and i == prev.extra.get("end"):
                toks.append(Tok("HASH", "#", i))
                i += 1
                continue
            m = _ERROR.match(text, i)
            if not m:
                raise FormulaSyntaxError(f"unexpected '#' at position {i + 1}")
            toks.append(Tok("ERR", m.group(0).upper(), i))
            i = m.end()
            continue
        if ch in "(),{};":
            kind = {"(": "LP", ")": "RP", ",": "COMMA", "{": "LB", "}": "RB", ";": "SEMI"}[ch]
            toks.append(Tok(kind, ch, i))
            i += 1
            continue
        if ch == ":":
            toks.append(Tok("COLON", ":", i))
            i += 1
            continue
        op = next((o for o in _OPS if text.startswith(o, i)), None)
        if op:
            toks.append(Tok("OP", op, i))
            i += len(op)
            continue
        # a sheet or workbook qualifier, then what it qualifies
        sheet = external = None
        start = i
        m = _QUOTED_SHEET.match(text, i)
        if m:
            q = m.group(1).replace("''", "'")
            mm = re.fullmatch(r"(.*)\[([^\]]+)\](.*)", q)
            if mm:                      # 'C:\path\[book.xlsx]Sheet'!A1: another workbook
                external, sheet = mm.group(2), mm.group(3)
            else:
                sheet = q
            i = m.end()
        else:
            m = _EXTERNAL.match(text, i)
            if m:
                external, sheet = f"[{m.group(1)}]", m.group(2)
                i = m.end()
            else:
                m = _SHEET.match(text, i)
                if m and not _FUNC.match(text, i):
                    sheet = m.group(1)
                    i = m.end()
        qualified = i != start
        m = _FUNC.match(text, i)
        if m:
            name = m.group(1)
            if qualified:        # an add-in function: [1]!GLMM_POISSON( or 'x.xlam'!F(
                name = f"{text[start:i]}{name}"
            toks.append(Tok("FUNC", name, start))
            i = m.end()
            continue
        m = _AREA.match(text, i)
        if m:
            a = parse_cell(m.group(1))
            b = parse_cell(m.group(2)) if m.group(2) else a
            toks.append(Tok("REF", Ref(sheet, min(a[0], b[0]), min(a[1], b[1]),
                                       max(a[0], b[0]), max(a[1], b[1]), external=external,
                                       text=text[start:m.end()]),
                            start, {"end": m.end()}))
            i = m.end()
            continue
        m = _COLS.match(text, i)
        if m:
            ca, cb = col_number(m.group(1).lstrip("$")), col_number(m.group(2).lstrip("$"))
            toks.append(Tok("REF", Ref(sheet, 1, min(ca, cb), MAX_ROW, max(ca, cb),
                                       external=external, text=text[start:m.end()]),
                            start, {"end": m.end()}))
            i = m.end()
            continue
        if not qualified:
            m = _BOOL.match(text, i)
            if m:
                toks.append(Tok("BOOL", m.group(1).upper() == "TRUE", i))
                i = m.end()
                continue
            m = _NUMBER.match(text, i)
            if m:
                toks.append(Tok("NUM", float(m.group(0)), i))
                i = m.end()
                continue
        m = _IDENT.match(text, i)
        if m:
            name = m.group(0)
            j = m.end()
            if j < n and text[j] == "[":
                k = _brackets(text, j)
                toks.append(Tok("STRUCT", _struct_ref(name, text[j:k]), start,
                                {"end": k, "external": external}))
                i = k
                continue
            toks.append(Tok("NAME", Name(name, sheet), start,
                            {"end": j, "external": external}))
            i = j
            continue
        if ch == "[":             # a table-less structured reference: [@col], [col]
            k = _brackets(text, i)
            toks.append(Tok("STRUCT", _struct_ref("", text[i:k]), i, {"end": k}))
            i = k
            continue
        raise FormulaSyntaxError(f"unexpected {text[i:i + 10]!r} at position {i + 1}")
    return toks


_SPECIALS = {"#ALL": "#All", "#DATA": "#Data", "#HEADERS": "#Headers",
             "#TOTALS": "#Totals", "#THIS ROW": "#This Row"}


def _unescape(s: str) -> str:
    return re.sub(r"'(.)", r"\1", s).strip()


def _struct_ref(table: str, spec: str) -> StructRef:
    """Parse the bracket part of a structured reference ('[...]', outer brackets
    included)."""
    inner = spec[1:-1]
    items: list = []
    cols: list = []

    def item(tok: str):
        t = tok.strip()
        if t.startswith("@"):
            items.append("#This Row")
            rest = t[1:].strip()
            if rest.startswith("[") and rest.endswith("]"):
                rest = rest[1:-1]
            if rest:
                cols.append(_unescape(rest))
            return
        if t.upper() in _SPECIALS:
            items.append(_SPECIALS[t.upper()])
            return
        if t.startswith("#"):
            raise FormulaSyntaxError(f"unknown structured-reference item {t!r}")
        cols.append(_unescape(t))

    if not inner.strip():
        pass
    elif not inner.lstrip().startswith("["):
        item(inner)
    else:
        # a list of [item] or [col]:[col], separated by commas
        parts = []
        depth, cur = 0, ""
        j = 0
        while j < len(inner):
            ch = inner[j]
            if ch == "'" and j + 1 < len(inner):
                cur += inner[j:j + 2]
                j += 2
                continue
            if ch == "[":
                depth += 1
                if depth == 1:
                    j += 1
                    continue
            elif ch == "]":
                depth -= 1
                if depth == 0:
                    parts.append(("item", cur))
                    cur = ""
                    j += 1
                    continue
            elif depth == 0:
                if ch == ":":
                    parts.append(("colon", None))
                elif ch == ",":
                    parts.append(("comma", None))
                elif not ch.isspace():
                    raise FormulaSyntaxError(f"bad structured reference {spec!r}")
                j += 1
                continue
            cur += ch
            j += 1
        k = 0
        while k < len(parts):
            kind, val = parts[k]
            if kind == "item":
                if k + 2 < len(parts) and parts[k + 1][0] == "colon":
                    a, b = val, parts[k + 2][1]
                    if a.strip().startswith("#") or b is None or b.strip().startswith("#"):
                        raise FormulaSyntaxError(f"bad structured reference {spec!r}")
                    cols.extend([_unescape(a), _unescape(b)])
                    k += 3
                    continue
                item(val)
            k += 1
    if len(cols) > 2:
        raise FormulaSyntaxError(f"bad structured reference {spec!r}")
    columns = None
    if cols:
        columns = (cols[0], cols[-1])
    return StructRef(table, tuple(items), columns, f"{table}{spec}")


# ---- parser ----------------------------------------------------------------------------

class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0
        self.depth = 0

    def enter(self, levels: int = 1):
        self.depth += levels
        if self.depth > MAX_NESTING:
            raise FormulaSyntaxError(f"formula nested deeper than {MAX_NESTING} levels")

    def leave(self, levels: int = 1):
        self.depth -= levels

    def peek(self, k=0) -> Tok | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self) -> Tok:
        t = self.peek()
        if t is None:
            raise FormulaSyntaxError("the formula ends too early")
        self.i += 1
        return t

    def expect(self, kind: str) -> Tok:
        t = self.take()
        if t.kind != kind:
            raise FormulaSyntaxError(f"expected {kind} at position {t.pos + 1}, found "
                                     f"{t.value!r}")
        return t

    def is_op(self, *ops) -> bool:
        t = self.peek()
        return t is not None and t.kind == "OP" and t.value in ops

    def parse(self):
        node = self.expr()
        t = self.peek()
        if t is not None:
            raise FormulaSyntaxError(f"unexpected {t.value!r} at position {t.pos + 1}")
        return node

    def expr(self):
        node = self.concat()
        while self.is_op("=", "<>", "<", ">", "<=", ">="):
            op = self.take().value
            node = Binary(op, node, self.concat())
        return node

    def concat(self):
        node = self.additive()
        while self.is_op("&"):
            self.take()
            node = Binary("&", node, self.additive())
        return node

    def additive(self):
        node = self.term()
        while self.is_op("+", "-"):
            op = self.take().value
            node = Binary(op, node, self.term())
        return node

    def term(self):
        node = self.power()
        while self.is_op("*", "/"):
            op = self.take().value
            node = Binary(op, node, self.power())
        return node

    def power(self):
        node = self.unary()
        while self.is_op("^"):
            self.take()
            node = Binary("^", node, self.unary())
        return node

    def unary(self):
        if self.is_op("-", "+"):
            op = self.take().value
            self.enter()
            try:
                return Unary(op, self.unary())
            finally:
                self.leave()
        return self.postfix()

    def postfix(self):
        node = self.primary()
        k = 0
        while self.is_op("%"):
            self.take()
            k += 1
            self.enter()         # each % nests the node once more
            node = Percent(node)
        self.leave(k)
        return node

    def primary(self):
        t = self.take()
        k = t.kind
        if k == "NUM":
            return Num(t.value)
        if k == "STR":
            return Str(t.value)
        if k == "BOOL":
            return Bool(t.value)
        if k == "ERR":
            return ErrorLit(t.value)
        if k == "LP":
            self.enter()
            node = self.expr()
            self.expect("RP")
            self.leave()
            return node
        if k == "LB":
            return self.array()
        if k == "FUNC":
            return self.call(t.value)
        if k == "REF":
            ref = t.value
            nxt = self.peek()
            if nxt is not None and nxt.kind == "COLON":
                # A1:B2 written with a sheet on both ends, or ref:ref
                self.take()
                other = self.take()
                if other.kind != "REF":
                    raise FormulaSyntaxError(f"unsupported range at position {t.pos + 1}")
                o = other.value
                if (o.sheet or ref.sheet) != (ref.sheet or o.sheet):
                    raise FormulaSyntaxError("a range cannot span two sheets")
                ref = Ref(ref.sheet or o.sheet, min(ref.r1, o.r1), min(ref.c1, o.c1),
                          max(ref.r2, o.r2), max(ref.c2, o.c2), external=ref.external,
                          text=f"{ref.text}:{o.text}")
            if self.peek() is not None and self.peek().kind == "HASH":
                self.take()
                if (ref.r1, ref.c1) != (ref.r2, ref.c2):
                    raise FormulaSyntaxError("a spill reference (#) follows a single cell")
                ref = Ref(ref.sheet, ref.r1, ref.c1, ref.r2, ref.c2, True, ref.external,
                          ref.text + "#")
            return ref
        if k == "STRUCT":
            if t.extra.get("external"):
                return Ref(None, 0, 0, 0, 0, external=t.extra["external"], text=t.value.text)
            return t.value
        if k == "NAME":
            if t.extra.get("external"):
                return Ref(None, 0, 0, 0, 0, external=t.extra["external"], text=t.value.name)
            if self.peek() is not None and self.peek().kind == "HASH":
                raise FormulaSyntaxError("spill references of names are not supported")
            return t.value
        if k == "COMMA" or k == "RP":
            raise FormulaSyntaxError(f"missing value at position {t.pos + 1}")
        raise FormulaSyntaxError(f"unexpected {t.value!r} at position {t.pos + 1}")

    def call(self, name: str):
        args: list = []
        if self.peek() is not None and self.peek().kind == "RP":
            self.take()
            return Call(name, ())
        self.enter()
        while True:
            t = self.peek()
            if t is None:
                raise FormulaSyntaxError(f"missing ')' after the arguments of {name}")
            if t.kind in ("COMMA", "RP"):
                args.append(Missing())
            else:
                args.append(self.expr())
            t = self.take()
            if t.kind == "RP":
                break
            if t.kind != "COMMA":
                raise FormulaSyntaxError(f"expected ',' or ')' at position {t.pos + 1}")
        self.leave()
        return Call(name, tuple(args))

    def array(self):
        rows, row = [], []
        while True:
            neg = False
            if self.is_op("-"):
                self.take()
                neg = True
            t = self.take()
            if t.kind == "NUM":
                row.append(Num(-t.value if neg else t.value))
            elif neg:
                raise FormulaSyntaxError("only numbers can be negated in an array constant")
            elif t.kind == "STR":
                row.append(Str(t.value))
            elif t.kind == "BOOL":
                row.append(Bool(t.value))
            elif t.kind == "ERR":
                row.append(ErrorLit(t.value))
            else:
                raise FormulaSyntaxError("array constants hold numbers, text, TRUE/FALSE")
            t = self.take()
            if t.kind == "COMMA":
                continue
            rows.append(tuple(row))
            row = []
            if t.kind == "SEMI":
                continue
            if t.kind == "RB":
                break
            raise FormulaSyntaxError(f"unexpected {t.value!r} in an array constant")
        if len({len(r) for r in rows}) != 1:
            raise FormulaSyntaxError("the rows of an array constant differ in length")
        return ArrayLit(tuple(rows))


def parse(text: str):
    """Formula text (with or without the leading '=') -> syntax tree."""
    if not isinstance(text, str):
        raise FormulaSyntaxError("a formula is text")
    s = text.strip()
    if s.startswith("="):
        s = s[1:]
    if not s.strip():
        raise FormulaSyntaxError("the formula is empty")
    return _Parser(s).parse()


def children(node) -> tuple:
    """The nodes directly below ``node``, left to right."""
    if isinstance(node, Call):
        return node.args
    if isinstance(node, (Unary, Percent)):
        return (node.operand,)
    if isinstance(node, Binary):
        return (node.left, node.right)
    if isinstance(node, ArrayLit):
        return tuple(c for r in node.rows for c in r)
    return ()


def walk(node):
    """Every node of a tree, depth first (an explicit stack: a chain of thousands of
    operators, ``A1+A2+...``, is as deep as it is long)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(children(n)))


def functions_called(node) -> list[str]:
    """The function keys (see :func:`function_key`) a formula calls, in order."""
    return [function_key(n.name) for n in walk(node) if isinstance(n, Call)]
