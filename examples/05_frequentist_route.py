# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. The frequentist route, and three engines on the same data
#
# *A logistic regression with cluster-robust standard errors, a mixed model fitted by
# maximum likelihood (Laplace approximation and adaptive quadrature), and the Bayesian
# model, on one simulated data set with a known truth; then `cbpp` beside lme4's
# published fit.*
#
# **Data.** Simulated pupils (`disparity.simulate`), and `data/cbpp.csv` from the R
# package lme4. **Time budget:** about 15 s on 2 cores.
#
# The package has three engines, chosen with `engine=`:
#
# | engine | model | estimation | group effects |
# |---|---|---|---|
# | `"glm"` | fixed effects only | maximum likelihood (statsmodels) | none; used only for cluster-robust standard errors |
# | `"ml"` (default) | hierarchical (GLMM) | maximum likelihood, Laplace approximation or adaptive Gauss-Hermite quadrature | predicted (conditional modes) |
# | `"pymc"` | hierarchical (GLMM) | Bayesian posterior by NUTS | posterior draws |

# %%
import dataclasses
import warnings
from types import MappingProxyType

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import disparity
from disparity.simulate import Truth, simulate_pupils

# %% [markdown]
# ## One data set, known truth
#
# 100,000 pupils in 150 schools; the outcome is "suspended at least once" (about 2%).
# Only SEN, FSM and sex matter, and schools differ with an SD of 0.6 on the logit scale
# (LAs do not differ). The model we fit is the true one.

# %%
base = Truth()
effects = {outcome: MappingProxyType({v: lv for v, lv in by_var.items()
                                      if v in ("sen", "fsm", "sex")})
           for outcome, by_var in base.effects.items()}
truth = dataclasses.replace(base, sd_la=0.0, sd_school=0.6, effects=MappingProxyType(effects))
sim = simulate_pupils(100_000, n_schools=150, n_las=10, seed=5, truth=truth)
cells = disparity.collapse(sim.pupils, by=["sen", "fsm", "sex", "school"])
TRUE_FSM = truth.effects["any_susp"]["fsm"]["yes"]
FORMULA = "p(n_any_susp, n_pupils) ~ sen + fsm + sex + (1 | school)"
print(f"{len(cells):,} cells, {cells.n_pupils.sum():,} pupils, "
      f"{cells.n_any_susp.sum():,} suspended; true FSM log-odds ratio {TRUE_FSM:.3f} "
      f"(odds ratio {np.exp(TRUE_FSM):.3f}), true school SD 0.6")

# %% [markdown]
# Four fits of the same formula. For the GLM, the `(1 | school)` term only says how to
# cluster the standard errors; `glm={"cluster": "none"}` asks for the conventional ones,
# which assume every pupil is independent.

# %%
FIT = dict(scope="fit", seed=1)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the odds-ratio warning: the point of the last section
    fits = {
        "GLM, naive SE": disparity.fit(FORMULA, cells, engine="glm", glm={"cluster": "none"},
                                       **FIT),
        "GLM, cluster-robust SE": disparity.fit(FORMULA, cells, engine="glm", **FIT),
        "GLMM, Laplace ML": disparity.fit(FORMULA, cells, engine="ml", **FIT),
        "GLMM, Bayesian": disparity.fit(FORMULA, cells, engine="pymc", draws=300, tune=300,
                                        chains=2, **FIT),
    }


def row(result, term):
    est = result.estimates
    r = est[(est.estimand == "coefficient") & (est.term == term)].iloc[0]
    return {"estimate": r.estimate, "std_error": r.std_error, "conf_low": r.conf_low,
            "conf_high": r.conf_high}


table = pd.DataFrame({name: row(r, "fsm[T.yes]") for name, r in fits.items()}).T
table["school SD"] = [np.nan if r.fit.group_sd is None or r.fit.group_sd.empty
                      else float(r.fit.group_sd.estimate.iloc[0]) for r in fits.values()]
table.round(3)

