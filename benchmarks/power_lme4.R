# Power by simulation, the plain lme4 loop (what simr's powerSim does, without simr:
# simr is not in Debian and CRAN is out of reach here): the reference of
# tests/engine/test_power_lme4.py (its numbers: tests/data/scripts/power_lme4.R) and
# lme4's side of benchmarks/power_speed.py.  Called as
#   Rscript benchmarks/power_lme4.R <design> <test> <nsim> <seed> [effect]
# design: "poisson" (the workplace-sized study: plants plant01..plant20 crossed with
# month1..month8, training = 1 on plant02, plant04, ..., offset lexp = log(150 + 10 i)
# for plant i = 0..19; incidents ~ training + (1|plant) + (1|month), Poisson;
# (Intercept) -3.5, training log(0.7), SD plant 0.4, SD month 0.2) or "binomial"
# (g01..g30, 10 rows each, trt = 1 on g02, g04, ...; y ~ trt + (1|g), Bernoulli;
# (Intercept) -0.5, trt 0.8, SD g 0.6): the tables xlglmm.design_table makes.
# test: "wald" (the z-test's p of summary(glmer)'s coefficient table) or "lrt"
# (anova(null, full): the chi-square test against the model without the tested term).
# Each simulation draws new random effects for every level and a new response with
# R's own RNG (set.seed(seed) once), fits glmer with its default settings and tests.
# An error loses the simulation (a failure, left out of the power); a convergence
# warning (lme4's "Model failed to converge" checks) is counted and the fit kept, as
# simr keeps them (it reports warnings, it drops only errors); singular fits are
# counted and kept.  Prints one JSON object on stdout: power, n used, failures,
# convergence warnings, singular fits, the tested coefficient's mean estimate, the
# loop's seconds (R and lme4 loaded before the clock starts) and seconds per simulation,
# on the wall clock and in CPU time (this process's user + system time: on a shared
# machine the wall clock counts other work too).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
if (!(length(args) %in% 4:5))
  stop("usage: Rscript power_lme4.R <poisson|binomial> <wald|lrt> <nsim> <seed> [effect]")
design <- args[1]; test <- args[2]; nsim <- as.integer(args[3]); seed <- as.integer(args[4])
# optional: the tested effect's true value (0: the test's type I error)
effect <- if (length(args) == 5) as.numeric(args[5]) else NA
stopifnot(design %in% c("poisson", "binomial"), test %in% c("wald", "lrt"), nsim >= 1)

if (design == "poisson") {
  plants <- sprintf("plant%02d", 1:20); months <- paste0("month", 1:8)
  d <- data.frame(plant = factor(rep(plants, each = 8), levels = plants),
                  month = factor(rep(months, times = 20), levels = months))
  i <- as.integer(d$plant) - 1L                       # plant index 0..19
  d$training <- as.numeric(i %% 2 == 1)               # plant02, plant04, ...
  d$lexp <- log(150 + 10 * i)
  beta <- c(-3.5, if (is.na(effect)) log(0.7) else effect); sds <- c(plant = 0.4, month = 0.2)
  term <- "training"
  full_f <- y ~ training + (1 | plant) + (1 | month)
  null_f <- y ~ 1 + (1 | plant) + (1 | month)
  eta0 <- beta[1] + beta[2] * d$training + d$lexp
  draw <- function() {
    eta <- eta0 + rnorm(20, 0, sds["plant"])[d$plant] + rnorm(8, 0, sds["month"])[d$month]
    rpois(nrow(d), exp(eta))
  }
  fit <- function(f, dd) glmer(f, dd, poisson, offset = lexp)
} else {
  groups <- sprintf("g%02d", 1:30)
  d <- data.frame(g = factor(rep(groups, each = 10), levels = groups))
  i <- as.integer(d$g) - 1L
  d$trt <- as.numeric(i %% 2 == 1)                    # g02, g04, ...
  beta <- c(-0.5, if (is.na(effect)) 0.8 else effect); sds <- c(g = 0.6)
  term <- "trt"
  full_f <- y ~ trt + (1 | g)
  null_f <- y ~ 1 + (1 | g)
  eta0 <- beta[1] + beta[2] * d$trt
  draw <- function() rbinom(nrow(d), 1, plogis(eta0 + rnorm(30, 0, sds["g"])[d$g]))
  fit <- function(f, dd) glmer(f, dd, binomial)
}

# one fit, its warnings collected (and muffled) instead of printed; its messages ("boundary
# (singular) fit") dropped: singular fits are counted by isSingular
fit_quietly <- function(f, dd) {
  warns <- character(0)
  m <- withCallingHandlers(suppressMessages(fit(f, dd)), warning = function(w) {
    warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
  })
  list(m = m, warns = warns)
}

one <- function() {
  dd <- d; dd$y <- draw()
  full <- fit_quietly(full_f, dd)
  warns <- full$warns
  if (test == "wald") {
    p <- coef(summary(full$m))[term, "Pr(>|z|)"]
  } else {
    null <- fit_quietly(null_f, dd)
    warns <- c(warns, null$warns)
    p <- anova(null$m, full$m)[2, "Pr(>Chisq)"]
  }
  if (!is.finite(p)) stop("no p-value")
  list(p = p, est = unname(fixef(full$m)[term]), singular = isSingular(full$m),
       converge_warning = any(grepl("converge", warns, ignore.case = TRUE)))
}

set.seed(seed)
p <- est <- rep(NA_real_, nsim); singular <- warned <- rep(FALSE, nsim)
errors <- character(0)
t0 <- proc.time()
for (s in seq_len(nsim)) {
  r <- tryCatch(one(), error = function(e) e)
  if (inherits(r, "error")) { errors <- c(errors, conditionMessage(r)); next }
  p[s] <- r$p; est[s] <- r$est; singular[s] <- r$singular; warned[s] <- r$converge_warning
}
used <- proc.time() - t0
seconds <- used[["elapsed"]]
cpu <- used[["user.self"]] + used[["sys.self"]]
ok <- !is.na(p)
out <- list(design = design, test = test, term = term, nsim = nsim, seed = seed,
            power = mean(p[ok] < 0.05), rejections = sum(p[ok] < 0.05), n_used = sum(ok),
            failures = length(errors), first_failure = if (length(errors)) errors[1] else NULL,
            convergence_warnings = sum(warned[ok]), singular = sum(singular[ok]),
            mean_estimate = mean(est[ok]), sd_estimate = sd(est[ok]),
            seconds = seconds, seconds_per_simulation = seconds / nsim,
            cpu_seconds = cpu, cpu_seconds_per_simulation = cpu / nsim,
            R = paste(R.version$major, R.version$minor, sep = "."),
            lme4 = as.character(packageVersion("lme4")))
cat(toJSON(out, digits = NA, auto_unbox = TRUE, null = "null"), "\n")
