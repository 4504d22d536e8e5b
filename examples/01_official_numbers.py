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
# # 1. Reading the official numbers
#
# *Crude rates and ratios from the Department for Education's published exclusion
# statistics; the IDEA rules for when a ratio may be computed at all; and Simpson's
# paradox across school types.*
#
# **Data.** The real DfE files shipped in `data/dfe/` (England, 2016/17; Open Government
# Licence v3.0; sources and checksums in `data/README.md`). **Time budget:** about 15 s
# on 2 cores (the LA file is read three times, about 2 s each).
#
# Every number in this notebook is a published count, or arithmetic on published counts.
# Nothing is modelled yet: this is what a reader of the official tables can see, and what
# they cannot.

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import disparity
from disparity.dfe import dfe_cells, shipped_path

pd.set_option("display.width", 120)
pd.set_option("display.max_columns", 12)
NATIONAL = shipped_path("characteristics_national")
LA_FILE = shipped_path("characteristics_la_national")

# %% [markdown]
# ## The files
#
# DfE publishes its exclusion statistics as "underlying data" CSV files on Explore
# Education Statistics. `disparity.read_dfe` reads one into a long, tidy frame: one row per
# published row, with canonical names (`n_pupils` is DfE's `headcount`, `n_perm_excl` its
# `perm_excl`), and the suppression markers turned into missing values *with a reason*.
# Three conventions of the publisher matter for everything that follows:
#
# * **Suppression.** A count of 1 or 2 is published as `x` (and so is a rate built on
#   one). It is not missing: it is known to be 1 or 2. Example 6 is about what that means.
# * **Rounding.** National and regional counts are rounded to the nearest 5; LA counts are
#   not. A national ratio built on a count of 25 can be off by 10% from rounding alone.
# * **Margins only.** The characteristics files are one-way margins: pupils and exclusions
#   by ethnicity, *or* by FSM, *or* by SEN, never by ethnicity *and* FSM. Adjusting one
#   characteristic for another is impossible with them (Examples 2 and 3 use simulated
#   pupils for that).

# %%
national = disparity.read_dfe(NATIONAL)
print(national.attrs["source"]["file"], "-", len(national), "rows")
national.query("year == '2016/17' and school_type == 'Total' and characteristic == 'total'")[
    ["year", "geographic_level", "school_type", "n_pupils", "n_perm_excl",
     "n_fixed_excl", "n_one_plus_fixed"]]

# %% [markdown]
# About 8.0 million pupils, 7,720 permanent exclusions (0.10%) and 381,865 fixed-period
# exclusions ("suspensions" since 2020/21) of 183,475 pupils (2.3% were suspended at least
# once). Note the three different outcomes:
#
# | outcome | counts | a per-pupil... |
# |---|---|---|
# | `perm_excl` | pupils permanently excluded | **risk** (a proportion) |
# | `one_plus_fixed` | pupils with at least one fixed-period exclusion | **risk** |
# | `fixed_excl` | fixed-period exclusions (a pupil can have several) | **rate** (can exceed 1) |
#
# ## Crude risks and risk ratios
#
# The **risk** of a group is its events over its pupils. The **risk ratio** divides it by
# the risk of a comparison group. `disparity.rates` computes both, with intervals, for any
# characteristic. Here the comparison is White British pupils (`reference=`):

# %%
crude = disparity.rates(NATIONAL, outcome="perm_excl", by="ethnicity", year="2016/17",
                        reference="White British")
crude[["group", "n_events", "n_pupils", "risk", "risk_ratio", "conf_low", "conf_high",
       "odds_ratio", "status"]].round(4)

