"""Model formulas and row filters, parsed by a small grammar and never executed as Python.

A model file is somebody else's text, and reviewers run model files written by others, so
nothing in one is handed to Python's ``eval``. A formula is tokenised and parsed here; any
token outside the grammar is a :class:`~disparity.errors.SpecError` naming the token and
listing what is allowed, raised before any data are read. Fixed-effect factors are then
evaluated by a small interpreter over numpy arrays (:class:`SafeFactor`), whose only names
are data columns and the allow-listed transforms in :data:`TRANSFORMS`; no Python builtins
exist in it. patsy is used only for the formula algebra and the design matrices, with these
factors in place of its own (which would ``eval`` their code).

The grammar (lme4/bambi style)::

    formula    := [response "~"] rhs
    response   := "p(" column "," column ")"       binomial: events out of trials
                | column                          counts (exposure from offset(...))
    rhs        := term (("+" | "-") term)*
    term       := factor ((":" | "*" | "/") factor)*   ":" binds tighter than "*", "/"
    factor     := column | Q("odd name") | "0" | "1" | "(" rhs ")"
                | "C(" column ["," "level"] ")"     categorical, optional reference level
                | "I(" arithmetic ")"
                | transform "(" arithmetic ")"     log, log1p, exp, sqrt, center, ...
                | "offset(" arithmetic ")"         counts: log-exposure (top level only)
                | "(" "1" ["+" columns] ("|" | "||") group ")"   random effects (top level)
    group      := column ("/" column)*             "la/school": schools nested in LAs
    arithmetic := numbers, columns, + - * / ** and parentheses, and the transforms

A row filter (``[data] where``) uses the same tokens::

    filter     := disjunct ("or" disjunct)*;  disjunct := conjunct ("and" conjunct)*
    conjunct   := "not" conjunct | "(" filter ")" | comparison
    comparison := value ("==" | "!=" | "<" | "<=" | ">" | ">=") value
                | value ["not"] "in" "[" value ("," value)* "]"
    value      := arithmetic | "a level in quotes"

Examples
--------
>>> f = parse_formula("p(n_perm_excl, n_pupils) ~ ethnicity + sen + (1 | la/school)")
>>> f.events, f.trials, f.fixed, f.groups
('n_perm_excl', 'n_pupils', 'ethnicity + sen', ('la/school',))
>>> parse_formula("sen + I(0*__import__('os').system('id'))")
Traceback (most recent call last):
...
disparity.errors.SpecError: formula "sen + I(0*__import__('os').system('id'))": the name '__import__' (position 11) is not allowed: names starting with '__' are reserved. A formula may hold column names, Q("odd name"), the operators + - : * / and parentheses, the numbers 0 and 1 (intercept), C(column) or C(column, "reference level"), I(arithmetic on columns and numbers) and the transforms log, log1p, exp, sqrt, center, standardize; random effects as (1 | group), (1 | la/school) or (1 + variable || group)
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from disparity.errors import SpecError

__all__ = ["Formula", "parse_formula", "formula_columns", "parse_filter", "Filter",
           "SafeFactor", "model_desc", "TRANSFORMS", "STATEFUL"]

#: Transforms allowed in a formula (stateless: applied elementwise).
TRANSFORMS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "log1p": np.log1p, "exp": np.exp, "sqrt": np.sqrt,
}
#: Stateful transforms: their centre and scale are learnt on the data the model is fitted
#: to and reused for counterfactual and new rows (as patsy's ``center`` and ``standardize``).
STATEFUL: tuple[str, ...] = ("center", "standardize")
_KEYWORDS = ("and", "or", "not", "in")

_ALLOWED = (
    "A formula may hold column names, Q(\"odd name\"), the operators + - : * / and "
    "parentheses, the numbers 0 and 1 (intercept), C(column) or C(column, \"reference "
    "level\"), I(arithmetic on columns and numbers) and the transforms "
    + ", ".join([*TRANSFORMS, *STATEFUL])
    + "; random effects as (1 | group), (1 | la/school) or (1 + variable || group)"
)
_ALLOWED_FILTER = (
    "A filter may hold column names, Q(\"odd name\"), numbers, levels in quotes, the "
    "comparisons == != < <= > >=, `in [...]` and `not in [...]`, and, or, not, parentheses "
    "and arithmetic (+ - * / **) with the transforms " + ", ".join(TRANSFORMS)
)


# --------------------------------------------------------------------------- tokens
@dataclass(frozen=True)
class _Token:
    kind: str   # name, number, string, op, end
    text: str
    pos: int    # 1-based character position


_OPS = ("||", "**", "==", "!=", "<=", ">=", "~", "+", "-", "*", "/", ":", "|", "(", ")", ",",
        "<", ">", "[", "]", "=")
_NUMBER = re.compile(r"(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _tokens(text: str, what: str, allowed: str) -> list[_Token]:
    out: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        m = _NAME.match(text, i)
        if m:
            name = m.group(0)
            if name.startswith("__"):
                raise _error(what, text, f"the name {name!r} (position {i + 1}) is not "
                             "allowed: names starting with '__' are reserved", allowed)
            out.append(_Token("name", name, i + 1))
            i = m.end()
            if i < n and text[i] == ".":
                raise _error(what, text, f"'.' after {name!r} (position {i + 1}) is "
                             "attribute access, which is not allowed (write log(x), not "
                             "np.log(x))", allowed)
            continue
        m = _NUMBER.match(text, i)
        if m:
            out.append(_Token("number", m.group(0), i + 1))
            i = m.end()
            continue
        if ch in "'\"":
            j, chars = i + 1, []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n and text[j + 1] in (ch, "\\"):
                    j += 1
                chars.append(text[j])
                j += 1
            if j >= n:
                raise _error(what, text, f"the quote at position {i + 1} is never closed",
                             allowed)
            out.append(_Token("string", "".join(chars), i + 1))
            i = j + 1
            continue
        if ch == ".":
            raise _error(what, text, f"'.' (position {i + 1}) is attribute access, which is "
                         "not allowed", allowed)
        for op in _OPS:
            if text.startswith(op, i):
                out.append(_Token("op", op, i + 1))
                i += len(op)
                break
        else:
            raise _error(what, text, f"the character {ch!r} (position {i + 1}) is not "
                         "allowed", allowed)
    out.append(_Token("end", "", n + 1))
    return out


def _error(what: str, text: str, problem: str, allowed: str) -> SpecError:
    return SpecError(f"{what} \"{text}\": {problem}. {allowed}")


# --------------------------------------------------------------------------- trees
# Arithmetic and filter expressions are small tuples: ("num", value), ("col", name),
# ("str", text), ("neg", a), ("bin", op, a, b), ("call", func, a), ("cmp", op, a, b),
# ("in", a, values, negated), ("and", a, b), ("or", a, b), ("not", a).


def _columns_of(tree: tuple) -> list[str]:
    kind = tree[0]
    if kind == "col":
        return [tree[1]]
    if kind in ("num", "str"):
        return []
    out: list[str] = []
    for part in tree[1:]:
        if isinstance(part, tuple):
            out += _columns_of(part)
        elif isinstance(part, list):
            for p in part:
                out += _columns_of(p)
    return out


def _text(tree: tuple) -> str:
    """Canonical text of an arithmetic tree (used as the factor's name in term labels)."""
    kind = tree[0]
    if kind == "num":
        v = tree[1]
        return repr(int(v)) if float(v).is_integer() and abs(v) < 1e15 else repr(v)
    if kind == "col":
        return _column_text(tree[1])
    if kind == "str":
        return repr(tree[1])
    if kind == "neg":
        return f"-{_text(tree[1])}"
    if kind == "bin":
        return f"{_wrap(tree[2])} {tree[1]} {_wrap(tree[3])}"
    if kind == "call":
        return f"{tree[1]}({_text(tree[2])})"
    raise AssertionError(kind)


def _wrap(tree: tuple) -> str:
    return f"({_text(tree)})" if tree[0] == "bin" else _text(tree)


def _column_text(name: str) -> str:
    if _NAME.fullmatch(name) and not keyword.iskeyword(name) and name not in _KEYWORDS:
        return name
    return f"Q({name!r})"


class _Parser:
    def __init__(self, text: str, what: str, allowed: str) -> None:
        self.text, self.what, self.allowed = text, what, allowed
        self.toks = _tokens(text, what, allowed)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.toks[self.i]

    def fail(self, problem: str, tok: _Token | None = None) -> SpecError:
        tok = tok or self.tok
        where = "the end" if tok.kind == "end" else f"{tok.text!r} (position {tok.pos})"
        return _error(self.what, self.text, problem.replace("{here}", where), self.allowed)

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def take(self, op: str) -> _Token:
        if not self.is_op(op):
            raise self.fail(f"expected {op!r} at {{here}}")
        tok = self.tok
        self.i += 1
        return tok

    def column(self) -> str:
        tok = self.tok
        if tok.kind == "name" and tok.text == "Q" and self.toks[self.i + 1].text == "(":
            self.i += 2
            if self.tok.kind != "string":
                raise self.fail("Q() takes a column name in quotes, e.g. Q(\"odd name\"), "
                                "not {here}")
            name = self.tok.text
            self.i += 1
            self.take(")")
            return name
        if tok.kind != "name" or tok.text in _KEYWORDS:
            raise self.fail("expected a column name at {here}")
        self.i += 1
        return tok.text

    # -- arithmetic (inside I(), transforms, filters)
    def arith(self, strings: bool = False) -> tuple:
        left = self.arith_term(strings)
        while self.is_op("+", "-"):
            op = self.tok.text
            self.i += 1
            left = ("bin", op, left, self.arith_term(strings))
        return left

    def arith_term(self, strings: bool) -> tuple:
        left = self.arith_power(strings)
        while self.is_op("*", "/"):
            op = self.tok.text
            self.i += 1
            left = ("bin", op, left, self.arith_power(strings))
        return left

    def arith_power(self, strings: bool) -> tuple:
        base = self.arith_unary(strings)
        if self.is_op("**"):
            self.i += 1
            return ("bin", "**", base, self.arith_power(strings))
        return base

    def arith_unary(self, strings: bool) -> tuple:
        if self.is_op("-"):
            self.i += 1
            return ("neg", self.arith_unary(strings))
        if self.is_op("+"):
            self.i += 1
            return self.arith_unary(strings)
        return self.arith_atom(strings)

    def arith_atom(self, strings: bool) -> tuple:
        tok = self.tok
        if tok.kind == "number":
            self.i += 1
            return ("num", float(tok.text))
        if tok.kind == "string":
            if not strings:
                raise self.fail("a string {here} is allowed only as a level name, in "
                                "C(column, \"level\")")
            self.i += 1
            return ("str", tok.text)
        if self.is_op("("):
            self.i += 1
            inner = self.arith(strings)
            self.take(")")
            return inner
        if tok.kind == "name" and self.toks[self.i + 1].text == "(" and tok.text != "Q":
            if tok.text not in TRANSFORMS and tok.text not in STATEFUL:
                raise self.fail(f"the function {tok.text!r} (position {tok.pos}) is not "
                                "allowed here")
            self.i += 2
            arg = self.arith(strings)
            self.take(")")
            return ("call", tok.text, arg)
        return ("col", self.column())


@dataclass(frozen=True)
class Formula:
    """A parsed model formula.

    Attributes
    ----------
    text : str
        The formula as written.
    events, trials : str or None
        The response: ``p(events, trials)`` (binomial), or a bare ``events`` column (counts).
    exposure : str or None
        The column inside ``offset(log(column))`` (count models), if any.
    fixed : str
        The fixed-effects part, canonical text (``"1"`` if none).
    factors : tuple of str
        Canonical text of each fixed-effect factor, in order of appearance.
    columns : tuple of str
        Data columns the fixed effects use, in order of appearance.
    categorical : mapping of str to str or None
        Columns written ``C(column[, "level"])``: treated as categorical, with the reference
        level given (None when not given).
    groups : tuple of str
        Random-intercept entries (``"la/school"`` nested), in order.
    slopes : mapping of str to str
        ``variable -> group term`` from ``(1 + variable || group)``.
    """

    text: str
    events: str | None = None
    trials: str | None = None
    exposure: str | None = None
    fixed: str = "1"
    factors: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()
    categorical: Mapping[str, str | None] = field(default_factory=dict)
    groups: tuple[str, ...] = ()
    slopes: Mapping[str, str] = field(default_factory=dict)
    _trees: Mapping[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    @property
    def has_response(self) -> bool:
        return self.events is not None


class _FormulaParser(_Parser):
    """Parses the whole formula into fixed-effect pieces (kept as canonical text), random
    terms and the response."""

    def __init__(self, text: str) -> None:
        super().__init__(text, "formula", _ALLOWED)
        self.trees: dict[str, tuple] = {}
        self.columns: list[str] = []
        self.categorical: dict[str, str | None] = {}
        self.groups: list[str] = []
        self.slopes: dict[str, str] = {}
        self.exposure: str | None = None

    def parse(self) -> Formula:
        events = trials = None
        if any(t.kind == "op" and t.text == "~" for t in self.toks):
            events, trials = self.response()
            self.take("~")
        pieces = self.rhs(top=True)
        if self.tok.kind != "end":
            raise self.fail("unexpected {here}")
        fixed = _join_pieces(pieces) or "1"
        return Formula(text=self.text, events=events, trials=trials, exposure=self.exposure,
                       fixed=fixed, factors=tuple(self.trees), columns=tuple(
                           dict.fromkeys(self.columns)),
                       categorical=dict(self.categorical), groups=tuple(self.groups),
                       slopes=dict(self.slopes), _trees=dict(self.trees))

    def response(self) -> tuple[str, str | None]:
        tok = self.tok
        if tok.kind == "name" and tok.text == "p" and self.toks[self.i + 1].text == "(":
            self.i += 2
            events = self.column()
            self.take(",")
            trials = self.column()
            self.take(")")
            return events, trials
        events = self.column()
        if not self.is_op("~"):
            raise self.fail("the response is p(events, trials) for a binomial model or a "
                            "single count column; unexpected {here}")
        return events, None

    # The fixed part is kept as a list of text pieces (operators and factors): patsy does
    # the term algebra on text in which every factor is a placeholder name.
    def rhs(self, top: bool) -> list[str]:
        pieces: list[str] = []
        first = True
        while True:
            sign = "+"
            if self.is_op("+", "-"):
                sign = self.tok.text
                self.i += 1
            elif not first:
                break
            if top and self.is_random():
                if sign == "-":
                    raise self.fail("a random-effects term cannot be removed with '-' "
                                    "({here})")
                self.random_term()
            elif top and self.is_offset():
                if sign == "-":
                    raise self.fail("an offset cannot be removed with '-' ({here})")
                self.offset()
            else:
                term = self.product()
                pieces += ([] if first and sign == "+" else [sign]) + term
            first = False
            if not self.is_op("+", "-"):
                break
        if pieces and pieces[0] == "+":
            pieces = pieces[1:]
        return pieces

    def is_random(self) -> bool:
        if not self.is_op("("):
            return False
        depth = 0
        for t in self.toks[self.i:]:
            if t.kind == "op" and t.text == "(":
                depth += 1
            elif t.kind == "op" and t.text == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif t.kind == "op" and t.text in ("|", "||") and depth == 1:
                return True
        return False

    def is_offset(self) -> bool:
        return (self.tok.kind == "name" and self.tok.text == "offset"
                and self.toks[self.i + 1].text == "(")

    def offset(self) -> None:
        start = self.tok
        self.i += 2
        tree = self.arith()
        self.take(")")
        if not (tree[0] == "call" and tree[1] == "log" and tree[2][0] == "col"):
            raise self.fail("offset() takes log(column), e.g. offset(log(n_pupils)), the "
                            "log of the exposure", start)
        if self.exposure is not None:
            raise self.fail("only one offset is allowed ({here})", start)
        self.exposure = tree[2][1]

    def random_term(self) -> None:
        start = self.take("(")
        slopes: list[str] = []
        tok = self.tok
        if tok.kind == "number" and tok.text == "1":
            self.i += 1
        elif tok.kind == "number" and tok.text == "0":
            raise self.fail("random effects without an intercept ((0 + x | g)) are not "
                            "fitted; write (1 + x || g)", tok)
        else:
            raise self.fail("a random-effects term starts with 1, as in (1 | la) or "
                            "(1 + ethnicity || la); found {here}")
        while self.is_op("+"):
            self.i += 1
            slopes.append(self.column())
        bar = self.tok
        if not self.is_op("|", "||"):
            raise self.fail("expected '|' or '||' at {here}")
        self.i += 1
        if slopes and bar.text == "|":
            raise self.fail("correlated varying slopes (1 + x | g) are not fitted: the "
                            "engines fit slopes independent of the intercept, written "
                            "(1 + x || g)", bar)
        parts = [self.column()]
        while self.is_op("/"):
            self.i += 1
            parts.append(self.column())
        if self.is_op(":"):
            raise self.fail("write nested groups as a/b (the b within each a), not a:b "
                            "({here})")
        self.take(")")
        entry = "/".join(parts)
        if entry in self.groups:
            raise self.fail(f"the group {entry!r} has two random-effects terms; give each "
                            "group one term", start)
        self.groups.append(entry)
        for s in slopes:
            if s in self.slopes:
                raise self.fail(f"{s!r} varies by two groups; the engines fit one varying "
                                "slope per variable", start)
            self.slopes[s] = parts[-1]

    def product(self) -> list[str]:
        out = self.interaction()
        while self.is_op("*", "/"):
            op = self.tok.text
            self.i += 1
            out += [op] + self.interaction()
        return out

    def interaction(self) -> list[str]:
        out = self.factor()
        while self.is_op(":"):
            self.i += 1
            out += [":"] + self.factor()
        return out

    def factor(self) -> list[str]:
        tok = self.tok
        if self.is_op("("):
            if self.is_random():
                raise self.fail("a random-effects term must stand on its own, added with "
                                "'+' ({here})")
            self.i += 1
            inner = self.rhs(top=False)
            self.take(")")
            return ["("] + inner + [")"]
        if tok.kind == "number":
            if tok.text not in ("0", "1"):
                raise self.fail("a number in a formula can only be 0 or 1 (the intercept); "
                                "write arithmetic inside I(...), found {here}")
            self.i += 1
            return [tok.text]
        if tok.kind == "string":
            raise self.fail("a string {here} is allowed only as a level name, in "
                            "C(column, \"level\")")
        if tok.kind == "name" and self.toks[self.i + 1].text == "(" and tok.text != "Q":
            name = tok.text
            if name == "C":
                return [self.categorical_factor()]
            if name == "I":
                self.i += 2
                tree = self.arith()
                self.take(")")
                return [self.add(tree, f"I({_text(tree)})")]
            if name in TRANSFORMS or name in STATEFUL:
                self.i += 2
                tree = ("call", name, self.arith())
                self.take(")")
                return [self.add(tree, _text(tree))]
            if name == "offset":
                raise self.fail("offset(...) must be a term of its own at the top level "
                                "({here})")
            raise self.fail(f"the function {name!r} (position {tok.pos}) is not allowed")
        if tok.kind == "op":
            raise self.fail("unexpected {here}")
        col = self.column()
        return [self.add(("col", col), _column_text(col))]

    def categorical_factor(self) -> str:
        start = self.tok
        self.i += 2
        col = self.column()
        level = None
        if self.is_op(","):
            self.i += 1
            tok = self.tok
            if (tok.kind == "name" and tok.text == "Treatment"
                    and self.toks[self.i + 1].text == "("):
                # patsy's spelling: C(x, Treatment("level")), C(x, Treatment(reference="level"))
                self.i += 2
                if self.tok.text == "reference" and self.toks[self.i + 1].text == "=":
                    self.i += 2
                level = self.level()
                self.take(")")
            else:
                level = self.level()
        self.take(")")
        if col in self.categorical and self.categorical[col] != level:
            raise self.fail(f"column {col!r} is given two reference levels", start)
        self.categorical[col] = level
        text = f"C({_column_text(col)}" + (f", {level!r})" if level is not None else ")")
        return self.add(("col", col), text)

    def level(self) -> str:
        tok = self.tok
        if tok.kind not in ("string", "number"):
            raise self.fail("C() takes a column and optionally its reference level in "
                            "quotes, e.g. C(sen, \"none\"); found {here}")
        self.i += 1
        return tok.text

    def add(self, tree: tuple, text: str) -> str:
        self.trees.setdefault(text, tree)
        self.columns += _columns_of(tree)
        return text


def parse_formula(text: str) -> Formula:
    """Parse a model formula (or only its fixed effects) without evaluating anything.

    Parameters
    ----------
    text : str
        ``"p(events, trials) ~ fixed + (1 | group)"``, ``"events ~ fixed +
        offset(log(exposure))"`` or just the fixed effects, ``"ethnicity + sen"``.

    Returns
    -------
    Formula

    Raises
    ------
    SpecError
        Any token outside the grammar (the module docstring), naming it and its position
        and listing what is allowed.

    Examples
    --------
    >>> f = parse_formula("ethnicity * sen + C(cin, 'no') + I(age - 10)")
    >>> f.fixed, f.columns, dict(f.categorical)
    ("ethnicity * sen + C(cin, 'no') + I(age - 10)", ('ethnicity', 'sen', 'cin', 'age'), {'cin': 'no'})
    >>> parse_formula("n_susp ~ fsm + offset(log(n_pupils)) + (1 + fsm || la)").slopes
    {'fsm': 'la'}
    >>> parse_formula("C(sen, levels=open('/etc/passwd').read())")
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: formula "C(sen, levels=open('/etc/passwd').read())": '.' (position 34) is attribute access, which is not allowed. A formula may hold ...
    >>> parse_formula("C(sen, levels=open('/etc/passwd'))")
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: formula "C(sen, levels=open('/etc/passwd'))": C() takes a column and optionally its reference level in quotes, e.g. C(sen, "none"); found 'levels' (position 8). A formula may hold ...
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"a formula must be non-empty text such as \"sen + fsm\", not {text!r}")
    if len(text) > 5000:
        raise SpecError(f"the formula is {len(text):,} characters long; at most 5,000 are "
                        "read")
    return _FormulaParser(text.strip()).parse()


def formula_columns(text: str) -> tuple[str, ...]:
    """Data columns named by a formula's fixed effects, in order of appearance.

    Examples
    --------
    >>> formula_columns("ethnicity + sen:fsm + C(cin) + log(age)")
    ('ethnicity', 'sen', 'fsm', 'cin', 'age')
    """
    return parse_formula(text).columns


# --------------------------------------------------------------------------- evaluation
def _evaluate(tree: tuple, data: Any, state: Mapping[int, tuple[float, float]],
              counter: list[int]) -> Any:
    kind = tree[0]
    if kind == "num":
        return tree[1]
    if kind == "str":
        return tree[1]
    if kind == "col":
        return _column(data, tree[1])
    if kind == "neg":
        return -np.asarray(_evaluate(tree[1], data, state, counter), dtype=float)
    if kind == "bin":
        a = _evaluate(tree[2], data, state, counter)
        b = _evaluate(tree[3], data, state, counter)
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        with np.errstate(all="ignore"):
            return {"+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide,
                    "**": np.power}[tree[1]](a, b)
    if kind == "call":
        value = np.asarray(_evaluate(tree[2], data, state, counter), dtype=float)
        if tree[1] in TRANSFORMS:
            with np.errstate(all="ignore"):
                return TRANSFORMS[tree[1]](value)
        k = counter[0]
        counter[0] += 1
        centre, scale = state[k]
        return (value - centre) / (scale if tree[1] == "standardize" else 1.0)
    raise AssertionError(kind)


def _column(data: Any, name: str) -> Any:
    try:
        values = data[name]
    except (KeyError, IndexError):
        raise SpecError(f"column {name!r} named in the formula is not in the data") from None
    return values


def _stateful_inputs(tree: tuple, data: Any) -> list[np.ndarray]:
    """The arguments of each stateful transform in ``tree``, in evaluation order."""
    out: list[np.ndarray] = []
    if tree[0] == "call" and tree[1] in STATEFUL:
        out.append(np.asarray(_evaluate(tree[2], data, {}, [0]), dtype=float))
        return out
    for part in tree[1:]:
        if isinstance(part, tuple):
            out += _stateful_inputs(part, data)
    return out


class SafeFactor:
    """A patsy factor evaluated by this module's interpreter, never by ``eval``.

    patsy's own factors compile their code and ``eval`` it with Python's builtins in reach;
    this one walks a parsed tree whose only names are data columns and :data:`TRANSFORMS`.
    It follows patsy's factor protocol (``name``, ``memorize_*``, ``eval``), so patsy builds
    the design matrix and rebuilds it for counterfactual rows.

    Examples
    --------
    >>> import pandas as pd, patsy
    >>> f = parse_formula("center(age)")
    >>> m = patsy.dmatrix(model_desc(f), pd.DataFrame({"age": [1.0, 2.0, 6.0]}))
    >>> m.design_info.column_names, m[:, 1].tolist()
    (['Intercept', 'center(age)'], [-2.0, -1.0, 3.0])
    """

    def __init__(self, text: str, tree: tuple) -> None:
        self.text = text
        self.code = text  # patsy's factors have .code; code reading factors may use it
        self.tree = tree
        self.columns = tuple(dict.fromkeys(_columns_of(tree)))
        self.origin = None
        # C(x) and C(x, "level") name their columns x[T.level], as a plain categorical x
        self.label = _column_text(tree[1]) if text.startswith("C(") else text

    def name(self) -> str:
        return self.label

    def __repr__(self) -> str:
        return f"SafeFactor({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SafeFactor) and other.label == self.label

    def __hash__(self) -> int:
        return hash(("SafeFactor", self.label))

    def memorize_passes_needed(self, state: dict, eval_env: Any) -> int:
        state["sums"] = None
        return 1

    def memorize_chunk(self, state: dict, which_pass: int, data: Any) -> None:
        inputs = _stateful_inputs(self.tree, data)
        sums = [(float(np.nansum(x)), float(np.nansum(x * x)), int(np.sum(~np.isnan(x))))
                for x in inputs]
        if state["sums"] is None:
            state["sums"] = sums
        else:
            state["sums"] = [(a + c, b + d, n + m) for (a, b, n), (c, d, m)
                             in zip(state["sums"], sums)]

    def memorize_finish(self, state: dict, which_pass: int) -> None:
        fitted = {}
        for k, (s, ss, n) in enumerate(state.pop("sums") or []):
            mean = s / n if n else 0.0
            var = (ss - n * mean * mean) / (n - 1) if n > 1 else 0.0
            fitted[k] = (mean, math.sqrt(var) if var > 0 else 1.0)
        state["fitted"] = fitted

    def eval(self, state: dict, data: Any) -> Any:
        return _evaluate(self.tree, data, state.get("fitted", {}), [0])


def model_desc(formula: Formula) -> Any:
    """The patsy ``ModelDesc`` of a formula's fixed effects, made of :class:`SafeFactor`.

    patsy parses the fixed-effect text (with every factor replaced by a placeholder name)
    for the term algebra only: ``a*b`` is ``a + b + a:b``, ``a/b`` is ``a + a:b``, ``-1``
    drops the intercept. Each placeholder is then replaced by its :class:`SafeFactor`.
    """
    import patsy
    from patsy.desc import ModelDesc, Term

    names = {text: f"_f{k}" for k, text in enumerate(formula.factors)}
    pieces = _placeholder_text(formula, names)
    desc = ModelDesc.from_formula(pieces)
    by_placeholder = {names[t]: SafeFactor(t, formula._trees[t]) for t in formula.factors}
    terms = []
    for term in desc.rhs_termlist:
        factors = []
        for f in term.factors:
            if f.code not in by_placeholder:  # pragma: no cover - placeholders only
                raise SpecError(f"formula {formula.text!r} could not be read")
            factors.append(by_placeholder[f.code])
        terms.append(Term(factors))
    del patsy
    return ModelDesc([], terms)


def _placeholder_text(formula: Formula, names: Mapping[str, str]) -> str:
    """The fixed part with each factor's text replaced by its placeholder (longest first,
    on whole pieces: the parser kept factors as separate pieces)."""
    parser = _FormulaParser(formula.text)
    if any(t.kind == "op" and t.text == "~" for t in parser.toks):
        parser.response()
        parser.take("~")
    pieces = parser.rhs(top=True)
    return _join_pieces([names.get(p, p) for p in pieces]) or "1"


def _join_pieces(pieces: Sequence[str]) -> str:
    """Formula text from its pieces: spaces around + - * /, none around : or inside ()."""
    out = ""
    for p in pieces:
        if p in ("+", "-", "*", "/"):
            out += f" {p} " if out and not out.endswith("(") else ("-" if p == "-" else "")
        elif p == ":" or p == ")":
            out = out.rstrip() + p
        else:
            out += p
    return out.strip()


# --------------------------------------------------------------------------- filters
@dataclass(frozen=True)
class Filter:
    """A parsed row filter (``[data] where``).

    Examples
    --------
    >>> import pandas as pd
    >>> f = parse_filter("n_susp >= 1 and sen in ['support', 'ehcp']")
    >>> f.columns
    ('n_susp', 'sen')
    >>> f.mask(pd.DataFrame({"n_susp": [0, 2, 3], "sen": ["ehcp", "none", "support"]})).tolist()
    [False, False, True]
    """

    text: str
    columns: tuple[str, ...]
    tree: tuple = field(repr=False)

    def mask(self, data: Any) -> np.ndarray:
        """One True/False per row of ``data`` (a DataFrame or a mapping of columns)."""
        missing = [c for c in self.columns if c not in data]
        if missing:
            present = list(map(str, data.columns)) if hasattr(data, "columns") else list(data)
            raise SpecError(f"filter \"{self.text}\" names column(s) {missing!r} that the data "
                            f"do not have; columns are {present!r}")
        n = len(data)
        out = np.asarray(_filter_eval(self.tree, data), dtype=bool)
        return np.broadcast_to(out, (n,)).copy()


def _compare(op: str, a: Any, b: Any) -> np.ndarray:
    """Elementwise comparison; levels (text) compare as text, numbers as numbers."""
    import pandas as pd

    text = isinstance(a, str) or isinstance(b, str) or any(
        isinstance(x, pd.Series) and not pd.api.types.is_numeric_dtype(x) for x in (a, b))
    if text:
        if op not in ("==", "!="):
            raise SpecError(f"the comparison {op!r} needs numbers on both sides; levels are "
                            "compared with ==, != or `in [...]`")
        sa = a.astype(str) if isinstance(a, pd.Series) else str(a)
        sb = b.astype(str) if isinstance(b, pd.Series) else str(b)
        eq = np.array(sa == sb, dtype=bool)
        for x in (a, b):  # a missing value equals nothing
            if isinstance(x, pd.Series):
                eq &= ~x.isna().to_numpy()
        return eq if op == "==" else ~eq
    fa = np.asarray(a, dtype=float)
    fb = np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        return {"==": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal,
                ">": np.greater, ">=": np.greater_equal}[op](fa, fb)


def _filter_eval(tree: tuple, data: Any) -> Any:
    kind = tree[0]
    if kind == "or":
        return np.logical_or(_filter_eval(tree[1], data), _filter_eval(tree[2], data))
    if kind == "and":
        return np.logical_and(_filter_eval(tree[1], data), _filter_eval(tree[2], data))
    if kind == "not":
        return np.logical_not(_filter_eval(tree[1], data))
    if kind == "cmp":
        return _compare(tree[1], _value(tree[2], data), _value(tree[3], data))
    if kind == "in":
        left = _value(tree[1], data)
        hits = np.zeros(np.shape(np.asarray(left)), dtype=bool)
        for v in tree[2]:
            hits |= _compare("==", left, _value(v, data))
        return ~hits if tree[3] else hits
    raise AssertionError(kind)


def _value(tree: tuple, data: Any) -> Any:
    if tree[0] == "str":
        return tree[1]
    if tree[0] == "col":
        return _column(data, tree[1])
    return _evaluate(tree, data, {}, [0])


class _FilterParser(_Parser):
    def __init__(self, text: str) -> None:
        super().__init__(text, "filter", _ALLOWED_FILTER)

    def word(self, w: str) -> bool:
        return self.tok.kind == "name" and self.tok.text == w

    def parse(self) -> tuple:
        tree = self.disjunct()
        if self.tok.kind != "end":
            raise self.fail("unexpected {here}")
        return tree

    def disjunct(self) -> tuple:
        left = self.conjunct()
        while self.word("or"):
            self.i += 1
            left = ("or", left, self.conjunct())
        return left

    def conjunct(self) -> tuple:
        left = self.negation()
        while self.word("and"):
            self.i += 1
            left = ("and", left, self.negation())
        return left

    def negation(self) -> tuple:
        if self.word("not"):
            self.i += 1
            return ("not", self.negation())
        if self.is_op("(") and self._is_logical_group():
            self.i += 1
            inner = self.disjunct()
            self.take(")")
            return inner
        return self.comparison()

    def _is_logical_group(self) -> bool:
        depth = 0
        for t in self.toks[self.i:]:
            if t.kind == "op" and t.text == "(":
                depth += 1
            elif t.kind == "op" and t.text == ")":
                depth -= 1
                if depth == 0:
                    return False
            elif depth == 1 and ((t.kind == "op" and t.text in ("==", "!=", "<", "<=", ">",
                                                                  ">="))
                                 or (t.kind == "name" and t.text in _KEYWORDS)):
                return True
        return False

    def comparison(self) -> tuple:
        left = self.arith(strings=True)
        if self.is_op("==", "!=", "<", "<=", ">", ">="):
            op = self.tok.text
            self.i += 1
            return ("cmp", op, left, self.arith(strings=True))
        negated = False
        if self.word("not"):
            self.i += 1
            negated = True
            if not self.word("in"):
                raise self.fail("expected 'in' after 'not' at {here}")
        if self.word("in"):
            self.i += 1
            self.take("[")
            values = [self.arith(strings=True)]
            while self.is_op(","):
                self.i += 1
                values.append(self.arith(strings=True))
            self.take("]")
            return ("in", left, values, negated)
        raise self.fail("expected a comparison (==, !=, <, <=, >, >=, in) at {here}")


def parse_filter(text: str) -> Filter:
    """Parse a row filter such as ``"n_susp >= 1 and fsm == 'yes'"`` without evaluating it.

    Raises
    ------
    SpecError
        Any token outside the filter grammar (see the module docstring).

    Examples
    --------
    >>> parse_filter("open('/etc/passwd')")
    Traceback (most recent call last):
    ...
    disparity.errors.SpecError: filter "open('/etc/passwd')": the function 'open' (position 1) is not allowed here. A filter may hold ...
    """
    if not isinstance(text, str) or not text.strip():
        raise SpecError(f"a filter must be non-empty text such as \"n_susp >= 1\", not {text!r}")
    text = text.strip()
    tree = _FilterParser(text).parse()
    return Filter(text=text, columns=tuple(dict.fromkeys(_columns_of(tree))), tree=tree)


def check_formula_names(formula: Formula, columns: Sequence[str]) -> list[str]:
    """Columns the formula names that ``columns`` lacks (for one message listing them)."""
    have = set(map(str, columns))
    wanted = [*formula.columns, *([formula.events] if formula.events else []),
              *([formula.trials] if formula.trials else []),
              *([formula.exposure] if formula.exposure else [])]
    return [c for c in dict.fromkeys(wanted) if c not in have]
