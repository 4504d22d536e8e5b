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
# # 2. Confounding and the adjustment ladder
#
# *What a crude ratio mixes together; what each step of adjustment takes out; why an odds
# ratio is not a risk ratio once events are common; and why adjusting for SEN may remove
# part of the disparity itself.*
#
# **Data.** Simulated pupils with a known truth (`disparity.simulate`), so that every
# estimate can be scored. **Time budget:** about 60 s on 2 cores (three simulated
# populations of 4 million pupils, four hierarchical fits and eight fixed-effect fits).
#
# The official files of Example 1 are one-way margins: they cannot say whether Black
# Caribbean pupils' higher exclusion rate survives comparison with pupils of the same sex,
# FSM eligibility and SEN status. Pupil-level data can; they are not public, so we
# simulate them.

# %%
import dataclasses
import warnings
from types import MappingProxyType

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.special import expit

import disparity
from disparity.simulate import Truth, simulate_pupils

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)
GROUPS = ["White British", "Black Caribbean", "Indian"]
COVARIATES = ["ethnicity", "sen", "fsm", "cin", "sex"]
UNITS = ["school", "la"]

# %% [markdown]
# ## A population with a known truth
#
# `disparity.simulate` draws pupils in schools nested in local authorities (LAs). Each
# pupil's log-odds of permanent exclusion is
#
# $$\eta = \beta_0 + \beta_\text{ethnicity} + \beta_\text{SEN} + \beta_\text{FSM}
#   + \beta_\text{CIN} + \beta_\text{sex} + u_\text{LA} + u_\text{school},$$
#
# with LA and school effects drawn from normal distributions (SD 0.25 and 0.6). The
# coefficients are in `Truth()`: Black Caribbean pupils have log-odds 0.5 above White
# British pupils *of the same SEN, FSM, CIN status, sex, school and LA* (an odds ratio of
# e^0.5 = 1.65), Indian pupils 1.2 below (0.30). The characteristics are correlated as in
# the census: FSM eligibility depends on ethnicity (higher for Black Caribbean pupils,
# lower for Indian pupils) and on the deprivation of the school; SEN depends on sex and
# FSM; CIN on FSM and SEN.
#
# We keep three ethnic groups so the example runs quickly, and simulate two worlds that
# differ only in the intercept: one where 0.1% of pupils are excluded (like permanent
# exclusion) and one where 5% are (like suspension). Schools here are large (about 10,000
# pupils) to keep the number of cells small; nothing below depends on that.

# %%
def population(rate_intercept: float, seed: int = 2) -> tuple[pd.DataFrame, dict]:
    """Simulated pupils of the three groups, the permanent-exclusion intercept replaced."""
    base = Truth()
    truth = dataclasses.replace(base, intercept=MappingProxyType(
        {**base.intercept, "perm_excl": rate_intercept}))
    sim = simulate_pupils(4_000_000, n_schools=400, n_las=40, seed=seed, truth=truth)
    pupils = sim.pupils[sim.pupils.ethnicity.isin(GROUPS)].copy()
    pupils["ethnicity"] = pupils.ethnicity.cat.set_categories(GROUPS)
    return pupils, sim.truth


def cells_of(pupils: pd.DataFrame) -> pd.DataFrame:
    return disparity.collapse(pupils, by=COVARIATES + UNITS)


pupils_rare, truth_rare = population(Truth().intercept["perm_excl"])  # about 0.1%
pupils_common, truth_common = population(-4.3)                       # about 5%
cells = {"0.1%": cells_of(pupils_rare), "5%": cells_of(pupils_common)}
truths = {"0.1%": truth_rare, "5%": truth_common}
for world, c in cells.items():
    print(f"{world} world: {len(c):,} cells, {c.n_pupils.sum():,} pupils, "
          f"{c.n_perm_excl.sum():,} excluded ({c.n_perm_excl.sum() / c.n_pupils.sum():.2%})")
    print(c.groupby("ethnicity", observed=True)[["n_pupils", "n_perm_excl"]].sum()
          .to_string(), "\n")

# %% [markdown]
# A **cell** is one combination of the covariates, the school and the LA, with its pupils
# and its events. With categorical covariates the binomial likelihood of the cells equals
# the Bernoulli likelihood of the pupils (up to a constant), so nothing is lost.
#
# Because the truth is known, we can compute the true risk of every cell, and with it the
# true value of any estimand. Two helpers do that: the true linear predictor of each cell,
# optionally with every pupil's ethnicity set to one level (a counterfactual).