# %% [markdown]
# How to read a row: Black Caribbean pupils were permanently excluded at 0.28% against
# 0.10% for White British pupils, a risk ratio of 2.79 (95% Katz interval 2.47 to 3.16).
# The interval describes sampling variation *as if* these pupils were a sample from a
# larger population. For a census that is a model of the process that generates
# exclusions, not of survey sampling; it still says how much a ratio built on 260 events
# could move by chance.
#
# Three things to notice:
#
# * The **odds ratio** is within 0.2% of the risk ratio. When events are rare
#   (0.1%), `odds = p / (1 - p)` is almost `p`. Example 2 shows where this breaks.
# * **Chinese** pupils have no ratio: the count was published as `x` (1 or 2).
#   `status` says so. Dropping the row, or treating it as 0, would both be wrong.
# * The **comparison group** matters. IDEA's default compares a group with *all other
#   pupils* (`comparison="others"`): White British pupils then get a ratio too (1.16,
#   because the others include the low-rate Asian groups).

# %%
fig, ax = plt.subplots(figsize=(7.5, 5.5))
shown = crude[crude.status == "calculated"].sort_values("risk_ratio")
y = np.arange(len(shown))
ax.errorbar(shown.risk_ratio, y, xerr=[shown.risk_ratio - shown.conf_low,
                                       shown.conf_high - shown.risk_ratio],
            fmt="o", color="#1f4e79", ecolor="#7f9fbf", capsize=2)
ax.axvline(1, color="grey", lw=1)
ax.set_xscale("log")
ax.set_xticks([0.2, 0.5, 1, 2, 4])
ax.set_xticklabels(["0.2", "0.5", "1", "2", "4"])
ax.set_yticks(y)
ax.set_yticklabels(shown.group)
ax.set_xlabel("Risk ratio of permanent exclusion vs White British (log scale), 95% interval")
ax.set_title("England 2016/17: crude risk ratios by ethnicity (DfE)", fontsize=11)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## The IDEA rules: when may a ratio be computed?
#
# In the United States the Individuals with Disabilities Education Act (IDEA) requires
# states to find "significant disproportionality" by race and ethnicity in discipline,
# and its regulations (34 CFR 300.647) fix how: a **risk ratio** for each group within
# each district (here: each LA), against all other pupils of the district, computed only
# where
#
# * the group and its comparison group each have at least a **minimum n-size** of pupils
#   (at most 30 is "presumptively reasonable"), and
# * each has at least a **minimum cell size** of events (at most 10).
#
# A ratio above a state's **threshold** is flagged; a state may wait for it to be exceeded
# in up to three consecutive years. England has no such rule, but the same questions
# arise when anyone ranks LAs by a ratio. `disparity.rates` applies the IDEA defaults
# (30 pupils, 10 events) and says, row by row, why a ratio was not computed.

# %%
la_perm = disparity.rates(LA_FILE, outcome="perm_excl", by="ethnicity", unit="la",
                          year="2016/17")
print(f"{la_perm.la.nunique()} LAs x {la_perm.group.nunique()} groups = {len(la_perm)} rows")
la_perm.status.value_counts()

# %% [markdown]
# Of 2,870 LA-by-ethnicity permanent-exclusion ratios, **85** can be computed, 58 of them
# for White British pupils. With an event rate of 0.1%, a group needs about 10,000 pupils
# in one LA to expect 10 exclusions: only the largest groups of the largest LAs get there
# (5 LAs for Black Caribbean pupils). The rules are doing their job: a ratio
# built on 2 exclusions is noise. But it means that, at LA level, *crude* permanent
# exclusion ratios cannot answer the question at all. Models that borrow strength across
# LAs (Example 3) can.
#
# Suspensions are 20 times as common, so far more ratios pass:

# %%
la_susp = disparity.rates(LA_FILE, outcome="one_plus_fixed", by="ethnicity", unit="la",
                          year="2016/17", threshold=2.0)
bc = la_susp[la_susp.group == "Black Caribbean"].copy()
print(bc.status.value_counts().to_string())
print(f"flagged above a risk ratio of 2: {int(bc.flag.sum())} of {len(bc)} LAs")