# %% [markdown]
# Three lessons in one table.
#
# **1. Naive standard errors are too small.** The GLM's estimate is the same with either
# standard error; only its uncertainty changes. Pupils in one school share that school's
# effect, so they carry less information than independent pupils would; the sandwich
# estimator clustered on school (Liang and Zeger 1986; Cameron and Miller 2015) accounts for
# it, and its standard error is larger.
#
# **2. The GLM and the GLMM estimate different things.** The GLMM's coefficient is
# *conditional*: the log-odds ratio of FSM for two pupils in the *same* school. The GLM's is
# *marginal* (population-averaged): averaged over schools. On the logit scale averaging
# over a normal school effect with SD `σ` attenuates a coefficient by about
# `1 / sqrt(1 + 0.346 σ²)` (Zeger, Liang and Albert 1988):

# %%
attenuation = 1 / np.sqrt(1 + 0.346 * 0.6**2)
print(f"conditional truth {TRUE_FSM:.3f} x {attenuation:.3f} = {TRUE_FSM * attenuation:.3f}"
      " (approximate marginal truth)")

# %% [markdown]
# so the GLM's estimate lies between the attenuated value and the true one, the GLMM's
# on the true one. Neither is wrong; they answer different questions. Rate ratios
# *standardised* over the pupils (Example 2) ask one question of every engine (how much
# higher would these pupils' risk be if all had FSM than if none had?), so the engines'
# answers are closer on that scale than their coefficients are; the package's headline
# numbers are those:

# %%
ratios = pd.DataFrame({
    name: r.rate_ratios("fsm", n_draws=300).set_index("level").loc[
        "yes", ["estimate", "conf_low", "conf_high"]]
    for name, r in fits.items()}).T
ratios.astype(float).round(3)

# %% [markdown]
# The GLM's ratio is about 2% below the GLMM's, well inside either interval: with a
# common outcome (2%) and a school SD of 0.6, the marginal and conditional risk ratios
# are close, though not equal.
#
# **3. Laplace ML and the Bayesian posterior agree** here, with 150 schools: the posterior
# means and SDs are within a few hundredths of the ML estimates and standard errors. They
# part company when there are few groups (the posterior of the school SD is then skewed, and
# the ML estimate of an SD can be exactly 0), or when events are so sparse that the Laplace
# approximation is poor; for that the `ml` engine offers adaptive Gauss-Hermite quadrature
# (`ml={"quadrature_nodes": k}`, like lme4's `nAGQ`; `k = 1` is the Laplace approximation).

# %%
fig, ax = plt.subplots(figsize=(8.5, 3.2))
y = np.arange(len(table))
ax.errorbar(table.estimate, y, xerr=[table.estimate - table.conf_low,
                                     table.conf_high - table.estimate],
            fmt="o", color="#1f4e79", ecolor="#7f9fbf", capsize=3)
ax.axvline(TRUE_FSM, color="#c0392b", lw=1.5, label="conditional truth")
ax.axvline(TRUE_FSM * attenuation, color="#e69f00", lw=1.5, ls="--",
           label="marginal truth (approx.)")
ax.set_yticks(y)
ax.set_yticklabels(table.index)
ax.invert_yaxis()
ax.set_xlabel("FSM coefficient (log-odds ratio), 95% interval")
ax.set_title("One data set, four fits", fontsize=11)
ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## `cbpp` beside lme4
#
# The standard test of a GLMM implementation is lme4's `cbpp` example (Bates et al. 2015):
#
# ```r
# glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), data = cbpp,
#       family = binomial)
# ```
#
# lme4 reports coefficients -1.3983, -0.9919, -1.1282, -1.5797 with standard errors 0.2312,
# 0.3032, 0.3228, 0.4220, and a herd SD of 0.6421 (the package's tests hold the `ml`
# engine to these, and to glmmTMB's log-likelihood of -92.0263).

# %%
LME4 = pd.DataFrame({"lme4 estimate": [-1.3983, -0.9919, -1.1282, -1.5797],
                     "lme4 s.e.": [0.2312, 0.3032, 0.3228, 0.4220]},
                    index=["Intercept", "period[T.2]", "period[T.3]", "period[T.4]"])
cbpp = pd.read_csv("data/cbpp.csv")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    laplace = disparity.fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp, **FIT)
    agq = disparity.fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp,
                        ml={"quadrature_nodes": 9}, **FIT)
coef = laplace.estimates.query("estimand == 'coefficient'").set_index("term")
side = LME4.assign(**{"disparity estimate": coef.estimate, "disparity s.e.": coef.std_error})
side["disparity, 9-node AGQ"] = agq.estimates.query(
    "estimand == 'coefficient'").set_index("term").estimate
