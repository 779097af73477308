# lme4's profile confidence intervals (confint(method = "profile")) of the reference
# GLMMs, for tests/engine/test_profile.py.  Run from the repository root:
#   Rscript tests/data/scripts/profile_ci.R
# Writes tests/data/profile_ci.json: per model, lme4's version, the 95% limits of every
# parameter (.sig01... on the SD scale, then the fixed effects), the warnings, seconds.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
data_dir <- "xlglmm/data"
rd <- function(f) read.csv(file.path(data_dir, f))
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
grouse <- rd("grouseticks.csv"); grouse$YEAR <- factor(grouse$YEAR)
grouse$LOCATION <- factor(grouse$LOCATION)
safety <- rd("workplace_safety.csv"); safety$plant <- factor(safety$plant)
safety$month <- factor(safety$month)
models <- list(
  cbpp_laplace = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                  cbpp, binomial),
  cbpp_agq25 = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                cbpp, binomial, nAGQ = 25),
  grouse_loc = function() glmer(TICKS ~ YEAR + (1 | LOCATION), grouse, poisson),
  safety_plant_laplace = function() glmer(incidents ~ training + (1 | plant),
                                          safety, poisson, offset = log(employees)),
  safety_crossed = function() glmer(incidents ~ training + (1 | plant) + (1 | month),
                                    safety, poisson, offset = log(employees)))
out <- list()
for (name in names(models)) {
  m <- models[[name]]()
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  ci <- withCallingHandlers(confint(m, method = "profile", level = 0.95),
                            warning = function(w) {
                              warns <<- c(warns, conditionMessage(w))
                              invokeRestart("muffleWarning")})
  secs <- proc.time()[["elapsed"]] - t0
  out[[name]] <- list(lme4 = as.character(packageVersion("lme4")),
                      parameters = rownames(ci), lower = unname(ci[, 1]),
                      upper = unname(ci[, 2]), warnings = warns, seconds = secs,
                      logLik = as.numeric(logLik(m)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/profile_ci.json")
