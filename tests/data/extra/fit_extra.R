# Extra lme4 references for tests/engine/test_reference.py (forms the shared set lacks).
# Run from tests/data/extra:  Rscript fit_extra.R   (needs r-cran-lme4, r-cran-jsonlite)
# Writes NAME.json beside this script in the format of ../expected/*.json.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
pkg <- file.path("..", "..", "..", "xlglmm", "data")  # the package's data sets (their only copy)
rd <- function(f) read.csv(if (file.exists(file.path(pkg, f))) file.path(pkg, f) else file.path("..", f))
vc_df <- function(m) { v <- as.data.frame(VarCorr(m)); v$var1[is.na(v$var1)] <- ""; v$var2[is.na(v$var2)] <- ""; v }
save_fit <- function(name, expr) tryCatch(save_fit1(name, expr), error = function(e) cat(name, "ERROR:", conditionMessage(e), "\n"))
save_fit1 <- function(name, expr) {
  warns <- character(0)
  m <- withCallingHandlers(eval(expr), warning = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleWarning") },
                           message = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleMessage") })
  co <- coef(summary(m)); re <- ranef(m, condVar = TRUE)
  ranefs <- lapply(names(re), function(g) {
    r <- re[[g]]; pvs <- attr(r, "postVar"); if (!is.list(pvs)) pvs <- list(pvs)
    sds <- do.call(cbind, lapply(pvs, function(pv) { k <- dim(pv)[1]; matrix(t(sapply(seq_len(dim(pv)[3]), function(j) sqrt(diag(matrix(pv[, , j], nrow = k))))), ncol = k) }))
    list(group = g, levels = rownames(r), terms = colnames(r), values = unname(as.matrix(r)), cond_sd = unname(sds))
  })
  ll <- as.numeric(logLik(m))
  res <- list(name = name, call = paste(deparse(expr, width.cutoff = 500), collapse = " "),
    family = family(m)$family, link = family(m)$link, nAGQ = m@devcomp$dims[["nAGQ"]],
    fixef = as.list(fixef(m)), fixef_names = names(fixef(m)), se = unname(co[, 2]),
    vcov = unname(as.matrix(vcov(m))), theta = unname(getME(m, "theta")), varcorr = vc_df(m),
    logLik = ll, AIC = AIC(m), BIC = BIC(m), df_resid = df.residual(m), nobs = nobs(m),
    ngrps = as.list(ngrps(m)), ranef = ranefs, fitted_head = unname(head(fitted(m), 10)),
    singular = isSingular(m), messages = c(warns, m@optinfo$conv$lme4$messages),
    lme4_version = as.character(packageVersion("lme4")))
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), paste0(name, ".json"))
  cat(sprintf("%-24s logLik=%12.4f %s\n", name, ll, paste(warns, collapse = " | ")))
}
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
gt <- rd("grouseticks.csv"); for (v in c("YEAR", "LOCATION", "INDEX", "BROOD")) gt[[v]] <- factor(gt[[v]])
ws <- rd("workplace_safety.csv"); ws$plant <- factor(ws$plant); ws$month <- factor(ws$month)
gm <- rd("gamma_1e3.csv"); b4 <- rd("bin_slope_1e4.csv")
b4s <- b4[b4$g %in% sort(unique(b4$g))[1:60], ]
save_fit("cbpp_nagq0", quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, nAGQ = 0)))
save_fit("cbpp_probit", quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = "probit"))))
save_fit("cbpp_cloglog", quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial(link = "cloglog"))))
save_fit("cbpp_agq5", quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, nAGQ = 5)))
set.seed(11); gi <- data.frame(g = factor(sprintf("s%02d", sample(1:30, 600, TRUE))), x = round(runif(600), 4))
u <- rnorm(30, 0, 0.1); gi$y <- round(rgamma(600, shape = 4, rate = 4 * (0.8 + 0.3 * gi$x + u[as.integer(gi$g)])), 5)
write.csv(gi, "gamma_inverse.csv", row.names = FALSE)
save_fit("gamma_inverse", quote(glmer(y ~ x + (1 | g), data = gi, family = Gamma(link = "inverse"))))
save_fit("grouse_nested", quote(glmer(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION/BROOD), data = gt, family = poisson)))
save_fit("grouse_uncorr", quote(glmer(TICKS ~ YEAR + cHEIGHT + (cHEIGHT || LOCATION), data = gt, family = poisson)))
save_fit("grouse_interaction", quote(glmer(TICKS ~ YEAR * cHEIGHT + (1 | LOCATION), data = gt, family = poisson)))
save_fit("grouse_noint", quote(glmer(TICKS ~ 0 + YEAR + (1 | LOCATION), data = gt, family = poisson)))
save_fit("safety_weights", quote(glmer(incidents ~ training + (1 | plant), data = ws, family = poisson, weights = ifelse(month %in% c("1", "2"), 2, 1))))
save_fit("bin_slope_small", quote(glmer(y ~ x + z + (x | g), data = b4s, family = binomial)))
save_fit("bin_slope_nocorr_small", quote(glmer(y ~ x + z + (0 + x | g) + (1 | g), data = b4s, family = binomial)))
