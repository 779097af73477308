# lme4's side of benchmarks/intervals_speed.py: the workplace-safety model's profile
# intervals and parametric bootstrap, timed.  Called as
#   Rscript benchmarks/intervals_lme4.R <workplace_safety.csv> <profile reps> <bootMer nsim> <seed>
# and prints one JSON object (times in seconds, the intervals, versions) on stdout.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
data <- read.csv(args[1]); reps <- as.integer(args[2]); nsim <- as.integer(args[3])
seed <- as.integer(args[4])
data$plant <- factor(data$plant); data$month <- factor(data$month)
fit <- function() glmer(incidents ~ training + (1 | plant) + (1 | month), data, poisson,
                        offset = log(employees))
m <- fit()
elapsed <- function(expr) unname(system.time(expr)["elapsed"])

profile_s <- numeric(0)
for (i in seq_len(reps)) {
  m <- fit()            # a fresh fit: nothing kept from the previous profile
  profile_s[i] <- elapsed(ci <- suppressWarnings(confint(m, method = "profile",
                                                         oldNames = FALSE)))
}
stat <- function(x) c(fixef(x), getME(x, "theta"))
boot_s <- if (nsim > 0) elapsed(b <- bootMer(m, stat, nsim = nsim, seed = seed)) else NA

cat(toJSON(list(
  profile_seconds = I(profile_s), boot_seconds = boot_s, boot_nsim = nsim,
  boot_failed = if (nsim > 0) sum(!stats::complete.cases(b$t)) else NA,
  profile_ci = list(names = rownames(ci), lower = unname(ci[, 1]), upper = unname(ci[, 2])),
  versions = list(R = paste(R.version$major, R.version$minor, sep = "."),
                  lme4 = as.character(packageVersion("lme4")))),
  digits = NA, auto_unbox = TRUE), "\n")
