# The lme4 reference of tests/engine/test_power_lme4.py: power by simulation with the
# plain lme4 loop of benchmarks/power_lme4.R (simr's powerSim without simr), 2,000
# simulations for each of the two designs (the workplace-sized Poisson study and the
# Bernoulli one: see that script) and each test (Wald z, LRT), one run after the
# other, all with seed 2026 (so a design's Wald and LRT runs test the same simulated
# data sets).  Run from the repository root:
#   Rscript tests/data/scripts/power_lme4.R
# Writes tests/data/power_lme4.json: per "<design>_<test>" the loop's JSON (power,
# rejections, n used, failures, convergence warnings, singular fits, mean estimate,
# seconds, versions) and the command that made it.  About 17 minutes on one core (the
# committed file: 199, 372, 191 and 276 s; made before the loop also printed CPU seconds).
suppressPackageStartupMessages(library(jsonlite))
nsim <- 2000L; seed <- 2026L
out <- list()
for (design in c("poisson", "binomial")) for (test in c("wald", "lrt")) {
  cmd <- c("benchmarks/power_lme4.R", design, test, nsim, seed)
  lines <- system2("Rscript", cmd, stdout = TRUE)
  r <- fromJSON(lines[length(lines)])
  r$command <- paste(c("Rscript", cmd), collapse = " ")
  out[[paste(design, test, sep = "_")]] <- r
  message(design, " ", test, ": power ", r$power, " (", r$n_used, " used), ",
          round(r$seconds), " s")
}
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE, null = "null"),
           "tests/data/power_lme4.json")