print("log-likelihood (Laplace):", round(laplace.diagnostics["log_likelihood"], 4),
      "| herd SD:", round(float(laplace.fit.group_sd.estimate.iloc[0]), 4))
side.round(4)

# %% [markdown]
# The Laplace coefficients agree with lme4's to within 0.0006, and with glmmTMB's
# (-1.39853, -0.99233, -1.12867, -1.58031, at the same log-likelihood of -92.0263) to five
# decimals: lme4's optimiser stops at a log-likelihood about 1e-4 below the maximum. The
# standard errors are up to 1.3% larger than lme4's printed ones: by default they come from
# the Hessian of the Laplace log-likelihood in all its parameters, as glmmTMB's do (0.2325,
# 0.3066, 0.3266, 0.4274; the package's tests hold the engine to these to 0.1%), while lme4
# prints its own finite-difference approximation. `ml={"se_method": "conditional"}` gives
# the standard errors that hold the variance parameters fixed, lme4's
# `vcov(fit, use.hessian = FALSE)`.
#
# Nine-node quadrature moves the estimates by under 0.001: with 2 to 34 animals per
# herd-period and most herds seen in all 4 periods, the Laplace approximation is already
# good here.
#
# `Result.summary()` prints the same fit in the layout of a model summary:

# %%
print(laplace.summary())

# %% [markdown]
# ## Exercises
#
# 1. Refit the GLM with `glm={"cluster": "none"}` and with the default clustering. By what
#    factor does the standard error of the FSM coefficient grow? (This is the square root of
#    the "design effect".)
# 2. Reduce the simulation to 15 schools. What happens to the cluster-robust standard
#    error, and what does the package warn?
# 3. Fit `cbpp` with `engine="glm"`. Are its period coefficients the GLMM's shrunk
#    towards 0, as the attenuation rule above suggests?
#
# ## Answers
#
# 1. From the table above:

# %%
naive, robust = table.std_error.iloc[0], table.std_error.iloc[1]
print(f"cluster-robust / naive standard error: {robust / naive:.2f}")

# %% [markdown]
# 2. The sandwich estimator needs many clusters; with few it is biased down. Below 10
#    clusters the `glm` engine warns that cluster-robust standard errors are unreliable.
# 3. No: they are *further* from 0 (below). The attenuation rule is for a balanced
#    design, where every cluster contributes alike to every level. In `cbpp` herds differ
#    in size and in which periods they were observed, so a pooled GLM lets herd
#    differences leak into the period comparison, which the herd effects of the GLMM
#    absorb. With 15 clusters its cluster-robust standard errors are rough as well.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    glm_cbpp = disparity.fit("p(incidence, size) ~ C(period) + (1 | herd)", cbpp,
                             engine="glm", **FIT)
glm_cbpp.estimates.query("estimand == 'coefficient'")[["term", "estimate", "std_error"]].round(4)

# %% [markdown]
# ## References
#
# * Bates, D., Maechler, M., Bolker, B. and Walker, S. (2015). Fitting linear mixed-effects
#   models using lme4. *Journal of Statistical Software* 67(1), 1-48.
# * Brooks, M. E., Kristensen, K., van Benthem, K. J. et al. (2017). glmmTMB balances speed
#   and flexibility among packages for zero-inflated generalized linear mixed modeling.
#   *The R Journal* 9(2), 378-400.
# * Cameron, A. C. and Miller, D. L. (2015). A practitioner's guide to cluster-robust
#   inference. *Journal of Human Resources* 50(2), 317-372.
# * Liang, K.-Y. and Zeger, S. L. (1986). Longitudinal data analysis using generalized
#   linear models. *Biometrika* 73(1), 13-22.
# * Pinheiro, J. C. and Bates, D. M. (1995). Approximations to the log-likelihood function
#   in the nonlinear mixed-effects model. *Journal of Computational and Graphical
#   Statistics* 4(1), 12-35.
# * Zeger, S. L., Liang, K.-Y. and Albert, P. S. (1988). Models for longitudinal data: a
#   generalized estimating equation approach. *Biometrics* 44(4), 1049-1060.
