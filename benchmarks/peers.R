# Peer fits for benchmarks/national.py: glmmTMB and lme4::glmer on the same cells.
#
# Usage: Rscript benchmarks/peers.R CELLS.csv SPEC.json OUT.json PEER
#   CELLS.csv  one row per cell: the fixed-effect columns x1..xp (the package's design
#              matrix, intercept included), events, trials, and the group codes g_<term>
#   SPEC.json  {"family": ..., "x": [x1, ...], "terms": [patsy names],
#               "random": [{"name": ..., "group": "g_la", "slope": null | "x3"}, ...]}
#   PEER       glmmTMB | glmer | glmer_bobyqa
# Writes OUT.json: seconds of the fitting call, log-likelihood, coefficients with their
# standard errors (glmmTMB: sdreport; glmer: vcov with and without use.hessian), SDs and,
# for glmmTMB, the standard errors of log SD (sdreport's theta).
suppressPackageStartupMessages({
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
cells <- read.csv(args[1])
spec <- fromJSON(args[2], simplifyVector = TRUE)
out_path <- args[3]
peer <- args[4]

for (g in unique(spec$random$group)) cells[[g]] <- factor(cells[[g]])
fixed <- paste(spec$x, collapse = " + ")
rand <- vapply(seq_len(nrow(spec$random)), function(i) {
  s <- spec$random$slope[i]
  if (is.na(s) || is.null(s)) sprintf("(1 | %s)", spec$random$group[i])
  else sprintf("(0 + %s | %s)", s, spec$random$group[i])
}, "")
response <- if (spec$family == "binomial") "cbind(events, trials - events)" else "events"
form <- as.formula(paste(response, "~ 0 +", fixed, "+", paste(rand, collapse = " + ")))
offset <- if (spec$family == "binomial") NULL else log(cells$trials)

result <- list(peer = peer, formula = deparse(form, width.cutoff = 500L))
if (peer == "glmmTMB") {
  suppressPackageStartupMessages(library(glmmTMB))
  fam <- switch(spec$family, binomial = binomial(), poisson = poisson(),
                negative_binomial = nbinom2())
  t0 <- proc.time()[["elapsed"]]
  fit <- if (is.null(offset)) glmmTMB(form, data = cells, family = fam)
         else glmmTMB(form, data = cells, family = fam, offset = offset)
  result$seconds <- proc.time()[["elapsed"]] - t0
  result$log_likelihood <- as.numeric(logLik(fit))
  result$converged <- fit$fit$convergence == 0 && isTRUE(fit$sdr$pdHess)
  cf <- fixef(fit)$cond
  result$coef <- unname(cf)
  result$se <- unname(sqrt(diag(vcov(fit)$cond)))
  par <- fit$sdr$par.fixed
  theta <- which(names(par) == "theta")
  result$sd <- unname(exp(par[theta]))
  result$log_sd_se <- unname(sqrt(diag(fit$sdr$cov.fixed))[theta])
  if (spec$family == "negative_binomial") result$dispersion <- unname(sigma(fit))
} else {
  suppressPackageStartupMessages(library(lme4))
  control <- if (peer == "glmer_bobyqa") glmerControl(optimizer = "bobyqa") else glmerControl()
  fam <- switch(spec$family, binomial = binomial(), poisson = poisson())
  t0 <- proc.time()[["elapsed"]]
  fit <- if (is.null(offset)) glmer(form, data = cells, family = fam, control = control)
         else glmer(form, data = cells, family = fam, control = control, offset = offset)
  result$seconds <- proc.time()[["elapsed"]] - t0
  result$log_likelihood <- as.numeric(logLik(fit))
  msgs <- fit@optinfo$conv$lme4$messages
  result$converged <- is.null(msgs)
  result$messages <- if (is.null(msgs)) list() else as.list(msgs)
  result$coef <- unname(fixef(fit))
  result$se <- unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = TRUE)))))
  result$se_conditional <- unname(sqrt(diag(as.matrix(vcov(fit, use.hessian = FALSE)))))
  vc <- as.data.frame(VarCorr(fit))
  result$sd <- unname(vc$sdcor)
}
writeLines(toJSON(result, digits = NA, auto_unbox = TRUE), out_path)
