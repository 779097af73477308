# lme4 fits of formulas that reuse a variable (issue 18 items 3 and 9) on a small
# simulated table, written to ../formula_fits.csv (the data) and
# ../formula_fits.json (logLik, fixed effects with names, random-effect SDs and
# numbers of levels, warnings).  Run: Rscript tests/data/scripts/formula_fits.R
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
d <- file.path(here, "..")
set.seed(18)
n <- 64
dat <- data.frame(year = rep(1:8, each = 8), g = rep(c("a", "b", "c", "d"), 16),
                  x = round(runif(n, 0, 2), 3), e = round(runif(n, 1, 4), 3))
u <- rnorm(8, 0, 0.4)[dat$year]
dat$y <- rpois(n, dat$e * exp(0.3 + 0.05 * (dat$year - 4) + 0.4 * dat$x + u))
dat$n <- dat$y + rpois(n, 6) + 1
dat$s <- rbinom(n, dat$n, plogis(-0.5 + 0.3 * dat$x + u))
write.csv(dat, file.path(d, "formula_fits.csv"), row.names = FALSE)
models <- list(
  year_trend = list(f = y ~ year + (1 | year), family = "poisson"),
  cbind_total_on_rhs = list(f = cbind(s, n - s) ~ n + (1 | g), family = "binomial"),
  offset_and_term = list(f = y ~ x + offset(log(e)) + log(e) + (1 | g), family = "poisson"),
  response_on_rhs = list(f = y ~ y + x + (1 | year), family = "poisson"),
  response_in_interaction = list(f = s ~ x + s:x + (1 | year), family = "poisson")
)
out <- list()
for (nm in names(models)) {
  m <- models[[nm]]
  warns <- character(0)
  fit <- withCallingHandlers(glmer(m$f, dat, family = m$family),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(w) invokeRestart("muffleMessage"))
  vc <- as.data.frame(VarCorr(fit))
  out[[nm]] <- list(formula = paste(deparse(m$f), collapse = ""), family = m$family,
                    logLik = as.numeric(logLik(fit)), fixef = as.list(fixef(fit)),
                    re_sd = vc$sdcor, ngroups = as.list(ngrps(fit)), warnings = I(warns))
}
writeLines(toJSON(out, auto_unbox = TRUE, pretty = 1, digits = NA), file.path(d, "formula_fits.json"))
cat("wrote", length(out), "fits\n")
