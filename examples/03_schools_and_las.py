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
# # 3. Schools and LAs: shrinkage, funnels and false flags
#
# *Why a league table of raw rates mostly ranks noise; what a multilevel model's
# shrunken estimates do instead; how funnel plots show chance; and how many "outliers"
# a screen of 400 schools finds when there are none.*
#
# **Data.** Simulated schools with a known truth (`disparity.simulate`), then the real
# DfE LA figures for 2016/17. **Time budget:** about 30 s on 2 cores (two simulated
# populations of 250,000 pupils, two hierarchical fits).

# %%
import dataclasses
import warnings
from types import MappingProxyType

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import disparity
from disparity.dfe import dfe_cells, shipped_path
from disparity.estimands import unit_effects
from disparity.report.funnel import funnel_proportions, funnel_ratios
from disparity.report.plots import funnel_plot
from disparity.simulate import Truth, simulate_pupils

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)

# %% [markdown]
# ## 400 schools with a known truth
#
# We simulate 250,000 pupils in 400 schools, and the outcome "suspended at least once"
# (about 2% of pupils). To keep the arithmetic visible only three pupil characteristics
# matter here (SEN, FSM and sex: the simulator's other effects are set to zero) and LAs
# do not differ (`sd_la = 0`), so each school's true effect `u` is its difference from an
# average school with the same pupils, on the log-odds scale. School effects are drawn
# from a normal distribution with SD 0.6: a school one SD above average has 1.8 times
# the odds of suspension of an average one.
#
# The model we fit is therefore the true model: `(1 | school)` gives each school a random
# intercept.

# %%
def school_truth(sd_school: float) -> Truth:
    """The simulator's truth with only SEN, FSM and sex effects and no LA differences."""
    base = Truth()
    keep = ("sen", "fsm", "sex")
    effects = {outcome: MappingProxyType({v: levels for v, levels in by_var.items()
                                          if v in keep})
               for outcome, by_var in base.effects.items()}
    return dataclasses.replace(base, sd_la=0.0, sd_school=sd_school,
                               effects=MappingProxyType(effects))


def simulate_schools(sd_school: float, seed: int = 3):
    sim = simulate_pupils(250_000, n_schools=400, n_las=20, seed=seed,
                          truth=school_truth(sd_school))
    cells = disparity.collapse(sim.pupils, by=["sen", "fsm", "sex", "school"])
    return cells, sim.unit_effects("any_susp", "school")


FORMULA = "p(n_any_susp, n_pupils) ~ sen + fsm + sex + (1 | school)"
NO_SUPPRESSION = {"min_pupils": 1, "min_events": 1}  # synthetic data: nothing to protect

cells, true_u = simulate_schools(0.6)
result = disparity.fit(FORMULA, cells, n_draws=400, seed=1, suppression=NO_SUPPRESSION)
print(result.summary())

# %% [markdown]
# The model recovers the school SD (0.60, interval 0.55 to 0.66). Now collect, per school,
# three estimates of its effect beside the truth:
#
# * **raw**: the indirectly standardised ratio `O / E`, the school's suspensions over those
#   expected of its pupils at an average school (from the model's fixed effects). This is
#   what a league table of "rates adjusted for intake" shows;
# * **shrunken**: `exp(u)` at the conditional mode of `u` (the model's best prediction);
# * **truth**: `exp(u)` of the simulation.

# %%
units = result.units
raw = units[units.estimand == "unit_standardised_ratio"].set_index("unit")
shrunk = result.unit_effects("school").query("estimand == 'unit_ratio'").set_index("unit")
schools = pd.DataFrame({
    "pupils": raw.n_pupils, "events": raw.n_events, "expected": raw.expected_events,
    "raw": raw.estimate, "shrunken": shrunk.estimate, "truth": np.exp(true_u),
    "p_value": shrunk.p_value, "flag_fdr": shrunk.flag_fdr,
}).reindex(raw.index)
schools.describe().round(2)

# %% [markdown]
# ## A league table of raw rates
#
# Rank the schools by their raw ratio, as a league table would, and look at the top ten:

# %%
table = schools.sort_values("raw", ascending=False)
table.assign(rank_raw=np.arange(1, len(table) + 1),
             rank_truth=table.truth.rank(ascending=False).astype(int)).head(10).round(2)

