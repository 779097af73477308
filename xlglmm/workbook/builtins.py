"""The Excel functions ``xlglmm recalc`` evaluates besides the xlglmm ones, so that
the helper cells around the blocks stay consistent: :data:`BUILTINS`, Excel's name ->
``impl(engine, *arguments)``.

A cell's call: the evaluator (:mod:`xlglmm.workbook.evaluator`) evaluates the
arguments and hands them over as they are -- a range not read yet
(:class:`xlglmm.workbook.excel_values.RangeVal`), an array, one value, ``MISSING`` for
an omitted one -- so each function reads a range the cheapest way it can: SUM, COUNT,
COUNTIF, MIN, MAX, AVERAGE, RANK, SMALL and LARGE through its non-blank cells only
(``engine.stored``), the others that read values cell by cell (``engine.grid``).
Values follow Excel's rules (:mod:`xlglmm.workbook.excel_values`), and comparisons of
texts are charged to the work meter by their length, so COUNTIF and MATCH with
wildcards (:func:`wildcard_matcher`, which never backtracks) stay bounded.
"""
from __future__ import annotations

import math
import re

from .book import Unsupported
from .excel_values import (MISSING, RangeVal, approx_equal, broadcast, compare, num_result,
                           rank_key, spend, to_bool, to_number)
from ..sheet.calling import ErrorValue as XLError, is_grid


# ---- Excel functions evaluated besides the xlglmm ones ---------------------------------

def _flat(ev, args):
    """Values of aggregate arguments: from ranges/arrays only numbers count; direct
    scalars are coerced.  Returns (numbers, first error).  A range is read through
    its non-blank cells only (:meth:`Engine.stored`), so ``SUM(A:XFD)`` costs the
    cells that hold something, not 17 billion."""
    nums = []
    for a in args:
        if a is MISSING:
            continue
        if isinstance(a, RangeVal):
            a = [ev.stored(a)[0]]
        if is_grid(a):
            for row in a:
                for v in row:
                    if isinstance(v, XLError):
                        return nums, v
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        nums.append(float(v))
        else:
            x = to_number(a)
            if isinstance(x, XLError):
                return nums, x
            nums.append(x)
    return nums, None


def _map1(fn):
    def impl(ev, x=MISSING, *rest):
        if rest:
            raise Unsupported("#VALUE!", "too many arguments")

        def one(v):
            n = to_number(v)
            if isinstance(n, XLError):
                return n
            try:
                return num_result(fn(n))
            except (ValueError, OverflowError, ZeroDivisionError):
                return XLError("#NUM!")
        return broadcast(one, ev.value(x))
    return impl


def _ln(x):
    if x <= 0:
        raise ValueError
    return math.log(x)


def _log(ev, x, base=10.0):
    def one(v, b):
        v, b = to_number(v), to_number(10.0 if b is MISSING else b)
        if isinstance(v, XLError):
            return v
        if isinstance(b, XLError):
            return b
        if v <= 0 or b <= 0 or b == 1:
            return XLError("#NUM!") if b != 1 else XLError("#DIV/0!")
        return math.log(v) / math.log(b)
    return broadcast(one, ev.value(x), ev.value(base))


def _sqrt(x):
    if x < 0:
        raise ValueError
    return math.sqrt(x)


def _round(ev, x, digits=0.0):
    def one(v, d):
        v, d = to_number(v), to_number(0.0 if d is MISSING else d)
        if isinstance(v, XLError):
            return v
        if isinstance(d, XLError):
            return d
        d = int(d)
        m = 10.0 ** d
        r = math.floor(abs(v) * m + 0.5 + 1e-9) / m
        return math.copysign(r, v) if r else 0.0
    return broadcast(one, ev.value(x), ev.value(digits))


def _if(ev, cond, a=True, b=False):
    a = 0.0 if a is MISSING else a          # IF(c,,x) and IF(c,x,) give 0
    b = 0.0 if b is MISSING else b

    def one(c, x, y):
        t = to_bool(c)
        if isinstance(t, XLError):
            return t
        return x if t else y
    return broadcast(one, ev.value(cond), ev.value(a), ev.value(b))


