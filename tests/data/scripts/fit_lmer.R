# LMM (lmer) and glmer.nb references, written like fit_lme4.R.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
d <- file.path(here, ".."); out <- file.path(here, "..", "expected")  # tests/data, tests/data/expected
pkg <- file.path(here, "..", "..", "..", "xlglmm", "data")  # the package's data sets (their only copy)
write.csv(sleepstudy, file.path(pkg, "sleepstudy.csv"), row.names = FALSE)
write.csv(Penicillin, file.path(d, "Penicillin.csv"), row.names = FALSE)
write.csv(Dyestuff, file.path(d, "Dyestuff.csv"), row.names = FALSE)
gt <- grouseticks; gt$YEAR <- factor(gt$YEAR)
save_fit <- function(name, expr, data_file, reps = 3) {
  warns <- character(0); times <- numeric(0)
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    m <- withCallingHandlers(eval(expr), warning = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleWarning") },
                             message = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleMessage") })
    times <- c(times, proc.time()[["elapsed"]] - t0)
  }
  co <- coef(summary(m)); ll <- logLik(m)
  v <- as.data.frame(VarCorr(m)); v$var1[is.na(v$var1)] <- ""; v$var2[is.na(v$var2)] <- ""
  res <- list(name = name, data = data_file, call = paste(deparse(expr, width.cutoff = 500), collapse = " "),
    REML = isREML(m), fixef = as.list(fixef(m)), se = unname(co[, 2]), vcov = unname(as.matrix(vcov(m))),
    theta = unname(getME(m, "theta")), varcorr = v, sigma = sigma(m), logLik = as.numeric(ll),
    AIC = AIC(m), BIC = BIC(m), REMLcrit = if (isREML(m)) REMLcrit(m) else NULL, deviance = if (!isREML(m)) deviance(m) else NULL,
    nobs = nobs(m), ngrps = as.list(ngrps(m)), singular = isSingular(m), messages = warns,
    seconds_median = median(times), lme4_version = as.character(packageVersion("lme4")))
  if (grepl("Negative Binomial", family(m)$family)) res$nb_theta <- getME(m, "glmer.nb.theta")
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), file.path(out, paste0(name, ".json")))
  cat(sprintf("%-24s logLik=%12.4f t=%.3fs %s\n", name, as.numeric(ll), median(times), paste(warns, collapse = " | ")))
}
save_fit("sleep_reml", quote(lmer(Reaction ~ Days + (Days | Subject), sleepstudy)), "sleepstudy.csv")
save_fit("sleep_ml", quote(lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE)), "sleepstudy.csv")
save_fit("penicillin_reml", quote(lmer(diameter ~ 1 + (1 | plate) + (1 | sample), Penicillin)), "Penicillin.csv")
save_fit("dyestuff_reml", quote(lmer(Yield ~ 1 + (1 | Batch), Dyestuff)), "Dyestuff.csv")
save_fit("grouse_nb", quote(glmer.nb(TICKS ~ YEAR + (1 | LOCATION), data = gt)), "grouseticks.csv")
