"""The whitelist formula grammar: what it accepts, what it refuses, and that no
formula text is ever evaluated."""
import pytest

from xlglmm.engine.formula import FormulaError, Variable, parse_formula


def labels(terms):
    """Terms (tuples of Variables) as tuples of R's labels."""
    return [tuple(str(v) for v in t) for t in terms]


def test_fixed_terms_in_r_order():
    f = parse_formula("y ~ a*b + c")
    assert labels(f.terms) == [("a",), ("b",), ("c",), ("a", "b")]
    assert f.intercept


@pytest.mark.parametrize("text", ["y ~ 0 + x", "y ~ x - 1", "y ~ -1 + x", "y ~ x + 0"])
def test_no_intercept_forms(text):
    f = parse_formula(text)
    assert not f.intercept and labels(f.terms) == [("x",)]


def test_random_term_forms():
    f = parse_formula("y ~ x + (1|g) + (x|h) + (0 + x|k) + (x||m) + (1|a/b) + (1|a:b)")
    r = f.random
    # lme4's order for a nested grouping: (1|a/b) -> (1|b:a) + (1|a)
    assert [labels(rt.groups) for rt in r] == [[("g",)], [("h",)], [("k",)], [("m",)],
                                               [("b", "a"), ("a",)], [("a", "b")]]
    assert r[1].intercept and labels(r[1].terms) == [("x",)] and r[1].correlated
    assert not r[2].intercept
    assert not r[3].correlated


def test_cbind_and_offsets():
    f = parse_formula("cbind(s, n - s) ~ period + offset(log(e)) + (1|herd)")
    assert f.response.successes == Variable("s") and f.response.total_minus == Variable("n")
    assert f.offsets == [Variable("e", "log")]
    f2 = parse_formula("cbind(s, f) ~ 1 + (1|g)")
    assert f2.response.failures == Variable("f") and f2.terms == []


def test_powers_nesting_and_transforms():
    f = parse_formula("y ~ (a + b + c)^2 + log(x) + factor(k) + (1|g)")
    t = labels(f.terms)
    assert ("a", "b") in t and ("b", "c") in t and ("a", "b", "c") not in t
    assert ("log(x)",) in t and ("factor(k)",) in t
    assert (Variable("x", "log"),) in f.terms and (Variable("k", "factor"),) in f.terms
    assert labels(parse_formula("y ~ a/b + (1|g)").terms) == [("a",), ("a", "b")]


def test_backquoted_names():
    f = parse_formula("`incidents per month` ~ `is trained` + (1|`plant id`)")
    assert f.response.name == Variable("incidents per month")
    assert f.random[0].groups == [(Variable("plant id"),)]


CODE_LIKE = [
    "__import__('os').system('echo hacked') ~ x + (1|g)",
    "y ~ __import__('os') + (1|g)",
    "y ~ x + eval('1') + (1|g)",
    "y ~ exec(x) + (1|g)",
    "y ~ x; import os",
    "y ~ x + (lambda: 1) + (1|g)",
    "y ~ os.system(x) + (1|g)",
    "y ~ x[0] + (1|g)",
    "y ~ x.__class__ + (1|g)",
    "y ~ {x} + (1|g)",
    "y ~ x + 'text' + (1|g)",
    "y ~ x + (1|g) + offset(__import__('os'))",
]


@pytest.mark.parametrize("text", CODE_LIKE)
def test_code_is_rejected_not_run(text, monkeypatch):
    """Code-like text either fails to parse, or parses into plain column names that
    the data do not have; nothing is ever evaluated."""
    import builtins
    import pandas as pd
    import xlglmm
    called = []
    monkeypatch.setattr(builtins, "eval", lambda *a, **k: called.append(a))
    monkeypatch.setattr(builtins, "exec", lambda *a, **k: called.append(a))
    monkeypatch.setattr(builtins, "__import__", _guarded_import(called))
    df = pd.DataFrame({"y": [1, 2, 3, 4, 5, 6.0], "x": [1, 2, 3, 1, 2, 3.0],
                       "g": list("aabbcc")})
    with pytest.raises((xlglmm.FormulaError, xlglmm.DesignError)) as err:
        xlglmm.glmer(text, df, family="poisson")
    assert called == []
    if isinstance(err.value, xlglmm.DesignError):
        assert "is not in the data" in str(err.value)


def _guarded_import(called):
    import builtins
    real = builtins.__import__

    def imp(name, *a, **k):
        if name in ("os", "subprocess"):
            called.append(name)
        return real(name, *a, **k)
    return imp


@pytest.mark.parametrize("text,msg", [
    ("y ~ x + (1|g", "expected ')'"),
    ("y x", "exactly one ~"),
    ("y ~ x ~ z", "exactly one ~"),
    ("y ~ 2", "only 0 or 1"),
    ("y ~ (1|g) * x", "cannot be combined"),
    ("y ~ x + ((1|g)|h)", "top level"),
    ("", "empty"),
    ("y ~ x +", "expected a term"),
    ("y ~ sin(x)", "not allowed"),
])
def test_errors_say_what_is_wrong(text, msg):
    with pytest.raises(FormulaError, match=msg.replace("(", r"\(").replace(")", r"\)")):
        parse_formula(text)


def test_huge_or_deep_formulas_are_refused_quickly():
    with pytest.raises(FormulaError):
        parse_formula("y ~ " + "(" * 500 + "x" + ")" * 500)
    with pytest.raises(FormulaError):
        parse_formula("y ~ " + " + ".join(f"x{i}" for i in range(2000)))
