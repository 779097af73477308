# lme4's leave-one-level-out influence (influence.merMod, dfbetas, cooks.distance) on
# two reference models, for tests/engine/test_influence.py.  Run from the repository
# root:
#   Rscript tests/data/scripts/influence.R
# Writes tests/data/influence.json: per model the lme4 version, the grouping factor,
# its levels in lme4's order (the data's order of first appearance) with the rows
# each one has, the full fit's fixed effects, variance components (lme4's
# var.cov.comps: sigma^2, then each term's variances and covariances) and
# covariance of the fixed effects, and per level: the fixed effects and variance
# components without that level, the standard errors of that refit's fixed effects
# (the square roots of the diagonal of its vcov, by which DFBETAS divide), whether
# that refit converged (lme4's own flag), its DFBETAS and Cook's distance as lme4
# computes them.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
rd <- function(f) read.csv(file.path("xlglmm/data", f))
safety <- rd("workplace_safety.csv"); safety$plant <- factor(safety$plant)
safety$month <- factor(safety$month)
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
models <- list(
  safety_crossed = list(
    fit = function() glmer(incidents ~ training + (1 | plant) + (1 | month), safety,
                           poisson, offset = log(employees)),
    data = safety, group = "plant"),
  sleep_reml = list(
    fit = function() lmer(Reaction ~ Days + (Days | Subject), sleep),
    data = sleep, group = "Subject"))
mat <- function(m) unname(lapply(seq_len(nrow(m)), function(i) unname(m[i, ])))
out <- list()
for (nm in names(models)) {
  spec <- models[[nm]]
  m <- spec$fit()
  inf <- influence(m, groups = spec$group, data = spec$data)
  levels <- as.character(inf$deleted)
  g <- as.character(spec$data[[spec$group]])
  out[[nm]] <- list(
    lme4 = as.character(packageVersion("lme4")), group = spec$group,
    levels = levels, rows = unname(sapply(levels, function(l) sum(g == l))),
    fixed_names = names(fixef(m)), fixed = unname(inf$fixed.effects),
    var_cov_names = names(inf$var.cov.comps), var_cov = unname(inf$var.cov.comps),
    vcov = mat(inf$vcov),
    fixed_without = mat(inf[[paste0("fixed.effects[-", spec$group, "]")]]),
    var_cov_without = mat(inf[[paste0("var.cov.comps[-", spec$group, "]")]]),
    se_without = unname(lapply(inf[[paste0("vcov[-", spec$group, "]")]],
                               function(v) unname(sqrt(diag(v))))),
    converged = unname(inf$converged),
    dfbetas = mat(dfbetas(inf)), cooks_distance = unname(cooks.distance(inf)))
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE),
           "tests/data/influence.json")