# %%
def by_level(column, value_of) -> np.ndarray:
    """``value_of(level)`` for every row of a column, computed once per level."""
    column = pd.Series(column).astype("category")
    table = np.array([value_of(str(level)) for level in column.cat.categories], dtype=float)
    return table[column.cat.codes.to_numpy()]


def true_eta(c: pd.DataFrame, truth: dict, ethnicity: str | None = None) -> np.ndarray:
    """True log-odds of each cell (or pupil); every row set to ``ethnicity`` if given."""
    t = truth["perm_excl"]
    coef = t["coefficients"]
    eta = np.full(len(c), coef["Intercept"])
    for var in COVARIATES:
        if var == "ethnicity" and ethnicity is not None:
            eta += coef.get(f"ethnicity[T.{ethnicity}]", 0.0)
        else:
            eta += by_level(c[var], lambda lv: coef.get(f"{var}[T.{lv}]", 0.0))
    for unit in UNITS:
        eta += by_level(c[unit], t["effects"][unit].__getitem__)
    return eta


def true_crude_ratio(c, truth, group, reference="White British"):
    """Expected crude risk ratio: mean true risk of the group's pupils over the reference's."""
    risk = expit(true_eta(c, truth))
    mean = lambda g: np.average(risk[c.ethnicity == g], weights=c.n_pupils[c.ethnicity == g])
    return mean(group) / mean(reference)


def true_standardised_ratio(c, truth, group, reference="White British"):
    """True risk ratio standardised to every cell: all pupils as ``group`` vs as ``reference``."""
    p1 = expit(true_eta(c, truth, ethnicity=group))
    p0 = expit(true_eta(c, truth, ethnicity=reference))
    return np.average(p1, weights=c.n_pupils) / np.average(p0, weights=c.n_pupils)

# %% [markdown]
# ## The adjustment ladder
#
# A **crude** ratio compares all Black Caribbean pupils with all White British pupils.
# Each **rung** of the ladder then compares pupils who are alike in one more respect. The
# last rung is the model that generated the data: every covariate, and random intercepts
# for schools within LAs, `(1 | la/school)`, fitted by Laplace maximum likelihood
# (`engine="ml"`, as R's `glmer`).
#
# `disparity.fit` takes the model in one formula. Its `ladder=` option refits the listed
# steps (without group terms these are ordinary logistic regressions, `engine="glm"`) and
# reports each step's **standardised** risk ratio: every pupil's risk predicted as if
# Black Caribbean, and as if White British, averaged, and divided (Muller and MacLehose
# 2014). That is a risk ratio for this population of pupils, whatever the model.

# %%
FORMULA = "p(n_perm_excl, n_pupils) ~ ethnicity + sex + fsm + sen + cin + (1 | la/school)"
LADDER = [
    {"label": "crude", "formula": "ethnicity", "groups": []},
    {"label": "+ sex", "formula": "ethnicity + sex", "groups": []},
    {"label": "+ FSM", "formula": "ethnicity + sex + fsm", "groups": []},
    {"label": "+ SEN and CIN", "formula": "ethnicity + sex + fsm + sen + cin", "groups": []},
]
results = {}
for world, c in cells.items():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the odds-ratio warning at 5% is the point below
        results[world] = disparity.fit(FORMULA, c, reference={"ethnicity": "White British"},
                                       ladder=LADDER, n_draws=400, seed=1)
print(results["5%"].summary())
print("converged:", {world: r.converged for world, r in results.items()})

# %%
def ladder_table(world: str) -> pd.DataFrame:
    r, c, truth = results[world], cells[world], truths[world]
    est = r.estimates
    steps = est[est.estimand == "ladder_rate_ratio"][
        ["step_label", "level", "estimate", "conf_low", "conf_high"]]
    final = r.rate_ratios("ethnicity")[["level", "estimate", "conf_low", "conf_high"]]
    final = final.assign(step_label="+ school and LA (the true model)")
    table = pd.concat([steps, final], ignore_index=True)
    table["truth"] = np.nan
    for g in GROUPS[1:]:
        table.loc[(table.step_label == "crude") & (table.level == g), "truth"] = \
            true_crude_ratio(c, truth, g)
        table.loc[table.step_label.str.startswith("+ school") & (table.level == g), "truth"] = \
            true_standardised_ratio(c, truth, g)
    return table.round(3)


