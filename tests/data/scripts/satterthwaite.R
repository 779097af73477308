# lmerTest's Satterthwaite degrees of freedom for the fixed effects of the reference
# linear mixed models, for tests/engine/test_satterthwaite.py.  From the repository root:
#   Rscript tests/data/scripts/satterthwaite.R
suppressPackageStartupMessages({library(lmerTest); library(jsonlite)})
rd <- function(f, dir = "xlglmm/data") read.csv(file.path(dir, f))
sleep <- rd("sleepstudy.csv"); sleep$Subject <- factor(sleep$Subject)
pen <- rd("Penicillin.csv", "tests/data"); pen$plate <- factor(pen$plate)
pen$sample <- factor(pen$sample)
dye <- rd("Dyestuff.csv", "tests/data"); dye$Batch <- factor(dye$Batch)
models <- list(
  sleep_reml = function() lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE),
  sleep_ml = function() lmer(Reaction ~ Days + (Days | Subject), sleep, REML = FALSE),
  sleep_intercept = function() lmer(Reaction ~ Days + (1 | Subject), sleep, REML = TRUE),
  penicillin_reml = function() lmer(diameter ~ 1 + (1 | plate) + (1 | sample), pen),
  dyestuff_reml = function() lmer(Yield ~ 1 + (1 | Batch), dye))
out <- list()
for (name in names(models)) {
  m <- models[[name]]()
  co <- summary(m, ddf = "Satterthwaite")$coefficients
  out[[name]] <- list(lmerTest = as.character(packageVersion("lmerTest")),
                      terms = rownames(co), estimate = unname(co[, "Estimate"]),
                      se = unname(co[, "Std. Error"]), df = unname(co[, "df"]),
                      t = unname(co[, "t value"]), p = unname(co[, "Pr(>|t|)"]))
}
writeLines(toJSON(out, auto_unbox = FALSE, digits = NA, pretty = TRUE),
           "tests/data/satterthwaite.json")
