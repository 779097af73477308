# lme4's profile confidence intervals (confint(method = "profile")) of the reference
# models, for tests/engine/test_profile*.py.  Run from the repository root:
#   Rscript tests/data/scripts/profile_ci.R
# Writes tests/data/profile_ci.json: per model, lme4's version, the 95% limits of every
# parameter (.sig01... on the SD scale, .sigma for an LMM, then the fixed effects;
# `names`: the same with oldNames = FALSE), the warnings (or the error, when lme4
# cannot profile the model), seconds.  For a glmer.nb fit lme4 profiles with the NB
# theta held at its estimate; `theta_profile` adds the 95% interval of theta itself
# from its profile log-likelihood (each point a glmer fit with theta held, the other
# parameters re-estimated), which lme4 does not provide.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
data_dir <- "xlglmm/data"
rd <- function(f) read.csv(file.path(data_dir, f))
td <- function(f) read.csv(file.path("tests/data", f))
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
grouse <- rd("grouseticks.csv"); grouse$YEAR <- factor(grouse$YEAR)
grouse$LOCATION <- factor(grouse$LOCATION)
safety <- rd("workplace_safety.csv"); safety$plant <- factor(safety$plant)
safety$month <- factor(safety$month)
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
penicillin <- td("Penicillin.csv")
binslope <- td("bin_slope_1e4.csv"); binslope$g <- factor(binslope$g)
gam <- td("gamma_1e3.csv"); gam$g <- factor(gam$g)
# a correlated Poisson GLMM lme4 can profile (bin_slope_1e4 makes it stop: "profiling
# detected new, lower deviance"), simulated here and written to tests/data
set.seed(14)
ng <- 40; per <- 8
b <- matrix(rnorm(2 * ng), ng) %*% chol(matrix(c(0.25, 0.06, 0.06, 0.09), 2))
slope <- data.frame(g = factor(sprintf("g%02d", rep(seq_len(ng), each = per))),
                    x = round(rnorm(ng * per), 4))
slope$y <- rpois(ng * per, exp(0.5 + 0.3 * slope$x + b[slope$g, 1] + b[slope$g, 2] * slope$x))
write.csv(slope, "tests/data/pois_slope_cor.csv", row.names = FALSE)
models <- list(
  cbpp_laplace = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                  cbpp, binomial),
  cbpp_agq25 = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                cbpp, binomial, nAGQ = 25),
  grouse_loc = function() glmer(TICKS ~ YEAR + (1 | LOCATION), grouse, poisson),
  safety_plant_laplace = function() glmer(incidents ~ training + (1 | plant),
                                          safety, poisson, offset = log(employees)),
  safety_crossed = function() glmer(incidents ~ training + (1 | plant) + (1 | month),
                                    safety, poisson, offset = log(employees)),
  sleep_reml = function() lmer(Reaction ~ Days + (Days | Subject), sleep),
  sleep_ml = function() lmer(Reaction ~ Days + (Days | Subject), sleep, REML = FALSE),
  penicillin_reml = function() lmer(diameter ~ 1 + (1 | plate) + (1 | sample), penicillin),
  pois_slope_cor = function() glmer(y ~ x + (x | g), slope, poisson),
  bin_slope_1e4 = function() glmer(y ~ x + z + (x | g), binslope, binomial),
  grouse_nb = function() glmer.nb(TICKS ~ YEAR + (1 | LOCATION), data = grouse),
  gamma_log = function() glmer(y ~ x + (1 | g), gam, Gamma(link = "log")))

# The 95% interval of a glmer.nb fit's theta from its profile log-likelihood.
theta_profile <- function(m, level = 0.95) {
  th <- getME(m, "glmer.nb.theta")
  ll_at <- function(lt) as.numeric(logLik(glmer(formula(m), m@frame,
                                                family = negative.binomial(exp(lt)))))
  llmax <- as.numeric(logLik(m))
  crit <- qchisq(level, 1) / 2
  f <- function(lt) llmax - ll_at(lt) - crit
  lo <- uniroot(f, c(log(th) - 4, log(th)), tol = 1e-7)$root
  hi <- uniroot(f, c(log(th), log(th) + 4), tol = 1e-7)$root
  list(theta = th, lower = exp(lo), upper = exp(hi))
}

out <- list()
for (name in names(models)) {
  m <- models[[name]]()
  warns <- character(0)
  t0 <- proc.time()[["elapsed"]]
  ci <- tryCatch(withCallingHandlers(confint(m, method = "profile", level = 0.95),
                                     warning = function(w) {
                                       warns <<- c(warns, conditionMessage(w))
                                       invokeRestart("muffleWarning")}),
                 error = function(e) conditionMessage(e))
  secs <- proc.time()[["elapsed"]] - t0
  res <- list(lme4 = as.character(packageVersion("lme4")))
  if (is.character(ci)) {
    res$error <- ci
  } else {
    res$parameters <- rownames(ci)
    res$names <- rownames(confint(m, method = "Wald", oldNames = FALSE))
    res$lower <- unname(ci[, 1])
    res$upper <- unname(ci[, 2])
  }
  res$warnings <- warns
  res$seconds <- secs
  res$logLik <- as.numeric(logLik(m))
  res$REML <- isREML(m)
  if (inherits(m, "glmerMod") && grepl("Negative Binomial", family(m)$family))
    res$theta_profile <- theta_profile(m)
  out[[name]] <- res
  cat(sprintf("%-22s %6.1f s %s\n", name, secs, if (is.character(ci)) ci else ""))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/data/profile_ci.json")