ladder_table("0.1%")

# %% [markdown]
# Read the Black Caribbean rows down the ladder in the 0.1% world. The crude ratio is
# above the model's ratio, because Black Caribbean pupils are more often eligible for FSM,
# and FSM pupils are excluded more; adding FSM brings the ratio down. Sex changes nothing
# (the groups have the same sex ratio). SEN and CIN change little *here*, because in this
# simulation SEN depends on ethnicity only through FSM. The Indian ratio moves the other
# way: Indian pupils are *less* often FSM-eligible, so their crude ratio is too low.
#
# Two rows have a truth. The crude ratio's truth is the expected ratio of the two groups'
# mean risks; the last row's is the standardised ratio computed from the generating model.
# Both intervals cover their truths. At 0.1% even a simulated population of 4 million
# pupils (2.9 million of them in these three groups) leaves the Black Caribbean ratio
# uncertain by about ±20%: its 63,000 pupils yield about 140 exclusions.
#
# (The `ml` engine's default convergence check, a largest scaled gradient below
# `gradient_tol = 0.01` standard errors, holds for both worlds' fits (the line under
# the summary above); `results[world].diagnostics` has the details.)
#
# **Every rung is a correct answer to a different question.** The crude ratio describes
# what happens to Black Caribbean pupils as they are. The adjusted ratios describe how
# pupils who are alike in FSM, SEN, ... compare. Neither is "the" disparity; a report
# should show the ladder, not one rung.
#
# ## Odds ratios are not risk ratios when events are common

# %%
def or_vs_rr(world: str) -> pd.DataFrame:
    r, c, truth = results[world], cells[world], truths[world]
    est = r.estimates
    coef = truth["perm_excl"]["coefficients"]
    rows = []
    for g in GROUPS[1:]:
        term = f"ethnicity[T.{g}]"
        odds = est[(est.estimand == "odds_ratio") & (est.term == term)].estimate.iloc[0]
        rr = r.rate_ratios("ethnicity").set_index("level").loc[g, "estimate"]
        rows.append({"world": world, "group": g, "odds ratio (model)": odds,
                     "odds ratio (truth)": np.exp(coef[term]), "risk ratio (model)": rr,
                     "risk ratio (truth)": true_standardised_ratio(c, truth, g)})
    return pd.DataFrame(rows)


pd.concat([or_vs_rr("0.1%"), or_vs_rr("5%")]).round(3)

# %% [markdown]
# Both worlds have the *same* odds ratios (the same coefficients generated them). At 0.1%
# the risk ratio equals the odds ratio. At 5% the standardised risk ratio of Black
# Caribbean pupils is visibly smaller than the odds ratio, and the Indian one larger:
# for a risk ratio above 1 the odds ratio exaggerates it, below 1 it understates it. With
# risks `p1` and `p0`, `OR = RR (1 - p0) / (1 - p1)`, and in a model with strong
# covariates some cells (boys with SEN support, FSM and CIN) have risks of 30% or more
# even when the average is 5%.
#
# The package warns when this happens (`OddsRatioWarning`), and reports standardised
# risk ratios first. Reading an odds ratio from a logistic model as "times as likely" is
# the commonest error in this literature (Davies, Crombie and Tavakoli 1998).

# %%
fig, axes = plt.subplots(1, 2, figsize=(9.5, 4), sharey=True)
for ax, world in zip(axes, ["0.1%", "5%"]):
    t = ladder_table(world)
    for k, (g, colour) in enumerate(zip(GROUPS[1:], ["#1f4e79", "#e69f00"])):
        part = t[t.level == g].reset_index(drop=True)
        x = np.arange(len(part)) + (k - 0.5) * 0.15
        ax.errorbar(x, part.estimate, yerr=[part.estimate - part.conf_low,
                                            part.conf_high - part.estimate],
                    fmt="o", color=colour, capsize=2, label=g)
        truth_rows = part.truth.notna()
        ax.scatter(x[truth_rows], part.truth[truth_rows], marker="x", s=60, color="#c0392b",
                   zorder=3, label="truth" if k == 0 else None)
    ax.set_xticks(range(len(part)))
    ax.set_xticklabels(["crude", "+ sex", "+ FSM", "+ SEN, CIN", "+ school,\nLA"],
                       fontsize=8)
    ax.axhline(1, color="grey", lw=1)
    ax.set_yscale("log")
    ax.set_yticks([0.2, 0.3, 0.5, 1, 2, 3])
    ax.set_yticklabels(["0.2", "0.3", "0.5", "1", "2", "3"])
    ax.minorticks_off()
    ax.set_title(f"{world} of pupils excluded", fontsize=10)