# %%
colours = {"calculated": "#1f4e79", "not_calculated:cell_size": "#e69f00",
           "not_calculated:n_size": "#cc79a7", "not_calculated:suppressed": "#999999"}
labels = {"calculated": "calculated", "not_calculated:cell_size": "fewer than 10 events",
          "not_calculated:n_size": "fewer than 30 pupils",
          "not_calculated:suppressed": "a count suppressed (x): not drawn"}
bc["rr_shown"] = (bc.risk / bc.comparison_risk).where(bc.n_pupils > 0)
fig, ax = plt.subplots(figsize=(7.5, 4.8))
for status, part in bc.groupby("status"):
    ok = part.rr_shown.notna() & (part.rr_shown > 0)
    ax.scatter(part.n_pupils[ok], part.rr_shown[ok], s=18, color=colours[status],
               label=labels[status] + f" ({len(part)})", alpha=0.85)
ax.axhline(2.0, color="#c0392b", lw=1, ls="--")
ax.text(12, 2.1, "threshold 2", color="#c0392b", fontsize=9)
ax.axhline(1.0, color="grey", lw=1)
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_yticks([0.5, 1, 2, 5, 10])
ax.set_yticklabels(["0.5", "1", "2", "5", "10"])
ax.minorticks_off()
ax.set_xlabel("Black Caribbean pupils in the LA (log scale)")
ax.set_ylabel("Risk ratio vs the LA's other pupils (log scale)")
ax.set_title(f"Suspension (one or more), Black Caribbean pupils, {len(bc)} LAs, 2016/17\n"
             "colour: whether the IDEA rules allow the ratio", fontsize=10)
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
plt.show()

# %% [markdown]
# The picture behind the rule: where Black Caribbean pupils are few, the arithmetic
# ratios (drawn here whether or not the rules allow them, zeros left off the log axis)
# scatter from 0 to over 10; where they are many (over 3,000), ratios settle between
# about 2.3 and 3.6.
# A threshold applied to raw ratios flags small LAs for their noise. The minimum sizes
# guard against the worst of it, at the price of saying nothing about most LAs.
#
# ## Simpson's paradox across school types
#
# The national file also splits every margin by school type: state-funded primary,
# state-funded secondary and special schools. Compare Black Caribbean pupils with pupils
# of White and Black Caribbean heritage, on fixed-period exclusions per pupil (a **rate**:
# exclusions, not pupils):

# %%
by_type = dfe_cells(national, by="ethnicity", year="2016/17", school_type=None)
pair = ["Black Caribbean", "White and Black Caribbean"]
by_type = by_type[by_type.ethnicity.isin(pair)]
table = by_type.pivot_table(index="school_type", columns="ethnicity",
                            values=["n_pupils", "n_fixed_excl"], aggfunc="sum",
                            observed=True)
rates = table["n_fixed_excl"] / table["n_pupils"]
simpson = pd.DataFrame({
    "pupils BC": table["n_pupils"][pair[0]], "pupils WBC": table["n_pupils"][pair[1]],
    "rate BC": rates[pair[0]], "rate WBC": rates[pair[1]],
    "rate ratio BC / WBC": rates[pair[0]] / rates[pair[1]],
}).loc[["State-funded primary", "State-funded secondary", "Special", "Total"]]
simpson.round(3)

# %% [markdown]
# Within **every** school type Black Caribbean pupils have the *lower* rate (a ratio of
# 0.90 to 0.93), yet overall they have the *higher* rate (1.05). No arithmetic error: the
# two groups are spread differently across school types.

# %%
share = table["n_pupils"].drop(index="Total")
share = share / share.sum()
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.8))
types = ["State-funded primary", "State-funded secondary", "Special"]
x = np.arange(len(types))
for k, (group, colour) in enumerate(zip(pair, ["#1f4e79", "#e69f00"])):
    left.bar(x + (k - 0.5) * 0.38, 100 * rates.loc[types, group], 0.38, color=colour,
             label=group)
    right.bar(x + (k - 0.5) * 0.38, 100 * share.loc[types, group], 0.38, color=colour,
              label=group)
