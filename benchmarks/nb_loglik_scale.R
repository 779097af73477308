# Why glmmTMB's negative binomial log-likelihood differs from lme4's (and xlglmm's,
# which matches glmer.nb): glmmTMB's objective evaluated at glmer.nb's own estimates.
# If that value is already far from lme4's, the two programs report different
# functions of the same parameters (issue 17: lme4's Laplace determinant uses Fisher
# weights for the non-canonical log link, glmmTMB the observed information), not a
# better optimum.  bench.py marks the column with a dagger for this reason.
#
#   Rscript benchmarks/nb_loglik_scale.R data.csv "y ~ x1 + x2 + (1|g1)"
# (data: e.g. make_data.make_peer("nb2_crossed_7fe").to_csv(...); g1, g2, f become factors)
suppressPackageStartupMessages({library(lme4); library(glmmTMB)})
args <- commandArgs(TRUE)
d <- read.csv(args[1])
for (v in intersect(c("f", "g1", "g2"), names(d))) d[[v]] <- factor(d[[v]])
form <- as.formula(args[2])
m1 <- glmer.nb(form, data = d)
m2 <- glmmTMB(form, data = d, family = nbinom2)
vc <- as.data.frame(VarCorr(m1))
sds <- setNames(vc$sdcor, vc$grp)
p <- m2$obj$par
p[names(p) == "beta"] <- fixef(m1)
p[names(p) == "theta"] <- log(sds[names(ranef(m2)$cond)])
p[names(p) == "betad"] <- log(getME(m1, "glmer.nb.theta"))
cat(sprintf("lme4 logLik %.4f; glmmTMB's objective at lme4's estimates %.4f; glmmTMB's maximum %.4f\n",
            logLik(m1), -m2$obj$fn(p), logLik(m2)))
cat(sprintf("NB theta: lme4 %.5f, glmmTMB %.5f\n", getME(m1, "glmer.nb.theta"), sigma(m2)))
