# performance's model checks (check_overdispersion, r2_nakagawa, icc) on the reference
# models, for tests/engine/test_checks.py.  Run from the repository root:
#   Rscript tests/data/scripts/checks.R
# Writes tests/data/checks.json: per model the versions of lme4, performance and
# insight, the lme4 estimates, variance components and fitted values (so that a
# test can evaluate the checks at lme4's optimum, where its own differs),
# performance's dispersion test (count and binomial models only), R2 and ICC, the
# warnings they gave, and the null model's intercept that the log-link
# distribution-specific variance uses (insight's null model; for glmer.nb a glmer
# with theta held at the fit's estimate).  For a model with an offset
# it also writes `rate_scale`: R2 and ICC with that variance taken at mu =
# exp(null intercept) * mean(exp(offset)), the expected count at the mean exposure
# (performance takes exp(null intercept), the rate per unit of exposure).
suppressPackageStartupMessages({library(lme4); library(performance); library(jsonlite)})
rd <- function(f) read.csv(file.path("xlglmm/data", f))
td <- function(f) read.csv(file.path("tests/data", f))
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
grouse <- rd("grouseticks.csv"); grouse$YEAR <- factor(grouse$YEAR)
grouse$LOCATION <- factor(grouse$LOCATION); grouse$INDEX <- factor(grouse$INDEX)
safety <- rd("workplace_safety.csv"); safety$plant <- factor(safety$plant)
safety$month <- factor(safety$month)
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
gam <- td("gamma_1e3.csv"); gam$g <- factor(gam$g)
models <- list(
  safety_crossed = function() glmer(incidents ~ training + offset(log(employees)) +
                                      (1 | plant) + (1 | month), safety, poisson),
  grouse_loc = function() glmer(TICKS ~ YEAR + (1 | LOCATION), grouse, poisson),
  grouse_loc_index = function() glmer(TICKS ~ YEAR + (1 | LOCATION) + (1 | INDEX), grouse,
                                      poisson),
  cbpp_laplace = function() glmer(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                  cbpp, binomial),
  gamma_log = function() glmer(y ~ x + (1 | g), gam, Gamma(link = "log")),
  grouse_nb = function() glmer.nb(TICKS ~ YEAR + (1 | LOCATION), grouse),
  tiny_a = function() glmer(y ~ x + (1 | g), td("tiny_a.csv"), poisson),   # singular
  sleep_reml = function() lmer(Reaction ~ Days + (Days | Subject), sleep)
)
vc_rows <- function(m) { v <- as.data.frame(VarCorr(m)); v <- v[v$grp != "Residual", ]
  v$var2[is.na(v$var2)] <- ""; v[, c("grp", "var1", "var2", "vcov")] }
quiet <- function(expr, warns) withCallingHandlers(expr, warning = function(w) {
  warns$x <- c(warns$x, conditionMessage(w)); invokeRestart("muffleWarning") })
out <- list()
for (nm in names(models)) {
  m <- models[[nm]]()
  warns <- new.env(); warns$x <- character(0)
  res <- list(lme4 = as.character(packageVersion("lme4")),
              performance = as.character(packageVersion("performance")),
              insight = as.character(packageVersion("insight")),
              fixef = unname(fixef(m)), theta = unname(getME(m, "theta")),
              sigma = sigma(m), nobs = nobs(m), df_residual = df.residual(m),
              varcorr = vc_rows(m), fitted = unname(fitted(m)))
  if (inherits(m, "glmerMod") && grepl("Negative Binomial", family(m)$family))
    res$nb_theta <- getME(m, "glmer.nb.theta")
  fam <- insight::model_info(m)
  if (fam$is_count || (fam$is_binomial && !fam$is_bernoulli)) {
    od <- quiet(check_overdispersion(m), warns)
    res$overdispersion <- list(chisq = od$chisq_statistic, ratio = od$dispersion_ratio,
                               df = od$residual_df, p = od$p_value)
  }
  r2 <- quiet(r2_nakagawa(m), warns)
  ic <- quiet(icc(m), warns)
  v <- quiet(insight::get_variance(m), warns)
  res$r2 <- list(conditional = unname(r2$R2_conditional), marginal = unname(r2$R2_marginal))
  # a zero variance: performance gives no ICC and no random variance (null here)
  res$icc <- if (is.data.frame(ic)) list(adjusted = ic$ICC_adjusted,
                                         conditional = ic$ICC_conditional) else
    list(adjusted = NA, conditional = NA)
  res$variances <- list(fixed = v$var.fixed,
                        random = if (is.null(v$var.random)) NA else v$var.random,
                        distribution = v$var.distribution, dispersion = v$var.dispersion)
  if (fam$is_count && fam$link_function == "log") {
    null <- quiet(insight::null_model(m), warns)
    res$null_intercept <- unname(fixef(null))
    off <- model.offset(model.frame(m))
    if (!is.null(off)) {
      mu <- exp(unname(fixef(null))) * mean(exp(off))
      vv <- if (!is.null(res$nb_theta)) mu * (1 + mu / res$nb_theta) else mu
      dist <- log1p(vv / mu^2)
      tot <- v$var.fixed + v$var.random + dist
      res$rate_scale <- list(mu = mu, distribution = dist,
                             r2 = list(conditional = (v$var.fixed + v$var.random) / tot,
                                       marginal = v$var.fixed / tot),
                             icc = list(adjusted = v$var.random / (v$var.random + dist),
                                        conditional = v$var.random / tot))
    }
  }
  res$warnings <- unique(warns$x)
  out[[nm]] <- res
  cat(nm, "done\n")
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           "tests/data/checks.json")