def _sum(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else float(sum(nums))


def _min(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else (min(nums) if nums else 0.0)


def _max(ev, *args):
    nums, err = _flat(ev, args)
    return err if err is not None else (max(nums) if nums else 0.0)


def _average(ev, *args):
    nums, err = _flat(ev, args)
    if err is not None:
        return err
    return sum(nums) / len(nums) if nums else XLError("#DIV/0!")


def _count(ev, *args):
    n = 0
    for a in args:
        if isinstance(a, RangeVal):
            a = [ev.stored(a)[0]]
        if is_grid(a):
            n += sum(1 for row in a for v in row
                     if isinstance(v, (int, float)) and not isinstance(v, bool))
        elif not isinstance(to_number(a), XLError) and a is not MISSING:
            n += 1
    return float(n)


def _kth(largest):
    def impl(ev, array, k):
        nums, err = _flat(ev, [array if isinstance(array, RangeVal) or is_grid(array)
                               else [[array]]])
        if err is not None:
            return err

        def one(kv):
            kk = to_number(kv)
            if isinstance(kk, XLError):
                return kk
            kk = math.ceil(kk)
            if not 1 <= kk <= len(nums):
                return XLError("#NUM!")
            spend(len(nums))
            return sorted(nums, reverse=largest)[kk - 1]
        return broadcast(one, ev.value(k))
    return impl


def _values_1d(ev, v):
    if isinstance(v, RangeVal):
        v = ev.grid(v)
    if not is_grid(v):
        return [v]
    if len(v) == 1:
        return list(v[0])
    if len(v[0]) == 1:
        return [r[0] for r in v]
    return None


def _match(ev, x, lookup, mtype=1.0):
    vals = _values_1d(ev, lookup)
    if vals is None:
        return XLError("#N/A")
    mt = to_number(1.0 if mtype is MISSING else mtype)
    if isinstance(mt, XLError):
        return mt

    chars = _text_chars(vals)

    def one(target):
        if isinstance(target, XLError):
            return target
        if isinstance(target, str) and len(target) > MAX_CRITERION:
            return XLError("#VALUE!")                  # as Excel: at most 255 characters
        spend(len(vals) + _text_work(chars, target if isinstance(target, str) else ""))
        kt = rank_key(target)
        if mt == 0:
            if isinstance(target, str) and any(ch in target for ch in "*?~"):
                matches = wildcard_matcher(target)        # Excel: wildcards in text
                for i, v in enumerate(vals):
                    if isinstance(v, str) and not isinstance(v, XLError) and matches(v):
                        return float(i + 1)
                return XLError("#N/A")
            for i, v in enumerate(vals):
                if rank_key(v) == kt:
                    return float(i + 1)
            return XLError("#N/A")
        best = None
        for i, v in enumerate(vals):
            kv = rank_key(v)
            if kv is None or kt is None or kv[0] != kt[0]:
                continue
            if (mt > 0 and kv <= kt) or (mt < 0 and kv >= kt):
                best = i
            else:
                break
        return XLError("#N/A") if best is None else float(best + 1)
    return broadcast(one, ev.value(x))


def _index(ev, array, row=MISSING, col=MISSING):
    r = 0 if row is MISSING else to_number(ev.value(row))
    c = 0 if col is MISSING else to_number(ev.value(col))
    if isinstance(r, XLError):
        return r
    if isinstance(c, XLError):
        return c
    r, c = int(r), int(c)
    if isinstance(array, RangeVal):
        nr, nc = array.shape
        if col is MISSING and nr == 1 and nc > 1:
            r, c = 0, r
        if r < 0 or c < 0 or r > nr or c > nc:
            return XLError("#REF!")
        r1, r2 = (array.r1, array.r2) if r == 0 else (array.r1 + r - 1,) * 2
        c1, c2 = (array.c1, array.c2) if c == 0 else (array.c1 + c - 1,) * 2
        return RangeVal(array.sheet, r1, c1, r2, c2)
    g = array if is_grid(array) else [[array]]
    nr, nc = len(g), len(g[0])
    if col is MISSING and nr == 1 and nc > 1:
        r, c = 0, r
    if r < 0 or c < 0 or r > nr or c > nc:
        return XLError("#REF!")
    rows = g if r == 0 else [g[r - 1]]
    out = [list(row) if c == 0 else [row[c - 1]] for row in rows]
    return out[0][0] if len(out) == 1 and len(out[0]) == 1 else out


def _rank(ev, x, ref, order=0.0):
    nums, err = _flat(ev, [ref])
    if err is not None:
        return err
    o = to_number(0.0 if order is MISSING else order)

    def one(v):
        n = to_number(v)
        if isinstance(n, XLError):
            return n
        spend(len(nums))
        if n not in nums:               # RANK compares exactly (Excel and Calc alike)
            return XLError("#N/A")
        if o == 0:
            return float(1 + sum(1 for m in nums if m > n))
        return float(1 + sum(1 for m in nums if m < n))
    return broadcast(one, ev.value(x))


# COUNTIF's criterion and MATCH's lookup value: as in Excel, a text longer than this
# gives #VALUE!
MAX_CRITERION = 255
# Comparing texts (wildcards included) costs one step per this many pairs of a
# cell's character and the criterion's (measured: at worst 0.5 ns a pair, in re)
TEXT_PAIRS_PER_STEP = 1000


def _text_chars(vals) -> int:
    """The characters of the texts among ``vals`` (for :func:`_text_work`)."""
    return sum(len(v) for v in vals if isinstance(v, str))


def _text_work(chars: int, crit) -> int:
    """Steps charged for comparing texts of ``chars`` characters in all with the
    criterion ``crit``: a wildcard match is (text x pattern) at worst, a plain
    comparison reads each text (lower-cased) once."""
    if not isinstance(crit, str) or not chars:
        return 0
    return chars * max(1, len(crit)) // TEXT_PAIRS_PER_STEP


def _criterion(crit):
    """COUNTIF's criterion -> a predicate on cell values (wildcards * and ?)."""
    if isinstance(crit, bool):
        return lambda v: isinstance(v, bool) and v == crit
    if isinstance(crit, (int, float)):
        return lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and \
            approx_equal(float(v), float(crit))
    text = "" if crit is None else str(crit)
    m = re.match(r"^(<=|>=|<>|<|>|=)?(.*)$", text, re.S)
    op, operand = m.group(1) or "=", m.group(2)
    try:
        num = float(operand)
    except ValueError:
        num = None
    if num is not None:
        def numeric(v):
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                return op == "<>"
            return compare(op, float(v), num)
        return numeric
    if operand == "" and op in ("=", "<>"):
        return (lambda v: v is None or v == "") if op == "=" else \
            (lambda v: not (v is None or v == ""))
    if op in ("=", "<>"):
        matches = wildcard_matcher(operand)

        def textual(v):
            hit = isinstance(v, str) and not isinstance(v, XLError) and matches(v)
            return hit if op == "=" else not hit
        return textual
    return lambda v: isinstance(v, str) and not isinstance(v, XLError) and \
        compare(op, v, operand) is True


def wildcard_matcher(pattern: str):
    """Excel's wildcard comparison for COUNTIF and MATCH: ``pattern`` against a whole
    text, ignoring case; ``*`` any run of characters, ``?`` one character, ``~*``
    ``~?`` ``~~`` the character itself.  Returns a predicate on texts.

    Never backtracks: the pattern is cut at its stars into pieces of fixed length
    (literals and ``?``); the first piece must match at the start, the last at the
    end, and each piece between at its leftmost place after the one before -- the
    leftmost place is never worse -- so a text of n characters costs at most n times
    the pattern's length, done by ``re`` on quantifier-free pieces (a pattern such
    as ``*a*a*a*b`` against 2,000 a's was a catastrophic backtrack as one regex)."""
    pieces, cur, i = [], [], 0
    p = pattern.lower()
    while i < len(p):
        ch = p[i]
        if ch == "~" and i + 1 < len(p) and p[i + 1] in "*?~":
            cur.append(re.escape(p[i + 1]))
            i += 2
            continue
        if ch == "*":
            pieces.append(cur)
            cur = []
        else:
            cur.append("." if ch == "?" else re.escape(ch))
        i += 1
    pieces.append(cur)
    sizes = [len(x) for x in pieces]
    rx = [re.compile("".join(x), re.S) for x in pieces]
    if len(pieces) == 1:
        return lambda text: len(text.lower()) == sizes[0] and \
            rx[0].fullmatch(text.lower()) is not None
    first, last = rx[0], rx[-1]
    middle = [r for r, k in zip(rx[1:-1], sizes[1:-1]) if k]
    least = sizes[0] + sizes[-1]

    def matches(text):
        t = text.lower()
        end = len(t) - sizes[-1]
        if len(t) < least or first.match(t) is None or last.fullmatch(t, end) is None:
            return False
        pos = sizes[0]
        for r in middle:
            m = r.search(t, pos, end)
            if m is None:
                return False
            pos = m.end()
        return True
    return matches


def _countif(ev, rng, crit):
    if isinstance(rng, RangeVal):
        vals, n = ev.stored(rng)           # the non-blank cells; the rest are blank
        blanks = n - len(vals)
    elif is_grid(rng):
        vals, blanks = [v for row in rng for v in row], 0
    else:
        return XLError("#VALUE!")

    chars = _text_chars(vals)

    def one(c):
        if isinstance(c, XLError):
            return c
        if isinstance(c, str) and len(c) > MAX_CRITERION:
            return XLError("#VALUE!")                  # as Excel: at most 255 characters
        pred = _criterion(None if c is MISSING else c)
        spend(len(vals) + 1 + _text_work(chars, c))
        hits = sum(1 for v in vals if pred(v))
        return float(hits + (blanks if blanks and pred(None) else 0))
    return broadcast(one, ev.value(crit))


def _rows(ev, v):
    if isinstance(v, RangeVal):
        return float(v.shape[0])
    return float(len(v)) if is_grid(v) else 1.0


def _columns(ev, v):
    if isinstance(v, RangeVal):
        return float(v.shape[1])
    return float(len(v[0])) if is_grid(v) else 1.0


def _anchorarray(ev, v):
    if not isinstance(v, RangeVal) or v.shape != (1, 1):
        return XLError("#REF!")
    return ev.spill_range(v.sheet, v.r1, v.c1, f"ANCHORARRAY({v})")


def _is(pred):
    def impl(ev, v):
        return broadcast(lambda x: bool(pred(x)), ev.value(v))
    return impl


def _bools(ev, args):
    vals = []
    for a in args:
        a = ev.value(a)
        for x in ([v for r in a for v in r] if is_grid(a) else [a]):
            if x is None or x is MISSING:
                continue
            b = to_bool(x)
            if isinstance(b, XLError):
                return b
            vals.append(b)
    return vals if vals else XLError("#VALUE!")


def _all(ev, *args):
    vals = _bools(ev, args)
    return vals if isinstance(vals, XLError) else all(vals)


def _any(ev, *args):
    vals = _bools(ev, args)
    return vals if isinstance(vals, XLError) else any(vals)


def _not(ev, v):
    return broadcast(lambda x: (lambda b: b if isinstance(b, XLError) else not b)(to_bool(x)),
                      ev.value(v))


BUILTINS = {
    "LN": _map1(_ln), "LOG": _log, "LOG10": _map1(lambda x: _ln(x) / math.log(10)),
    "EXP": _map1(math.exp), "SQRT": _map1(_sqrt), "ABS": _map1(abs), "ROUND": _round,
    "IF": _if, "SUM": _sum, "MIN": _min, "MAX": _max, "AVERAGE": _average, "COUNT": _count,
    "SMALL": _kth(False), "LARGE": _kth(True), "INDEX": _index, "MATCH": _match,
    "RANK": _rank, "RANK.EQ": _rank, "COUNTIF": _countif, "ROWS": _rows, "COLUMNS": _columns,
    "ANCHORARRAY": _anchorarray, "NA": lambda ev: XLError("#N/A"),
    "ISNUMBER": _is(lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)),
    "ISTEXT": _is(lambda x: isinstance(x, str) and not isinstance(x, XLError)),
    "ISBLANK": _is(lambda x: x is None), "ISERROR": _is(lambda x: isinstance(x, XLError)),
    "AND": _all, "OR": _any, "NOT": _not,
}