for axis, title, unit in ((left, "Fixed-period exclusions per 100 pupils", ""),
                          (right, "Where each group's pupils are", " (% of the group)")):
    axis.set_xticks(x)
    axis.set_xticklabels(["primary", "secondary", "special"])
    axis.set_title(title + unit, fontsize=10)
left.legend(fontsize=8)
fig.suptitle("Simpson's paradox, England 2016/17: lower within every school type, "
             "higher overall", fontsize=10)
fig.tight_layout()
plt.show()

# %% [markdown]
# Secondary pupils are suspended about five times as often as primary pupils, and 46% of
# Black Caribbean pupils are in secondary schools against 37% of pupils of White and
# Black Caribbean heritage (a younger group, growing fast). The overall rate of each group
# is a weighted average of its type-specific rates, and the weights differ. This is
# **Simpson's paradox** (Simpson 1951; Wagner 1982): a comparison of totals can reverse
# every comparison within strata when the strata weights differ between the groups.
#
# Which comparison is right depends on the question. "Are Black Caribbean pupils
# suspended more often than pupils of White and Black Caribbean heritage?" Yes, by 5%.
# "...than pupils of the same phase of education?" No, by about 8%. School type here is
# mostly a proxy for age, which is not caused by ethnicity, so the within-type comparison
# is usually the one wanted. The general remedy is **standardisation**: apply each
# group's type-specific rates to one common mix of school types (exercise 4), or,
# with many characteristics at once, a model (Example 2).
#
# The national counts are rounded to 5, so the special-school rates rest on counts known
# only to within 2 either way; the primary and secondary counts are in the thousands and
# rounding does not matter.
#
# ## Exercises
#
# 1. From the national table, compute the risk ratio of permanent exclusion of Gypsy/Roma
#    pupils against White British pupils, and its 95% Katz interval,
#    `exp(log RR ± 1.96 * sqrt(1/a - 1/n1 + 1/c - 1/n0))`, by hand. Check it against
#    `crude`.
# 2. For Black Caribbean against White British pupils, compare the odds ratio and the risk
#    ratio for permanent exclusion (0.1%) and for one or more suspensions (about 2%).
#    Which pair differs more, and why?
# 3. How many Black Caribbean LA ratios of suspension can be computed with a minimum cell
#    size of 5 instead of 10? What is gained, and what is the risk?
# 4. Standardise the two groups' fixed-period exclusion rates to the school-type mix of
#    the two groups together (direct standardisation). Is the standardised ratio closer
#    to the within-type ratios or to the overall one?
# 5. Look for a second reversal in the same file: permanent exclusions of pupils with an
#    EHC plan against pupils on SEN support, by school type. Is it a full reversal?
#
# ## Answers
#
# The answers are computed below, so they are checked every time this page is built.
#
# **1.** Gypsy/Roma: 90 exclusions among 25,565 pupils; White British 5,470 among 5,439,960.

# %%
g = crude.set_index("group")
a, n1 = g.loc["Gypsy/Roma", ["n_events", "n_pupils"]].astype(float)
c, n0 = g.loc["White British", ["n_events", "n_pupils"]].astype(float)
rr = (a / n1) / (c / n0)
se = np.sqrt(1 / a - 1 / n1 + 1 / c - 1 / n0)
print(f"by hand: {rr:.3f} ({rr * np.exp(-1.96 * se):.3f} to {rr * np.exp(1.96 * se):.3f})")
print("package:", g.loc["Gypsy/Roma", ["risk_ratio", "conf_low", "conf_high"]].round(3).tolist())

# %% [markdown]
# **2.** With a 0.1% baseline the two agree to 0.2%; at about 2% they differ by almost
# 4%, and the odds ratio is the further from 1. `OR = RR * (1 - p0) / (1 - p1)`:
# the correction factor is about 1 when both risks are small.

