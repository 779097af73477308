# R's reading of the formulas in ../formula_terms_cases.txt (one per line, written by
# python tests/engine/test_formula_grammar.py) -> ../formula_terms.json: for each formula
# lme4's fixed part (nobars) as terms() sees it -- term labels, intercept, response,
# offsets -- and lme4's random-effects terms, findbars(expandDoubleVerts(f)): each
# bar's own term labels, intercept and grouping factor.
# Run: Rscript tests/data/scripts/formula_terms.R   (R 4.2.2, lme4 1.1-35.x)
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
d <- file.path(here, "..")
texts <- readLines(file.path(d, "formula_terms_cases.txt"))
dep <- function(e) paste(deparse(e, width.cutoff = 500L), collapse = " ")
one <- function(text) {
  f <- as.formula(text, env = globalenv())
  tt <- terms(nobars(f))
  vars <- vapply(as.list(attr(tt, "variables"))[-1], dep, "")
  off <- attr(tt, "offset")
  bars <- lapply(findbars(expandDoubleVerts(f)), function(b) {
    lt <- terms(as.formula(call("~", b[[2]]), env = globalenv()))
    list(terms = I(attr(lt, "term.labels")), intercept = attr(lt, "intercept"),
         group = gsub("[()]", "", dep(b[[3]])))
  })
  list(formula = text, response = dep(f[[2]]), terms = I(attr(tt, "term.labels")),
       intercept = attr(tt, "intercept"),
       offsets = I(if (is.null(off)) character(0) else vars[off]),
       bars = if (length(bars)) bars else I(list()))
}
out <- lapply(texts, function(t) tryCatch(one(t), error = function(e) list(formula = t, error = conditionMessage(e))))
writeLines(toJSON(out, auto_unbox = TRUE, pretty = 1, digits = NA),
           file.path(d, "formula_terms.json"))
cat("wrote", length(out), "formulas\n")
