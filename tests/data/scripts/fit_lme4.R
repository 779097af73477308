# Fits the reference models with lme4 and writes one JSON per model to ../expected/.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
d <- file.path(here, ".."); out <- file.path(here, "..", "expected")  # tests/data, tests/data/expected
pkg <- file.path(here, "..", "..", "..", "xlglmm", "data")  # the package's data sets (their only copy)
rd <- function(f) { p <- if (file.exists(file.path(pkg, f))) file.path(pkg, f) else file.path(d, f)
  if (grepl("gz$", f)) read.csv(gzfile(p)) else read.csv(p) }
vc_df <- function(m) { v <- as.data.frame(VarCorr(m)); v$var1[is.na(v$var1)] <- ""; v$var2[is.na(v$var2)] <- ""; v }
save_fit <- function(name, expr, data_file, reps = 3) {
  warns <- character(0)
  times <- numeric(0)
  m <- NULL
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    m <- withCallingHandlers(eval(expr), warning = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleWarning") },
                             message = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleMessage") })
    times <- c(times, proc.time()[["elapsed"]] - t0)
  }
  s <- summary(m)
  co <- coef(s)
  re <- ranef(m, condVar = TRUE)
  ranefs <- lapply(names(re), function(g) {
    r <- re[[g]]; pvs <- attr(r, "postVar"); if (!is.list(pvs)) pvs <- list(pvs)
    sds <- do.call(cbind, lapply(pvs, function(pv) {
      k <- dim(pv)[1]; matrix(t(sapply(seq_len(dim(pv)[3]), function(j) sqrt(diag(matrix(pv[, , j], nrow = k))))), ncol = k)
    }))
    list(group = g, levels = rownames(r), terms = colnames(r), values = unname(as.matrix(r)), cond_sd = unname(sds))
  })
  aic <- AIC(m); bic <- BIC(m); ll <- as.numeric(logLik(m))
  res <- list(
    name = name, data = data_file, call = paste(deparse(expr, width.cutoff = 500), collapse = " "),
    family = family(m)$family, link = family(m)$link, nAGQ = m@devcomp$dims[["nAGQ"]],
    fixef = as.list(fixef(m)), fixef_names = names(fixef(m)), se = unname(co[, 2]), z = unname(co[, 3]),
    p = if (ncol(co) >= 4) unname(co[, 4]) else NULL,
    vcov = unname(as.matrix(vcov(m))), theta = unname(getME(m, "theta")),
    varcorr = vc_df(m), logLik = ll, AIC = aic, BIC = bic, deviance_summary = -2 * ll,
    df_resid = df.residual(m), nobs = nobs(m), ngrps = as.list(ngrps(m)),
    ranef = ranefs, fitted_head = unname(head(fitted(m), 10)),
    singular = isSingular(m), messages = c(warns, m@optinfo$conv$lme4$messages),
    optimizer = m@optinfo$optimizer, seconds_median = median(times), seconds_all = times,
    lme4_version = as.character(packageVersion("lme4"))
  )
  if (inherits(m, "glmerMod") && grepl("Negative Binomial", family(m)$family)) res$nb_theta <- getME(m, "glmer.nb.theta")
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"), file.path(out, paste0(name, ".json")))
  cat(sprintf("%-32s logLik=%12.4f  t=%.3fs  %s\n", name, ll, median(times), paste(warns, collapse = " | ")))
}
models <- list(
  cbpp_laplace = list(quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial)), "cbpp.csv"),
  cbpp_agq25 = list(quote(glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp, family = binomial, nAGQ = 25)), "cbpp.csv"),
  grouse_loc = list(quote(glmer(TICKS ~ YEAR + (1 | LOCATION), family = poisson, data = gt)), "grouseticks.csv"),
  grouse_loc_agq25 = list(quote(glmer(TICKS ~ YEAR + (1 | LOCATION), family = poisson, data = gt, nAGQ = 25)), "grouseticks.csv"),
  grouse_loc_index = list(quote(glmer(TICKS ~ YEAR + (1 | LOCATION) + (1 | INDEX), family = poisson, data = gt)), "grouseticks.csv"),
  grouse_slope = list(quote(glmer(TICKS ~ YEAR + (YEAR | LOCATION), family = poisson, data = gt)), "grouseticks.csv"),
  grouse_height_brood = list(quote(glmer(TICKS ~ YEAR + cHEIGHT + (1 | BROOD) + (1 | LOCATION), family = poisson, data = gt)), "grouseticks.csv"),
  safety_crossed = list(quote(glmer(incidents ~ training + offset(log(employees)) + (1 | plant) + (1 | month), family = poisson, data = ws)), "workplace_safety.csv"),
  safety_plant_laplace = list(quote(glmer(incidents ~ training + offset(log(employees)) + (1 | plant), family = poisson, data = ws)), "workplace_safety.csv"),
  safety_plant_agq25 = list(quote(glmer(incidents ~ training + offset(log(employees)) + (1 | plant), family = poisson, data = ws, nAGQ = 25)), "workplace_safety.csv"),
  safety_crossed_nb = list(quote(glmer.nb(incidents ~ training + offset(log(employees)) + (1 | plant) + (1 | month), data = ws)), "workplace_safety.csv"),
  tiny_a = list(quote(glmer(y ~ x + (1 | g), family = poisson, data = rd("tiny_a.csv"))), "tiny_a.csv"),
  tiny_b = list(quote(glmer(y ~ x + (x | g), family = poisson, data = rd("tiny_b.csv"))), "tiny_b.csv"),
  tiny_c = list(quote(glmer(y ~ x + (1 | g), family = poisson, data = rd("tiny_c.csv"))), "tiny_c.csv"),
  tiny_d = list(quote(glmer(y ~ 0 + x + (1 | g), family = poisson, data = rd("tiny_d.csv"))), "tiny_d.csv"),
  gamma_log = list(quote(glmer(y ~ x + (1 | g), family = Gamma(link = "log"), data = gm)), "gamma_1e3.csv"),
  pois_1e3 = list(quote(glmer(y ~ x1 + x2 + x3 + offset(log(exposure)) + (1 | g1) + (1 | g2), family = poisson, data = p3)), "pois_crossed_1e3.csv"),
  pois_1e4 = list(quote(glmer(y ~ x1 + x2 + x3 + offset(log(exposure)) + (1 | g1) + (1 | g2), family = poisson, data = p4)), "pois_crossed_1e4.csv"),
  bin_slope_1e4 = list(quote(glmer(y ~ x + z + (x | g), family = binomial, data = b4)), "bin_slope_1e4.csv")
)
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
gt <- rd("grouseticks.csv"); gt$YEAR <- factor(gt$YEAR); gt$LOCATION <- factor(gt$LOCATION); gt$INDEX <- factor(gt$INDEX); gt$BROOD <- factor(gt$BROOD)
ws <- rd("workplace_safety.csv"); ws$plant <- factor(ws$plant); ws$month <- factor(ws$month)
gm <- rd("gamma_1e3.csv")
p3 <- rd("pois_crossed_1e3.csv"); p4 <- rd("pois_crossed_1e4.csv"); b4 <- rd("bin_slope_1e4.csv")
if (length(args)) models <- models[args]
for (nm in names(models)) {
  reps <- if (grepl("1e5", nm)) 1 else 3
  tryCatch(save_fit(nm, models[[nm]][[1]], models[[nm]][[2]], reps), error = function(e) cat(nm, "ERROR:", conditionMessage(e), "\n"))
}
