# lme4's side of benchmarks/influence_speed.py: influence(m, groups=) on the
# workplace-safety model (by plant) and on sleepstudy (by Subject), timed.  Called as
#   Rscript benchmarks/influence_lme4.R <workplace_safety.csv> <sleepstudy.csv> <reps>
# and prints one JSON object (seconds of each repetition, lme4's DFBETAS and Cook's
# distance per level, versions) on stdout.  R and lme4 are loaded before the clock starts.
suppressPackageStartupMessages({library(lme4); library(jsonlite)})
args <- commandArgs(trailingOnly = TRUE)
safety <- read.csv(args[1]); sleep <- read.csv(args[2]); reps <- as.integer(args[3])
safety$plant <- factor(safety$plant); safety$month <- factor(safety$month)
sleep$Subject <- factor(sleep$Subject)
elapsed <- function(expr) unname(system.time(expr)["elapsed"])
cases <- list(
  workplace = list(fit = function() glmer(incidents ~ training + (1 | plant) + (1 | month),
                                          safety, poisson, offset = log(employees)),
                   data = safety, group = "plant"),
  sleepstudy = list(fit = function() lmer(Reaction ~ Days + (Days | Subject), sleep),
                    data = sleep, group = "Subject"))
out <- list()
for (nm in names(cases)) {
  cs <- cases[[nm]]
  seconds <- numeric(0)
  for (i in seq_len(reps)) {
    m <- cs$fit()
    seconds[i] <- elapsed(inf <- influence(m, groups = cs$group, data = cs$data))
  }
  db <- dfbetas(inf)
  out[[nm]] <- list(seconds = I(seconds), levels = as.character(inf$deleted),
                    dfbetas = unname(lapply(seq_len(nrow(db)), function(i) unname(db[i, ]))),
                    cooks_distance = unname(cooks.distance(inf)))
}
out$versions <- list(R = paste(R.version$major, R.version$minor, sep = "."),
                     lme4 = as.character(packageVersion("lme4")))
cat(toJSON(out, digits = NA, auto_unbox = TRUE), "\n")
