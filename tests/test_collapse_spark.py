"""Collapse a PySpark DataFrame in Spark local mode (through Ibis's pyspark backend).

One Spark session serves every test here (starting one takes seconds). The tests skip,
saying why, only where PySpark or a Java runtime is absent; CI installs both.

Oracles: the in-memory path (:func:`disparity.cells.collapse`) on the same rows, and the
wording of the same problem found by DuckDB (rows named by key, as in any database table).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from disparity.cells import collapse as collapse_in_memory
from disparity.collapse_sql import collapse_source
from disparity.errors import ValidationError

pytestmark = [
    pytest.mark.spark,
    # py4j leaves its sockets to the garbage collector
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


@pytest.fixture(scope="module")
def spark():
    if shutil.which("java") is None:
        pytest.skip("no Java runtime on PATH: Spark cannot start (apt-get install "
                    "openjdk-17-jre-headless)")
    pytest.importorskip("pyspark", reason="PySpark is not installed (pip install -e '.[spark]')")
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[1]")
        .appName("disparity-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "1")
        .config("spark.default.parallelism", "1")
        .config("spark.sql.adaptive.enabled", "false")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _pupils(n: int = 400, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    school = rng.integers(1, 6, n)
    return pd.DataFrame({
        "pupil_id": np.arange(1, n + 1),
        "year": rng.choice(["2016/17", "2017/18"], n),
        "la": [f"E{s % 2}" for s in school],
        "school": [f"S{s}" for s in school],
        "sen": rng.choice(["none", "support", "ehcp"], n),
        "perm_excl": rng.integers(0, 2, n),
        "n_susp": rng.integers(0, 4, n),
    })


def test_spark_dataframe_equals_pandas(spark):
    frame = _pupils()
    by = ["sen", "school", "la"]
    result = collapse_source(spark.createDataFrame(frame), by)
    assert result.engine == "pyspark"
    expected = collapse_in_memory(frame, by)
    pd.testing.assert_frame_equal(result.cells, expected)
    assert result.totals == {"n_pupils": len(frame), "n_perm_excl": int(frame.perm_excl.sum()),
                             "n_susp": int(frame.n_susp.sum())}


def test_spark_problems_are_named_by_key(spark):
    frame = _pupils(20)
    frame.loc[[4, 11], "perm_excl"] = 2
    with pytest.raises(ValidationError) as err:
        collapse_source(spark.createDataFrame(frame), ["sen"], unit_nesting=())
    assert "no row order, so rows are named by their key (pupil_id, year)" in str(err.value)
    expected = (
        "column 'perm_excl': 2 rows have values other than 0 and 1: 2 (rows pupil_id=5 "
        f"year={frame.year[4]!r}, pupil_id=12 year={frame.year[11]!r} of 20). 'perm_excl' is a "
        "binary outcome (1 = it happened to the pupil that year, 0 = not): recode it to 0 and "
        "1, or, if it counts events, pass outcomes={'perm_excl': 'count'} to collapse."
    )
    assert err.value.problems == [expected]
