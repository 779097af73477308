# glmmTMB references for issue 17 (the exact Laplace likelihood, dispersion by maximum likelihood,
# the new families): fits each model below with glmmTMB (ML, the default Laplace approximation) and
# writes one JSON per model to ../glmmtmb/NAME.json.  See ../glmmtmb/README.md for the fields.
# Run from anywhere:  Rscript tests/data/scripts/fit_glmmtmb.R [NAME ...]
# (needs r-cran-glmmtmb, r-cran-lme4, r-cran-jsonlite; the simulated CSVs are read, not redrawn,
# when they exist: delete tests/data/beta_sim.csv to draw it again.)
suppressPackageStartupMessages({library(glmmTMB); library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
here <- dirname(sub("--file=", "", grep("--file=", commandArgs(FALSE), value = TRUE)))
d <- file.path(here, "..")                                  # tests/data
out <- file.path(d, "glmmtmb")
pkg <- file.path(here, "..", "..", "..", "xlglmm", "data")  # the package's data sets (their only copy)
rd <- function(f) read.csv(if (file.exists(file.path(pkg, f))) file.path(pkg, f) else file.path(d, f))
ctrl <- glmmTMBControl(optCtrl = list(iter.max = 1e4, eval.max = 1e4))
versions <- list(R = R.version.string, glmmTMB = as.character(packageVersion("glmmTMB")),
                 TMB = as.character(packageVersion("TMB")), lme4 = as.character(packageVersion("lme4")))

# ---- data ------------------------------------------------------------------------------------
cbpp <- rd("cbpp.csv"); cbpp$period <- factor(cbpp$period); cbpp$herd <- factor(cbpp$herd)
gt <- rd("grouseticks.csv"); for (v in c("YEAR", "LOCATION", "INDEX", "BROOD")) gt[[v]] <- factor(gt[[v]])
ws <- rd("workplace_safety.csv"); ws$plant <- factor(ws$plant); ws$month <- factor(ws$month)
gm <- rd("gamma_1e3.csv"); gm$g <- factor(gm$g)
# its first 600 rows: the data on which xlglmm's first dispersion search stepped to log phi = 7632
gm600 <- droplevels(gm[1:600, ])
gi <- rd("extra/gamma_inverse.csv"); gi$g <- factor(gi$g)
# Gamma, log link, correlated random intercept and slope, 8 fixed effects: the benchmark shape
# "gamma_slope_8fe" (benchmarks/make_data.py, numpy seed 15: 600 rows, 30 groups, shape 4),
# written once by  python -c "from make_data import make_peer; make_peer('gamma_slope_8fe').to_csv(
# '../tests/data/gamma_slope_sim.csv', index=False)"  run in benchmarks/.
gs <- rd("gamma_slope_sim.csv"); gs$f <- factor(gs$f); gs$g <- factor(gs$g)
# Beta: 40 groups x 8 rows, x ~ N(0, 1), logit mu = -0.5 + 0.8 x + b, b ~ N(0, 0.6^2),
# y ~ Beta(mu phi, (1 - mu) phi) with precision phi = 12.
beta_csv <- file.path(d, "beta_sim.csv")
if (!file.exists(beta_csv)) {
  set.seed(20261130)
  g <- rep(seq_len(40), each = 8)
  x <- rnorm(320)
  b <- rnorm(40, 0, 0.6)
  mu <- plogis(-0.5 + 0.8 * x + b[g])
  y <- rbeta(320, mu * 12, (1 - mu) * 12)
  sim <- data.frame(y = signif(y, 10), x = signif(x, 10), g = sprintf("g%02d", g))
  stopifnot(all(sim$y > 0 & sim$y < 1))
  write.csv(sim, beta_csv, row.names = FALSE)
}
bs <- rd("beta_sim.csv"); bs$g <- factor(bs$g)
# Zero-inflated NB2 with an interior zero-inflation model (the grouseticks ZINB fits sit on the boundary):
# 50 groups x 12 rows, x ~ N(0, 1), w ~ Bernoulli(1/2), log mu = 0.5 + 0.6 x + b, b ~ N(0, 0.5^2),
# y = 0 with probability plogis(-1.2 + 0.9 w), else NB2(mu, theta = 2).
zinb_csv <- file.path(d, "glmmtmb", "zinb_sim.csv")
if (!file.exists(zinb_csv)) {
  set.seed(20261201)
  g <- rep(seq_len(50), each = 12); n <- length(g)
  x <- rnorm(n); w <- rbinom(n, 1, 0.5); b <- rnorm(50, 0, 0.5)
  mu <- exp(0.5 + 0.6 * x + b[g]); pz <- plogis(-1.2 + 0.9 * w)
  y <- ifelse(runif(n) < pz, 0, rnbinom(n, size = 2, mu = mu))
  write.csv(data.frame(y = y, x = signif(x, 10), w = w, g = sprintf("g%02d", g)), zinb_csv, row.names = FALSE)
}
zs <- rd("glmmtmb/zinb_sim.csv"); zs$g <- factor(zs$g)

# ---- what glmmTMB's dispersion parameter means, family by family ---------------------------
# (from ?sigma.glmmTMB and ?family_glmmTMB in glmmTMB 1.1.5, the R source of sigma.glmmTMB, and
# checked numerically below on each model's fixed-effects-only analogue: "density_check")
disp_meaning <- list(
  Gamma = list(
    sigma = "sigma(fit) = 1/sqrt(shape) = exp(-betad/2): the coefficient of variation of y given the random effects",
    betad = "fixef(fit)$disp = betad = log(shape) = -2 log(sigma)",
    variance = "var(y | b) = mu^2 / shape = sigma^2 mu^2; the GLM dispersion phi = sigma^2 = 1/shape (lme4's sigma(m)^2 is a moment estimate of this phi)",
    density = "y | b ~ Gamma(shape = 1/sigma^2, scale = mu sigma^2)",
    docs_sigma = "Gamma Internally, glmmTMB fits Gamma responses by fitting a mean and a shape parameter; sigma is estimated as (1/sqrt(shape)), which will typically be close (but not identical to) that estimated by stats:::sigma.default, which uses sqrt(deviance/df.residual)",
    docs_family = "Gamma (from base R) phi is the shape parameter. V=mu*phi  [sic: ?family_glmmTMB; the variance is mu^2/shape, as the density check confirms]"),
  nbinom2 = list(
    sigma = "sigma(fit) = theta = exp(betad)",
    betad = "fixef(fit)$disp = betad = log(theta)",
    variance = "var(y | b) = mu + mu^2/theta (larger theta, less variance)",
    density = "y | b ~ NegBin(size = theta, mean = mu)  (R: dnbinom(y, size = theta, mu = mu))",
    docs_sigma = "nbinom2 returns a dispersion parameter (usually denoted theta or k); in contrast to most other families, larger theta corresponds to a lower variance which is mu(1+mu/theta).",
    docs_family = "nbinom2 Negative binomial distribution: quadratic parameterization (Hardin & Hilbe 2007). V=mu*(1+mu/phi) = mu+mu^2/phi."),
  nbinom1 = list(
    sigma = "sigma(fit) = phi (alpha in Hardin & Hilbe) = exp(betad)",
    betad = "fixef(fit)$disp = betad = log(phi)",
    variance = "var(y | b) = mu (1 + phi)",
    density = "y | b ~ NegBin(size = mu/phi, mean = mu)  (R: dnbinom(y, size = mu/phi, mu = mu))",
    docs_sigma = "nbinom1 returns a dispersion parameter (usually denoted alpha as in Hardin and Hilbe (2007)): such that the variance equals mu(1+alpha).",
    docs_family = "nbinom1 Negative binomial distribution: linear parameterization (Hardin & Hilbe 2007). V=mu*(1+phi)"),
  beta = list(
    sigma = "sigma(fit) = phi, the precision = exp(betad)",
    betad = "fixef(fit)$disp = betad = log(phi)",
    variance = "var(y | b) = mu (1 - mu) / (1 + phi)",
    density = "y | b ~ Beta(mu phi, (1 - mu) phi)",
    docs_sigma = "beta returns the value of phi, where the conditional variance is mu*(1-mu)/(1+phi) (i.e., increasing phi decreases the variance.) This parameterization follows Ferrari and Cribari-Neto (2004) (and the betareg package)",
    docs_family = "beta Beta distribution: parameterization of Ferrari and Cribari-Neto (2004) and the betareg package (Cribari-Neto and Zeileis 2010); V=mu*(1-mu)/(phi+1)"),
  betabinomial = list(
    sigma = "sigma(fit) = phi, the precision of the Beta law of the success probability = exp(betad)",
    betad = "fixef(fit)$disp = betad = log(phi)",
    variance = "var(k | b) = n mu (1 - mu) (phi + n) / (phi + 1)  (k successes of n)",
    density = "p | b ~ Beta(mu phi, (1 - mu) phi), k | p ~ Binomial(n, p): P(k) = choose(n, k) B(k + mu phi, n - k + (1 - mu) phi) / B(mu phi, (1 - mu) phi)",
    docs_sigma = "betabinomial This family uses the same parameterization (governing the Beta distribution that underlies the binomial probabilities) as beta.",
    docs_family = "betabinomial Beta-binomial distribution: parameterized according to Morris (1997). V=mu*(1-mu)*(n*(phi+n)/(phi+1))"))

# log density of the response given the linear predictor (mu) and sigma(fit), per the meanings above
logdens <- function(fam, y, n, mu, s) switch(fam,
  poisson = dpois(y, mu, log = TRUE),
  binomial = dbinom(y, n, mu, log = TRUE),
  Gamma = dgamma(y, shape = 1 / s^2, scale = mu * s^2, log = TRUE),
  nbinom2 = dnbinom(y, size = s, mu = mu, log = TRUE),
  nbinom1 = dnbinom(y, size = mu / s, mu = mu, log = TRUE),
  beta = dbeta(y, mu * s, (1 - mu) * s, log = TRUE),
  betabinomial = lchoose(n, y) + lbeta(y + mu * s, n - y + (1 - mu) * s) - lbeta(mu * s, (1 - mu) * s),
  stop("no density for ", fam))

# Fit the model without its random effects and compare glmmTMB's logLik with the sum of the log
# densities written above: evidence for what sigma(fit) means in this family (and for the zero
# inflation: P(0) = pz + (1 - pz) f(0)).
density_check <- function(fit) {
  fam <- family(fit)$family
  f0 <- lme4::nobars(formula(fit))
  cl <- getCall(fit); cl$formula <- f0; cl$control <- NULL; cl$start <- NULL
  m0 <- suppressWarnings(eval(cl))
  resp <- model.response(model.frame(m0))
  if (is.matrix(resp)) { y <- resp[, 1]; n <- resp[, 1] + resp[, 2] } else { y <- resp; n <- rep(1, length(y)) }
  mu <- predict(m0, type = "conditional")
  pz <- predict(m0, type = "zprob")
  s <- sigma(m0)
  ld <- logdens(fam, y, n, mu, s)
  ll <- sum(ifelse(y == 0, log(pz + (1 - pz) * exp(ld)), log(1 - pz) + ld))
  list(model = paste(deparse(f0, width.cutoff = 500), collapse = " "), sigma = s,
       exp_betad = if (length(fixef(m0)$disp)) unname(exp(fixef(m0)$disp)) else NULL,
       logLik_glmmTMB = as.numeric(logLik(m0)), logLik_from_densities = ll,
       difference = as.numeric(logLik(m0)) - ll)
}

# glmmTMB's log-likelihood at lme4's estimates (same fixed effects, random-effect SDs and
# correlations; NB theta as lme4's; the Gamma shape, which lme4 does not estimate by ML, maximised):
# when this equals lme4's logLik the two compute the same function and any gap in logLik is
# where the optimisers stopped. Scalar random effects and 2 x 2 blocks only. Changes fit$obj's
# state: call it last.
at_lme4 <- function(fit, beta, sds, corrs, nb_theta = NULL) {
  par <- fit$fit$par
  vcf <- VarCorr(fit)$cond
  if (any(vapply(vcf, ncol, 1L) > 2)) return(NULL)
  th <- unlist(lapply(names(vcf), function(g) {
    s <- sds[[g]]; if (length(s) == 1) return(log(s))
    r <- corrs[[g]]; c(log(s), r / sqrt(1 - r^2))   # glmmTMB's 2 x 2 "us": corr = t / sqrt(1 + t^2)
  }))
  own <- unlist(lapply(names(vcf), function(g) { m <- vcf[[g]]; if (ncol(m) == 1) log(attr(m, "stddev"))
    else { r <- attr(m, "correlation")[1, 2]; c(log(attr(m, "stddev")), r / sqrt(1 - r^2)) } }))
  stopifnot(max(abs(own - par[names(par) == "theta"])) < 1e-6)   # the mapping reproduces fit's own theta
  par[names(par) == "beta"] <- beta[names(fixef(fit)$cond)]
  par[names(par) == "theta"] <- th
  fam <- family(fit)$family
  if (fam == "nbinom2" && !is.null(nb_theta)) par[names(par) == "betad"] <- log(nb_theta)
  how <- "glmmTMB's -fit$obj$fn at lme4's fixed effects and random-effect SDs/correlations"
  if (fam == "Gamma") {
    f <- function(bd) { p <- par; p[names(p) == "betad"] <- bd; fit$obj$fn(p) }
    bd0 <- fit$fit$par[["betad"]]
    o <- optimize(f, c(bd0 - 4, bd0 + 4), tol = 1e-10)
    par[names(par) == "betad"] <- o$minimum
    how <- paste(how, "with the Gamma shape maximised (betad =", signif(o$minimum, 8), ")")
  } else if (fam == "nbinom2") how <- paste(how, "and lme4's theta")
  list(how = how, logLik = -fit$obj$fn(par))
}

# vectors stay JSON arrays at length 1 (auto_unbox would make them scalars)
A <- function(x) I(unname(x))
named_matrix <- function(v) if (is.null(v) || !length(v)) NULL else list(names = A(rownames(v)), matrix = unname(as.matrix(v)))

# ---- one model -------------------------------------------------------------------------------
save_fit <- function(name, expr, data_file, lme4_ref = NULL, lme4_expr = NULL, note = NULL, also = NULL, reps = 3) {
  warns <- character(0)
  catch <- function(e) withCallingHandlers(eval(e, globalenv()),
    warning = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleWarning") },
    message = function(w) { warns <<- unique(c(warns, conditionMessage(w))); invokeRestart("muffleMessage") })
  times <- numeric(0); fit <- NULL
  for (i in seq_len(reps)) {
    t0 <- proc.time()[["elapsed"]]
    fit <- catch(expr)
    times <- c(times, proc.time()[["elapsed"]] - t0)
  }
  fam <- family(fit)$family
  fe <- fixef(fit)
  vc <- vcov(fit)
  vfull <- vcov(fit, full = TRUE)
  se_of <- function(v) if (is.null(v) || !length(v)) numeric(0) else unname(sqrt(diag(as.matrix(v))))
  zi <- if (length(fe$zi)) list(fixef = as.list(fe$zi), names = A(names(fe$zi)), se = A(se_of(vc$zi)),
                                z = A(fe$zi / se_of(vc$zi))) else NULL
  # random effects: SDs and correlations per grouping factor (names as in VarCorr)
  vcr <- VarCorr(fit)$cond
  varcorr <- lapply(names(vcr), function(g) {
    m <- vcr[[g]]; sdv <- attr(m, "stddev"); cr <- attr(m, "correlation")
    list(group = g, terms = A(names(sdv)), sd = A(sdv), variance = A(diag(as.matrix(m))),
         corr = unname(as.matrix(cr)))
  })
  re <- ranef(fit, condVar = TRUE)$cond
  r1 <- re[[1]]; cv <- attr(r1, "condVar")
  k <- ncol(r1)
  cond_sd <- t(sapply(seq_len(nrow(r1)), function(j) sqrt(diag(matrix(cv[, , j], nrow = k)))))
  if (k == 1) cond_sd <- matrix(cond_sd, ncol = 1)
  ranef1 <- list(group = names(re)[1], levels = A(rownames(r1)), terms = A(colnames(r1)),
                 values = unname(as.matrix(r1)), cond_sd = unname(cond_sd))
  # dispersion
  betad <- fe$disp
  disp <- if (length(betad)) {
    nm <- names(betad); i <- match("d~(Intercept)", rownames(vfull))
    c(list(family = fam, sigma = sigma(fit), betad = unname(betad),
           betad_se = if (is.na(i) || !(vfull[i, i] >= 0)) NA else sqrt(vfull[i, i])),
      switch(fam, Gamma = list(shape = 1 / sigma(fit)^2, phi = sigma(fit)^2),
             nbinom2 = list(theta = sigma(fit)), list(phi = sigma(fit))),
      list(meaning = disp_meaning[[fam]]))
  } else list(family = fam, sigma = sigma(fit), meaning = "no dispersion parameter: sigma(fit) = 1")
  dcheck <- tryCatch(density_check(fit), error = function(e) list(error = conditionMessage(e)))
  # convergence evidence, then a refit started at this optimum (parameters and conditional modes)
  conv <- list(code = fit$fit$convergence, message = fit$fit$message, iterations = fit$fit$iterations,
               evaluations = as.list(fit$fit$evaluations), pdHess = fit$sdr$pdHess,
               max_abs_grad = max(abs(fit$sdr$gradient.fixed)), gradient = A(fit$sdr$gradient.fixed),
               warnings = A(warns))
  pl <- glmmTMB:::getParList(fit); attr(pl, "check.passed") <- NULL
  pl <- pl[vapply(pl, length, 1L) > 0]
  rwarns <- character(0)
  refit <- withCallingHandlers(update(fit, start = pl),
    warning = function(w) { rwarns <<- unique(c(rwarns, conditionMessage(w))); invokeRestart("muffleWarning") })
  ll <- as.numeric(logLik(fit)); ll2 <- as.numeric(logLik(refit))
  # the Newton step still to go, -H^{-1} g (vcov(full = TRUE) is H^{-1} in the order of fit$fit$par),
  # in units of each parameter's SE: how far the reported estimates can be from the exact optimum
  step <- -drop(vfull %*% fit$sdr$gradient.fixed)
  conv$newton_step <- A(step)
  conv$newton_step_over_se <- A(step / sqrt(diag(vfull)))
  conv$newton_step_names <- A(rownames(vfull))
  conv$newton_logLik_gain <- 0.5 * sum(fit$sdr$gradient.fixed * -step)
  refit_info <- list(how = "update(fit, start = its own parameters and conditional modes), same control",
                     logLik = ll2, logLik_change = ll2 - ll, moved = abs(ll2 - ll) > 1e-6,
                     max_abs_par_change = max(abs(refit$fit$par - fit$fit$par)),
                     code = refit$fit$convergence, message = refit$fit$message,
                     iterations = refit$fit$iterations, pdHess = refit$sdr$pdHess,
                     max_abs_grad = max(abs(refit$sdr$gradient.fixed)), warnings = A(rwarns))
  res <- list(
    name = name, data = data_file, call = paste(deparse(expr, width.cutoff = 500), collapse = " "),
    family = fam, link = family(fit)$link,
    formula = paste(deparse(formula(fit), width.cutoff = 500), collapse = " "),
    ziformula = if (length(fe$zi)) paste(deparse(fit$modelInfo$allForm$ziformula), collapse = " ") else NULL,
    dispformula = paste(deparse(fit$modelInfo$allForm$dispformula), collapse = " "),
    REML = FALSE, approximation = "Laplace (TMB), observed information, dispersion by maximum likelihood",
    logLik = ll, AIC = AIC(fit), BIC = BIC(fit), nobs = nobs(fit), df = attr(logLik(fit), "df"),
    df_resid = df.residual(fit), ngrps = as.list(fit$modelInfo$reTrms$cond$flist |> lapply(nlevels)),
    fixef = as.list(fe$cond), fixef_names = A(names(fe$cond)), se = A(se_of(vc$cond)),
    z = A(fe$cond / se_of(vc$cond)), zi = zi,
    vcov = list(cond = named_matrix(vc$cond), zi = named_matrix(vc$zi), full = named_matrix(vfull)),
    par = as.list(fit$fit$par), par_names = A(names(fit$fit$par)),
    varcorr = varcorr, dispersion = disp, density_check = dcheck, ranef = ranef1,
    convergence = conv, converged = fit$fit$convergence == 0, pdHess = fit$sdr$pdHess, refit = refit_info,
    seconds_median = median(times), seconds_all = A(times), note = note, boundary = !is.null(note),
    versions = versions)
  if (!is.null(also)) {
    a <- tryCatch(suppressWarnings(eval(also, globalenv())), error = function(e) e)
    res$also_tried <- if (inherits(a, "error")) list(call = paste(deparse(also, width.cutoff = 500), collapse = " "),
                                                      error = conditionMessage(a))
      else list(call = paste(deparse(also, width.cutoff = 500), collapse = " "), code = a$fit$convergence,
                message = a$fit$message, pdHess = a$sdr$pdHess, minus_objective = -a$fit$objective,
                logLik = as.numeric(logLik(a)), par = as.list(a$fit$par))
  }
  if (fam == "nbinom2" && sigma(fit) > 1e4) {   # the Poisson limit of a theta-at-infinity fit
    cl <- expr; cl$family <- quote(poisson)
    res$poisson_logLik <- as.numeric(logLik(eval(cl, globalenv())))
  }
  if (!is.null(lme4_ref)) {
    ref <- fromJSON(file.path(d, lme4_ref))
    v <- ref$varcorr; v <- v[v$var2 == "", ]
    sds <- lapply(split(v$sdcor, v$grp), identity)
    at <- at_lme4(fit, unlist(ref$fixef), sds, list(), ref$nb_theta)
    # lme4's fit again with its inner (PIRLS) tolerance tightened from 1e-7 to 1e-12: how much of
    # the gap is lme4's conditional modes left short (it is all of it for the canonical controls)
    tight <- tryCatch({
      e <- parse(text = ref$call)[[1]]; e$control <- quote(glmerControl(tolPwrss = 1e-12))
      lw <- character(0)
      m <- withCallingHandlers(eval(e, globalenv()),
        warning = function(w) { lw <<- unique(c(lw, conditionMessage(w))); invokeRestart("muffleWarning") },
        message = function(w) { lw <<- unique(c(lw, conditionMessage(w))); invokeRestart("muffleMessage") })
      list(call = paste(deparse(e, width.cutoff = 500), collapse = " "), logLik = as.numeric(logLik(m)),
           logLik_glmmTMB_minus_this = ll - as.numeric(logLik(m)), messages = A(lw))
    }, error = function(e) list(error = conditionMessage(e)))
    res$lme4_reference <- list(file = file.path("tests/data", lme4_ref), call = ref$call, logLik = ref$logLik,
                               logLik_glmmTMB_minus_lme4 = ll - ref$logLik, lme4_tolPwrss_1e12 = tight,
                               glmmTMB_at_lme4_estimates = at)
  }
  if (!is.null(lme4_expr)) {     # lme4's own fit of the same model, side by side
    lw <- character(0)
    m <- withCallingHandlers(eval(lme4_expr, globalenv()),
      warning = function(w) { lw <<- unique(c(lw, conditionMessage(w))); invokeRestart("muffleWarning") },
      message = function(w) { lw <<- unique(c(lw, conditionMessage(w))); invokeRestart("muffleMessage") })
    co <- coef(summary(m)); vl <- VarCorr(m)
    res$lme4 <- list(
      call = paste(deparse(lme4_expr, width.cutoff = 500), collapse = " "),
      logLik = as.numeric(logLik(m)), AIC = AIC(m), df = attr(logLik(m), "df"),
      fixef = as.list(fixef(m)), fixef_names = A(names(fixef(m))), se = A(co[, 2]),
      varcorr = lapply(names(vl), function(g) list(group = g, terms = A(names(attr(vl[[g]], "stddev"))),
        sd = A(attr(vl[[g]], "stddev")), corr = unname(as.matrix(attr(vl[[g]], "correlation"))))),
      sigma = sigma(m), sigma_meaning = "lme4's sigma(m): sqrt of a moment estimate of the dispersion phi (var = phi mu^2), not maximised",
      theta = A(getME(m, "theta")), messages = A(c(lw, m@optinfo$conv$lme4$messages)),
      logLik_glmmTMB_minus_lme4 = ll - as.numeric(logLik(m)))
    res$lme4$glmmTMB_at_lme4_estimates <- at_lme4(fit, fixef(m), lapply(vl, function(x) unname(attr(x, "stddev"))),
      lapply(vl, function(x) { r <- attr(x, "correlation"); if (ncol(r) > 1) r[1, 2] else NULL }))
  }
  writeLines(toJSON(res, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"), file.path(out, paste0(name, ".json")))
  cat(sprintf("%-22s %-12s logLik=%12.5f pdHess=%s grad=%.1e refit=%+.1e t=%.2fs %s\n", name, fam, ll,
              fit$sdr$pdHess, conv$max_abs_grad, ll2 - ll, median(times), paste(warns, collapse = " | ")))
}

# ---- the models ------------------------------------------------------------------------------
# M(the glmmTMB call, its data file, [lme4's reference JSON under tests/data], [an lme4 call to fit
# beside it], [a note on the fit], [another glmmTMB call whose outcome is recorded as "also_tried"])
M <- function(expr, data_file, lme4_ref = NULL, lme4_expr = NULL, note = NULL, also = NULL)
  list(expr = expr, data_file = data_file, lme4_ref = lme4_ref, lme4_expr = lme4_expr, note = note, also = also)
# nlminb stops with "false convergence (8)" (logLik NA, Hessian not positive definite) on safety_crossed_nb,
# whose NB theta runs off to infinity; BFGS reaches the same supremum and stops cleanly
ctrl_bfgs <- glmmTMBControl(optimizer = optim, optArgs = list(method = "BFGS"), optCtrl = list(maxit = 1e4))
models <- list(
  # non-canonical references (lme4's copies in ../expected and ../extra)
  gamma_log = M(quote(glmmTMB(y ~ x + (1 | g), family = Gamma(link = "log"), data = gm, control = ctrl)),
                "gamma_1e3.csv", "expected/gamma_log.json"),
  gamma_log_600 = M(quote(glmmTMB(y ~ x + (1 | g), family = Gamma(link = "log"), data = gm600, control = ctrl)),
                    "gamma_1e3.csv", NULL),
  gamma_inverse = M(quote(glmmTMB(y ~ x + (1 | g), family = Gamma(link = "inverse"), data = gi, control = ctrl)),
                    "extra/gamma_inverse.csv", "extra/gamma_inverse.json"),
  grouse_nb = M(quote(glmmTMB(TICKS ~ YEAR + (1 | LOCATION), family = nbinom2, data = gt, control = ctrl)),
                "grouseticks.csv", "expected/grouse_nb.json"),
  safety_crossed_nb = M(quote(glmmTMB(incidents ~ training + offset(log(employees)) + (1 | plant) + (1 | month),
                                      family = nbinom2, data = ws, control = ctrl_bfgs)),
                        "workplace_safety.csv", "expected/safety_crossed_nb.json",
    note = paste("Boundary: no overdispersion, the NB theta runs off to infinity (lme4: 2.1e5) and the model tends",
                 "to the Poisson one (its logLik is the supremum, within 1e-4 of glmmTMB's Poisson fit",
                 "'poisson_logLik' below). Fixed effects, the two SDs and logLik are determined; theta, betad",
                 "and their SEs are not (any theta above ~1e4 fits as well), nor is pdHess meaningful in",
                 "the betad direction. Fitted with optim/BFGS: nlminb stops with false convergence ('also_tried')."),
    also = quote(glmmTMB(incidents ~ training + offset(log(employees)) + (1 | plant) + (1 | month),
                         family = nbinom2, data = ws, control = ctrl))),
  cbpp_probit = M(quote(glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                family = binomial(link = "probit"), data = cbpp, control = ctrl)),
                  "cbpp.csv", "extra/cbpp_probit.json"),
  cbpp_cloglog = M(quote(glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                 family = binomial(link = "cloglog"), data = cbpp, control = ctrl)),
                   "cbpp.csv", "extra/cbpp_cloglog.json"),
  # canonical controls: here the exact Laplace is lme4's
  cbpp_laplace = M(quote(glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd),
                                 family = binomial, data = cbpp, control = ctrl)),
                   "cbpp.csv", "expected/cbpp_laplace.json"),
  grouse_loc = M(quote(glmmTMB(TICKS ~ YEAR + (1 | LOCATION), family = poisson, data = gt, control = ctrl)),
                 "grouseticks.csv", "expected/grouse_loc.json"),
  # Gamma log with a correlated random slope (benchmark shape gamma_slope_8fe), lme4's fit beside it
  gamma_slope = M(quote(glmmTMB(y ~ x * z + f + w + (x | g), family = Gamma(link = "log"), data = gs, control = ctrl)),
                  "gamma_slope_sim.csv",
                  lme4_expr = quote(glmer(y ~ x * z + f + w + (x | g), family = Gamma(link = "log"), data = gs))),
  # new families (references for later work)
  grouse_nb1 = M(quote(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), family = nbinom1, data = gt, control = ctrl)),
                 "grouseticks.csv"),
  grouse_zip = M(quote(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), ziformula = ~1, family = poisson,
                               data = gt, control = ctrl)), "grouseticks.csv"),
  grouse_zinb2 = M(quote(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), ziformula = ~1, family = nbinom2,
                                 data = gt, control = ctrl)), "grouseticks.csv",
    note = paste("Boundary: NB2 leaves no excess zeros, the zero-inflation intercept runs off towards -Inf (SE in",
                 "the thousands); logLik, the conditional model, theta and the SD are determined (they are the",
                 "NB2 fit without zero inflation), the zi intercept and its SE are not.")),
  grouse_zinb1 = M(quote(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), ziformula = ~1, family = nbinom1,
                                 data = gt, control = ctrl)), "grouseticks.csv",
    note = paste("Boundary: NB1 leaves no excess zeros, the zero-inflation intercept runs off towards -Inf and",
                 "logLik equals grouse_nb1's (the model without zero inflation); the conditional model, phi and",
                 "the SD are grouse_nb1's, the zi intercept and its SE are not determined.")),
  grouse_zinb2_year = M(quote(glmmTMB(TICKS ~ YEAR + cHEIGHT + (1 | LOCATION), ziformula = ~YEAR, family = nbinom2,
                                      data = gt, control = ctrl)), "grouseticks.csv",
    note = paste("Boundary: the zero-inflation coefficients of YEAR96 and YEAR97 run off towards -Inf (no excess zeros",
                 "in 1996-97), with SEs in the thousands; logLik, the conditional model, theta, the zi intercept and",
                 "the LOCATION SD are determined, the zi~YEAR96 / zi~YEAR97 estimates and SEs are not (any value",
                 "below about -10 fits as well).")),
  # zero inflation away from the boundary (simulated, zi ~ w)
  zinb_sim_nb2 = M(quote(glmmTMB(y ~ x + (1 | g), ziformula = ~w, family = nbinom2, data = zs, control = ctrl)),
                   "glmmtmb/zinb_sim.csv"),
  zinb_sim_nb1 = M(quote(glmmTMB(y ~ x + (1 | g), ziformula = ~w, family = nbinom1, data = zs, control = ctrl)),
                   "glmmtmb/zinb_sim.csv"),
  zinb_sim_zip = M(quote(glmmTMB(y ~ x + (1 | g), ziformula = ~w, family = poisson, data = zs, control = ctrl)),
                   "glmmtmb/zinb_sim.csv"),
  cbpp_betabinomial = M(quote(glmmTMB(cbind(incidence, size - incidence) ~ period + (1 | herd), family = betabinomial,
                                      data = cbpp, control = ctrl)), "cbpp.csv"),
  beta_sim = M(quote(glmmTMB(y ~ x + (1 | g), family = beta_family(), data = bs, control = ctrl)), "beta_sim.csv")
)
if (length(args)) models <- models[args]
dir.create(out, showWarnings = FALSE)
for (nm in names(models))
  tryCatch(do.call(save_fit, c(list(name = nm), models[[nm]]), quote = TRUE), error = function(e) cat(nm, "ERROR:", conditionMessage(e), "\n"))