axes[0].set_ylabel("Standardised risk ratio vs White British\n(log scale, 95% interval)")
axes[0].legend(fontsize=8, loc="center left")
fig.suptitle("The adjustment ladder on simulated data", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## SEN: confounder or mediator?
#
# Adjusting for a variable answers "among pupils alike in it". That is what we want for a
# **confounder**, a common cause of the group and the outcome. It is not what we want for
# a **mediator**, a step on the path from the group to the outcome: adjusting for it
# removes the part of the disparity that runs through it (Rothman, Greenland and Lash
# 2008, chapter 12; VanderWeele 2015).
#
# Ethnicity is fixed at birth, so almost nothing *causes* it: most of the covariates a
# report adjusts for are, if anything, downstream of it. SEN is the sharpest case.
# Identification of SEN is itself uneven by ethnicity (Strand and Lindorff 2018 found
# Black Caribbean pupils over-identified with social, emotional and mental health needs),
# and an exclusion may follow the same judgements of behaviour that lead to an SEN
# identification. If that is so, "the ratio after adjusting for SEN" hides part of the
# disparity in the SEN coefficient.
#
# We make it so. In the 5% world, a Black Caribbean pupil with no recorded SEN is
# identified with SEN support with probability 0.2, and exclusions are redrawn from the
# same true model. Now SEN is a mediator of ethnicity.

# %%
rng = np.random.default_rng(7)
mediated = pupils_common.copy()
mediated["sen_before"] = mediated.sen
switch = (mediated.ethnicity == "Black Caribbean").to_numpy() & \
    (mediated.sen == "none").to_numpy() & (rng.random(len(mediated)) < 0.2)
mediated.loc[switch, "sen"] = "support"
eta = true_eta(mediated, truth_common)
mediated["perm_excl"] = (rng.random(len(mediated)) < expit(eta)).astype("int8")
print(pd.crosstab(mediated.ethnicity, mediated.sen, normalize="index").round(3))

# %% [markdown]
# Two truths now exist. The **total** effect lets SEN follow ethnicity: every pupil as
# Black Caribbean (with the extra identification) against every pupil as White British.
# The **direct** effect holds each pupil's recorded SEN fixed.

# %%
def mediated_truths(p: pd.DataFrame, truth: dict) -> dict[str, float]:
    as_is = lambda sen: p.assign(sen=sen)
    p0 = expit(true_eta(as_is(p.sen_before), truth, ethnicity="White British")).mean()
    none = (p.sen_before == "none").to_numpy()
    stay = expit(true_eta(as_is(p.sen_before), truth, ethnicity="Black Caribbean"))
    moved = expit(true_eta(as_is(np.where(none, "support", p.sen_before)), truth,
                           ethnicity="Black Caribbean"))
    p1_total = np.mean(np.where(none, 0.8 * stay + 0.2 * moved, stay))
    direct = (expit(true_eta(p, truth, ethnicity="Black Caribbean")).mean()
              / expit(true_eta(p, truth, ethnicity="White British")).mean())
    return {"total": p1_total / p0, "direct": direct}


mediated_cells = disparity.collapse(mediated.drop(columns="sen_before"), by=COVARIATES + UNITS)
fits = {}
for label, formula in (("without SEN", "ethnicity + sex + fsm + cin"),
                       ("with SEN", "ethnicity + sex + fsm + cin + sen")):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits[label] = disparity.fit(f"p(n_perm_excl, n_pupils) ~ {formula} + (1 | la/school)",
                                    mediated_cells, reference={"ethnicity": "White British"},
                                    scope="fit", n_draws=400, seed=1)
truth_m = mediated_truths(mediated, truth_common)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the odds-ratio warning again: the ratios are risk ratios
    mediation = pd.DataFrame([
        {"model": label, "estimand": {"without SEN": "total", "with SEN": "direct"}[label],
         **fits[label].rate_ratios("ethnicity", n_draws=400).set_index("level").loc[
             "Black Caribbean", ["estimate", "conf_low", "conf_high"]].to_dict(),
         "truth": truth_m[{"without SEN": "total", "with SEN": "direct"}[label]]}
        for label in fits])
mediation.round(3)

# %% [markdown]
# The model without SEN recovers the total effect; the model with SEN recovers the direct
# effect, which is smaller. Neither is wrong: they answer different questions, and the
# difference between them is the part of the disparity that runs through SEN
# identification. The package's ladder carries a note saying so on every row
# (`disparity.estimands.MEDIATOR_NOTE`). Nothing in the data can tell a confounder from a
# mediator; only knowledge of how the data arose can.
#
# ## Exercises
#
# 1. In the 0.1% world, by how much does the crude Black Caribbean ratio exceed the fully
#    adjusted one, and which single rung accounts for most of the change?
# 2. Compute `RR (1 - p0) / (1 - p1)` for a cell with baseline risk `p0 = 0.3` and an odds
#    ratio of 1.65. What risk ratio does an odds ratio of 1.65 mean in such a cell?
# 3. The package also offers `group_effects="conditional"` (all school and LA effects at
#    zero: a typical school) and `"integrated"` (averaged over the distribution of school
#    effects: a new school). Compute both for the 5% world. Why do they differ from
#    `"observed"` more at 5% than at 0.1%?
# 4. In the mediated world, what share of the total excess risk of Black Caribbean pupils
#    runs through SEN identification, on the truth? (Use `(total - direct) / (total - 1)`.)
#
# ## Answers
#
# **1.** Compare the first and last rows for Black Caribbean pupils in the 0.1% world; the
# FSM rung moves the ratio most.

# %%
t = ladder_table("0.1%")
bc = t[t.level == "Black Caribbean"].set_index("step_label").estimate
print(bc.round(3).to_string())
print(f"crude / adjusted = {bc.iloc[0] / bc.iloc[-1]:.2f}; largest single step: "
      f"{bc.diff().abs().idxmax()!r}")

# %% [markdown]
# **2.** Solve `OR = [p1/(1-p1)] / [p0/(1-p0)]` for `p1`, then divide by `p0`:

# %%
p0, odds_ratio = 0.3, 1.65
p1 = odds_ratio * p0 / (1 - p0 + odds_ratio * p0)
print(f"p1 = {p1:.3f}, risk ratio = {p1 / p0:.3f} (check: RR (1-p0)/(1-p1) = "
      f"{(p1 / p0) * (1 - p0) / (1 - p1):.3f})")

# %% [markdown]
# **3.** On the log scale a school effect adds to every pupil's linear predictor; for the
# logit link a ratio of *risks* then depends on where on the curve a pupil sits. At 0.1%
# the logistic curve is nearly exponential, so the ratio hardly depends on the school
# effects; at 5% it does.

# %%
for world in ("0.1%", "5%"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odds ratios overstate risk ratios at 5%: known
        row = {ge: results[world].rate_ratios("ethnicity", group_effects=ge, n_draws=200)
               .set_index("level").loc["Black Caribbean", "estimate"]
               for ge in ("observed", "conditional", "integrated")}
    print(world, {k: round(float(v), 3) for k, v in row.items()})

# %% [markdown]
# **4.** On the truth:

# %%
print(f"share through SEN: {(truth_m['total'] - truth_m['direct']) / (truth_m['total'] - 1):.0%}")

# %% [markdown]
# ## References
#
# * Muller, C. J. and MacLehose, R. F. (2014). Estimating predicted probabilities from
#   logistic regression: different methods correspond to different target populations.
#   *International Journal of Epidemiology* 43(3), 962-970.
# * Davies, H. T. O., Crombie, I. K. and Tavakoli, M. (1998). When can odds ratios
#   mislead? *BMJ* 316, 989-991.
# * Zhang, J. and Yu, K. F. (1998). What's the relative risk? A method of correcting the
#   odds ratio in cohort studies of common outcomes. *JAMA* 280(19), 1690-1691.
# * Rothman, K. J., Greenland, S. and Lash, T. L. (2008). *Modern Epidemiology*, 3rd ed.,
#   chapters 12 (causal diagrams) and 15 (standardisation). Lippincott Williams & Wilkins.
# * VanderWeele, T. J. (2015). *Explanation in Causal Inference: Methods for Mediation and
#   Interaction*. Oxford University Press.
# * Strand, S. and Lindorff, A. (2018). *Ethnic disproportionality in the identification
#   of Special Educational Needs (SEN) in England: extent, causes and consequences*.
#   University of Oxford.
# * Timpson, E. (2019). *Timpson Review of School Exclusion*. Department for Education.