# %%
top = 40
by_raw = set(schools.raw.nlargest(top).index)
by_model = set(schools.shrunken.nlargest(top).index)
by_truth = set(schools.truth.nlargest(top).index)
print(f"of the true top {top} schools (the top 10%), the raw table's top {top} holds "
      f"{len(by_raw & by_truth)}, the model's top {top} holds {len(by_model & by_truth)}")
print(f"median size: all schools {schools.pupils.median():.0f} pupils, raw top {top} "
      f"{schools.loc[list(by_raw), 'pupils'].median():.0f}, model top {top} "
      f"{schools.loc[list(by_model), 'pupils'].median():.0f}")

# %% [markdown]
# Schools here differ a lot (an SD of 0.6), so the raw table is not useless: its top 40
# holds 27 of the true top 40. Its mistakes are **small schools**: in the top ten,
# S00253 (221 pupils, 3.9 suspensions expected, 15 seen) is truly 29th and S00163 (348
# pupils) 47th; a school that expects 4 suspensions and has 15 gets a ratio near 4, much
# of it luck. Small schools also fill the bottom of the table (a ratio of 0 from no
# suspensions at all). Their true effects are less extreme than their raw ratios: next
# year they will "regress to the mean", and a school that looked like a problem will look
# as if it had improved. The model's top 40 is made of slightly larger schools (median
# 456 pupils against 424), because it asks for more evidence from a small one.
#
# ## Shrinkage
#
# A multilevel model does not take a small school's ratio at face value. Its prediction
# of `u` is a compromise between the school's own data and the average of all schools,
# weighted by how much the school's data say. For a normal approximation the compromise
# is
#
# $$\hat u_j \approx \frac{\tau^2}{\tau^2 + s_j^2}\,\log(O_j / E_j),$$
#
# with `τ` the SD of school effects and `s_j` the standard error of the school's own log
# ratio (about `1 / sqrt(O_j)`): a school with few expected events is pulled most of the
# way to 1. This is the empirical Bayes estimate (Efron and Morris 1975; Goldstein and
# Spiegelhalter 1996), and on average it is closer to the truth than the raw ratio.

# %%
log_raw = np.log((schools.events + 0.5) / (schools.expected + 0.5))  # finite at O = 0
rmse = lambda est: float(np.sqrt(np.mean((est - np.log(schools.truth)) ** 2)))
print(f"root mean square error on the log scale: raw {rmse(log_raw):.3f}, "
      f"shrunken {rmse(np.log(schools.shrunken)):.3f}")

fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2), sharex=True, sharey=True)
for ax, (name, values) in zip(axes, (("raw O / E", np.exp(log_raw)),
                                     ("shrunken (model)", schools.shrunken))):
    points = ax.scatter(schools.truth, values, c=np.log10(schools.expected), s=12,
                        cmap="viridis")
    ax.plot([0.1, 10], [0.1, 10], color="grey", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks = [0.25, 0.5, 1, 2, 4]
    ax.set_xticks(ticks)
    ax.set_xticklabels(map(str, ticks))
    ax.set_yticks(ticks)
    ax.set_yticklabels(map(str, ticks))
    ax.minorticks_off()
    ax.set_xlim(0.15, 6)
    ax.set_ylim(0.1, 8)
    ax.set_xlabel("true school effect exp(u)")
    ax.set_title(name, fontsize=10)
axes[0].set_ylabel("estimate (log scale)")
bar = fig.colorbar(points, ax=axes, shrink=0.85)
bar.set_label("expected suspensions (log10)")
fig.suptitle("400 simulated schools: raw ratios scatter, shrunken estimates track the "
             "truth", fontsize=10)
plt.show()

# %% [markdown]
# On the left the small schools (dark) spread far above and below the diagonal; on the
# right the model has pulled them in, and the cloud hugs the diagonal, flattened: the
# model cannot tell small schools apart, so it predicts them all near 1. Shrinkage trades
# a little bias for a large cut in variance.
#
# ## Funnel plots
#
# A funnel plot (Spiegelhalter 2005) shows the same raw ratios against the number of
# events expected, with the limits within which 95% and 99.8% of schools would fall *by
# chance alone* if every school were average. The limits narrow as schools grow. The
# package draws it from the run's published tables:

# %%
result.plot("funnel_ratio", term="school")

# %% [markdown]
# By default the package widens the limits for **overdispersion**: real units differ by
# more than chance, and the spread of the points estimates by how much (the factor `phi`
# of Spiegelhalter 2005b). The next plot is the model's own view, the shrunken effects
# ranked with their intervals (a caterpillar plot): the intervals of most schools in the
# middle of the ranking cross 1.

# %%
result.plot("caterpillar", term="school")

# %% [markdown]
# ## Multiplicity: how many flags are false?
#
# Screening 400 schools at a 5% significance level flags about 20 by chance even if no
# school differs. Three screens, scored against the truth ("truly above average" means
# `u > 0`):
#
# 1. raw ratios above the funnel's 95% upper limit (no overdispersion adjustment);
# 2. the same at 99.8% ("3 standard deviations");
# 3. the model: flag a school if the probability that its effect exceeds 1 is high, with
#    the Benjamini-Hochberg procedure keeping the false discovery rate (the expected share
#    of flags that are false) at 5% (`flag_fdr`; Benjamini and Hochberg 1995).

# %%
def screens(schools: pd.DataFrame) -> pd.DataFrame:
    funnel = funnel_ratios(schools.rename_axis("unit").reset_index(), unit="unit", observed="events",
                           expected="expected", overdispersion="none").units.set_index("unit")
    above = funnel.ratio > 1
    flags = {"raw, 95% limit": funnel.outside_95 & above,
             "raw, 99.8% limit": funnel.outside_998 & above,
             "model, FDR 5%": schools.flag_fdr.astype(bool)}
    truly_above = np.log(schools.truth) > 0
    rows = []
    for name, flag in flags.items():
        flag = flag.reindex(schools.index).fillna(False).astype(bool)
        rows.append({"screen": name, "flags": int(flag.sum()),
                     "false flags": int((flag & ~truly_above).sum()),
                     "schools truly above average": int(truly_above.sum()),
                     "found": int((flag & truly_above).sum())})
    return pd.DataFrame(rows)


screens(schools)

# %% [markdown]
# Here half the schools really are above average, so a flag is false only when an
# average-or-better school looks bad. Now the null world: the same pupils, but every
# school exactly average (`sd_school = 0`). Every flag is false.

# %%
null_cells, null_u = simulate_schools(0.0)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    null_result = disparity.fit(FORMULA, null_cells, n_draws=400, seed=1,
                                suppression=NO_SUPPRESSION)
print(null_result.icc().round(3)[["estimand", "term", "estimate", "conf_low", "conf_high"]])
for w in caught:
    print("warning:", str(w.message)[:200])
null_units = null_result.units
null_raw = null_units[null_units.estimand == "unit_standardised_ratio"].set_index("unit")
null_shrunk = null_result.unit_effects("school").query("estimand == 'unit_ratio'")
null_schools = pd.DataFrame({
    "events": null_raw.n_events, "expected": null_raw.expected_events,
    "truth": np.exp(null_u), "flag_fdr": null_shrunk.set_index("unit").flag_fdr})
screens(null_schools)

# %% [markdown]
# About 2.5% of the 400 schools (the upper tail of a 95% screen) are flagged by the raw
# screen with no true difference anywhere; the 99.8% limits cut that to about one; the
# model estimates the school SD near zero (about 0.07) and flags none. With 20,000 schools in
# England a 95% screen flags some 500 average schools a year.
#
# ## Real LAs: overdispersion
#
# The same funnel for the 152 LAs of England, on the published 2016/17 figures: the share
# of pupils suspended at least once. The City of London (one primary school) has its count
# suppressed, so 151 LAs are drawn; a funnel cannot place a count known only to be 1 or 2
# (Example 6 shows what a model can do with it).

# %%
la = dfe_cells(disparity.read_dfe(shipped_path("characteristics_la_national")),
               unit="la", year="2016/17")
suppressed = la[la.n_one_plus_fixed.isna()]
print("suppressed (published as x):", ", ".join(suppressed.la_name))
la = la.dropna(subset=["n_one_plus_fixed"])[["la", "la_name", "n_pupils", "n_one_plus_fixed"]]
la = la.astype({"n_pupils": float, "n_one_plus_fixed": float})
funnel = funnel_proportions(la, unit="la_name", n_events="n_one_plus_fixed")
u = funnel.units
print(f"phi = {funnel.phi:.1f}; outside the 99.8% limits: "
      f"{int(u.outside_998_unadjusted.sum())} of {len(u)} LAs before the overdispersion "
      f"adjustment, {int(u.outside_998.sum())} after")
funnel_plot(u, funnel.limits(), title=f"Pupils suspended at least once, {len(u)} LAs, 2016/17 "
            "(limits widened for overdispersion)", xlabel="Pupils in the LA (log scale)",
            ylabel="Pupils suspended (%)", target=funnel.target)

# %% [markdown]
# With limits for chance alone, most LAs would be "outliers": LAs with hundreds of
# thousands of pupils have limits so narrow that any real difference between them breaks
# through. `phi` measures how much more the LAs vary than chance allows; widening the
# limits by `sqrt(phi)` leaves the few LAs that stand out even among LAs. Which view is
# right depends on the question: a funnel against chance alone asks "is this LA's rate
# different from the national one?" (yes, nearly always), the widened one "is it unusual
# among LAs?". The LAs' pupils differ too, so this is not yet a like-for-like comparison:
# that needs a model with the pupils' characteristics, as above.
#
# ## Exercises
#
# 1. Take the five smallest schools in the raw top ten. What are their expected counts,
#    and how far does the model pull each towards 1?
# 2. Using the shrinkage formula above with `τ = 0.6`, predict the shrunken ratio of a
#    school with `O = 9`, `E = 3`, and compare with the model's estimate for a school
#    like it.
# 3. Flag schools whose effect probably exceeds 1.5 (a material excess), not 1:
#    recompute the unit effects with `threshold=1.5` and score them against `u > log 1.5`.
# 4. Why does the raw 95% screen flag about 10 schools, not 20, in the null world?
#
# ## Answers
#
# **1.**

# %%
small = table.head(10).nsmallest(5, "pupils")
small[["pupils", "events", "expected", "raw", "shrunken", "truth"]].round(2)

# %% [markdown]
# **2.** `log(O / E) = log 3 = 1.10` and `s² ≈ 1 / O = 0.11`, so the weight is
# `0.36 / (0.36 + 0.11) = 0.77` and the prediction `exp(0.77 × 1.10) = 2.3`. (The model
# works with the binomial likelihood and uses `E` rather than `O` for the variance, so it
# shrinks such a school further; compare the schools with a raw ratio of 2.5 to 3.5 on
# fewer than 6 expected events.)

# %%
tau2, O, E = 0.6 ** 2, 9, 3
weight = tau2 / (tau2 + 1 / O)
print(f"normal approximation: weight {weight:.2f}, prediction {np.exp(weight * np.log(O / E)):.2f}")
like = schools[schools.raw.between(2.5, 3.5) & (schools.expected < 6)]
like[["events", "expected", "raw", "shrunken", "truth"]].round(2)

# %% [markdown]
# **3.** `disparity.estimands.unit_effects` recomputes the flags from the fit without
# refitting:

# %%
material = unit_effects(result.fit, result.design, "school", threshold=1.5, n_draws=400)
material = material[material.estimand == "unit_ratio"].set_index("level")
flag = material.flag_fdr.reindex(schools.index).astype(bool)
truly = np.log(schools.truth) > np.log(1.5)
print(f"flags {int(flag.sum())}, false {int((flag & ~truly).sum())}, "
      f"truly above 1.5: {int(truly.sum())}")

# %% [markdown]
# Few flags, nearly all true: at a threshold of 1.5 the model needs strong evidence.
#
# **4.** The screen counts only schools above the *upper* 95% limit, one tail of a
# two-sided 95% interval: 2.5% of 400 is 10.
#
# ## References
#
# * Spiegelhalter, D. J. (2005a). Funnel plots for comparing institutional performance.
#   *Statistics in Medicine* 24, 1185-1202.
# * Spiegelhalter, D. J. (2005b). Handling over-dispersion of performance indicators.
#   *Quality and Safety in Health Care* 14, 347-351.
# * Goldstein, H. and Spiegelhalter, D. J. (1996). League tables and their limitations:
#   statistical issues in comparisons of institutional performance. *JRSS A* 159(3),
#   385-443.
# * Efron, B. and Morris, C. (1975). Data analysis using Stein's estimator and its
#   generalizations. *JASA* 70, 311-319.
# * Benjamini, Y. and Hochberg, Y. (1995). Controlling the false discovery rate. *JRSS B*
#   57(1), 289-300.
# * Leckie, G. and Goldstein, H. (2009). The limitations of using school league tables to
#   inform school choice. *JRSS A* 172(4), 835-851.