# %%
susp = disparity.rates(NATIONAL, outcome="one_plus_fixed", by="ethnicity", year="2016/17",
                       reference="White British").set_index("group")
for name, t in (("permanent exclusion", g), ("one or more suspensions", susp)):
    r = t.loc["Black Caribbean"]
    print(f"{name:>24}: baseline {t.loc['White British', 'risk']:.2%}, "
          f"RR {r.risk_ratio:.3f}, OR {r.odds_ratio:.3f}")

# %% [markdown]
# **3.** Lowering the cell size admits LAs with 5 to 9 suspensions. More LAs get a
# number, but each of those ratios rests on a handful of events: its interval is wide,
# and the LAs above a threshold will be mostly the ones with the largest chance
# fluctuations (Example 3 quantifies this).

# %%
low = disparity.rates(LA_FILE, outcome="one_plus_fixed", by="ethnicity", unit="la",
                      year="2016/17", min_cell_size=5)
low_bc = low[low.group == "Black Caribbean"]
print("calculated with 10 events:", int((bc.status == "calculated").sum()),
      "| with 5 events:", int((low_bc.status == "calculated").sum()))
new = low_bc[(low_bc.status == "calculated").to_numpy() & (bc.status != "calculated").to_numpy()]
print("median width (high/low) of the new intervals:",
      round(float((new.conf_high / new.conf_low).median()), 1))

# %% [markdown]
# **4.** Direct standardisation to the pooled school-type mix gives a ratio close to the
# within-type ratios, below 1:

# %%
mix = table["n_pupils"].drop(index="Total").sum(axis=1)
mix = mix / mix.sum()
standardised = (rates.loc[types].mul(mix.loc[types], axis=0)).sum()
print("standardised rates per 100 pupils:", (100 * standardised).round(2).to_dict())
print(f"standardised ratio BC / WBC: {standardised[pair[0]] / standardised[pair[1]]:.3f}")

# %% [markdown]
# **5.** Pupils with an EHC plan have *lower* permanent-exclusion risks than pupils on
# SEN support overall and in secondary and special schools, but *higher* in primary
# schools: a partial reversal, not a full one. Most pupils with an EHC plan in special
# schools, where permanent exclusion is rare, pull the overall rate down.

# %%
sen = dfe_cells(national, by="sen", year="2016/17", school_type=None)
sen = sen[sen.sen.isin(["ehcp", "support"])].pivot_table(
    index="school_type", columns="sen", values=["n_perm_excl", "n_pupils"],
    aggfunc="sum", observed=True)
risk = sen["n_perm_excl"] / sen["n_pupils"]
(risk["ehcp"] / risk["support"]).rename("risk ratio EHC plan / SEN support").round(2)

# %% [markdown]
# ## References
#
# * Department for Education (2018). *Permanent and fixed-period exclusions in England:
#   2016 to 2017*. National Statistics; underlying data and methodology.
# * 34 CFR 300.646-300.647, "Significant disproportionality", final regulations,
#   81 FR 92376 (19 December 2016).
# * Bollmer, J., Bethel, J., Garrison-Mogren, R. and Brauen, M. (2007). Using the risk
#   ratio to assess racial/ethnic disproportionality in special education at the
#   school-district level. *Journal of Special Education* 41(3), 186-198.
# * Katz, D., Baptista, J., Azen, S. P. and Pike, M. C. (1978). Obtaining confidence
#   intervals for the risk ratio in cohort studies. *Biometrics* 34, 469-474.
# * Simpson, E. H. (1951). The interpretation of interaction in contingency tables.
#   *JRSS B* 13(2), 238-241.
# * Wagner, C. H. (1982). Simpson's paradox in real life. *The American Statistician*
#   36(1), 46-48.
# * Breslow, N. E. and Day, N. E. (1987). *Statistical Methods in Cancer Research*,
#   vol. II, chapter 2 (standardisation). IARC.
