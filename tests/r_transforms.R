# What lme4 does with transforms that leave the numbers (issue 18 review, L3);
# xlglmm follows it (tests/engine/test_hostile_fit.py).  Run: Rscript tests/r_transforms.R
# Output with R 4.2.2, lme4 1.1 (recorded below):
#   log(negative): fit, nobs 39 (warning: NaNs produced)
#   log(0): ERROR: NA/NaN/Inf in foreign function call (arg 1)
#   exp(1200): ERROR: NA/NaN/Inf in foreign function call (arg 1)
#   sqrt(negative): fit, nobs 39 (warning: NaNs produced)
suppressMessages(library(lme4))
set.seed(1); n <- 40
d <- data.frame(y = rpois(n, 3), x = runif(n, 0.5, 2), g = factor(rep(1:8, 5)))
try1 <- function(label, f, data) {
  r <- withCallingHandlers(
    tryCatch({m <- glmer(f, data, family = poisson); paste("fit, nobs", nobs(m))},
             error = function(e) paste("ERROR:", conditionMessage(e))),
    warning = function(w) invokeRestart("muffleWarning"))
  cat(label, r, "\n")
}
d1 <- d; d1$x[3] <- -1;   try1("log(negative):", y ~ log(x) + (1|g), d1)
d2 <- d; d2$x[3] <- 0;    try1("log(0):", y ~ log(x) + (1|g), d2)
d3 <- d; d3$x[3] <- 1200; try1("exp(1200):", y ~ exp(x) + (1|g), d3)
d4 <- d; d4$x[3] <- -1;   try1("sqrt(negative):", y ~ sqrt(x) + (1|g), d4)
