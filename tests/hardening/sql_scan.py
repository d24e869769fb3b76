"""A static scan for SQL built by string formatting (used by ``test_production.py``).

Values reach SQL only as bound parameters (``{name:Type}`` for ClickHouse, ``%s`` for the ORM's
cursor); identifiers only through ``{name:Identifier}`` or validated helpers. The scan reads every
Python file's syntax tree and reports three shapes:

- ``call``: a call of ``query``, ``command``, ``execute``, ``executemany``, ``raw`` or ``extra``
  whose SQL argument (the first, or ``sql=`` / ``query=``; for ``extra`` every argument; the items
  of a list) is built by formatting a value that is not a constant into it: an f-string, ``%``,
  ``.format(...)`` or ``+``. A name is followed to what it was assigned in the same function or at
  module level (``sql = f"..."; cursor.execute(sql)``); text made only of literals and constants
  (``f"SELECT {', '.join(COLUMNS)} FROM t"`` with a constant ``COLUMNS``) is as fixed as a literal.
- ``literal``: the same formatting anywhere, when its literal text reads as SQL (``SELECT ... FROM``,
  ``INSERT INTO``, ``ALTER TABLE`` ...): SQL built far from the call that runs it.
- ``template``: ``.replace("{placeholder}", ...)``, substituting into a template by hand.

Reviewed exceptions are listed in ``ALLOWED`` with the reason; anything else fails the test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

SQL_CALLS = frozenset({"query", "command", "execute", "executemany", "raw", "extra"})
SQL_KEYWORDS = frozenset({"sql", "query"})
SQL_TEXT = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+INTO|ALTER\s+TABLE|CREATE\s+(TABLE|VIEW|DATABASE|MATERIALIZED)|"
    r"DROP\s+(TABLE|VIEW|DATABASE)|TRUNCATE\s+TABLE|DELETE\s+FROM|UPDATE\s+\w+\s+SET|OPTIMIZE\s+TABLE)\b"
)
# The ``literal`` rule runs on the code that ships; benchmarks' and tests' labels may quote SQL.
APPLICATION_PACKAGES = frozenset({"config", "experiments", "metrics", "features", "analytics"})
EXCLUDED_DIRS = frozenset(
    {".venv", "venv", "migrations", "var", "node_modules", "__pycache__", ".git", "build"}
)

# (path relative to the repository, enclosing function's qualified name): why it is safe.
ALLOWED: dict[tuple[str, str], str] = {
    # The ClickHouse schema migrations are SQL files with a {database} placeholder, because DDL such
    # as CREATE DATABASE cannot take bound parameters; render() substitutes the database name only
    # after checking it against IDENTIFIER_RE (a plain identifier), and the files are ours.
    ("analytics/clickhouse/migrations.py", "render"): "validated identifier in reviewed DDL templates",
    # The migrations' cluster form (CLICKHOUSE_CLUSTER): the reviewed DDL of the files above, with
    # identifiers only added or renamed (the cluster and database, validated plain identifiers in
    # ClusterLayout.__post_init__; table names matched as \w+ in that DDL); migrations hold no values.
    **{
        ("analytics/clickhouse/cluster.py", f"ClusterLayout.{function}"): "identifiers in reviewed DDL"
        for function in ("statements", "_create_table", "_create_view", "_alter")
    },
    # The incremental roll-up's state statements: every value is a bound {name:Type} placeholder made by
    # StateQuery._bind (the experiment, keys, versions, times); the rest is the builder's own
    # subqueries (made the same way) and fixed table and column names.
    **{
        ("analytics/rollup/state.py", f"StateQuery.{function}"): "placeholders and the builder's subqueries"
        for function in ("_insert", "delete_statements")
    },
    ("analytics/rollup/incremental.py", "_first_exposure_ms"): "the builder's subquery, placeholders only",
    # INSERT statements name the table and its columns through quote_table()/column_list(), which
    # validate each identifier; the rows travel as Native-format data, never as SQL text.
    ("analytics/clickhouse/backends.py", "ChdbBackend.insert"): "validated identifiers, rows as data",
    # Tests of the client itself: the type of a {value:Type} placeholder comes from the test's own
    # parameter table, and column lists from the write path's column constants; values stay bound.
    ("tests/analytics/test_clickhouse_client.py", "test_query__bound_parameter__round_trips_its_value"): (
        "placeholder types from the test's parameter table"
    ),
    ("tests/analytics/test_clickhouse_client.py", "test_insert__events_every_column__round_trips"): (
        "column names from analytics.ingestion.services.EVENTS.columns"
    ),
    ("tests/analytics/test_clickhouse_client.py", "test_insert__exposures_every_column__round_trips"): (
        "column names from analytics.ingestion.services.EXPOSURES.columns"
    ),
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    function: str
    kind: str  # "call", "literal" or "template"
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line} in {self.function or '<module>'} ({self.kind}): {self.code}"


def _literal_text(node: ast.AST) -> str:
    """The literal text of a string expression (the constant parts of an f-string or a concatenation)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal_text(value) for value in node.values)
    if isinstance(node, ast.BinOp):
        return _literal_text(node.left) + " " + _literal_text(node.right)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _literal_text(node.func.value)
    return ""


class _Scanner(ast.NodeVisitor):
    """Walks one module. Formatting counts only when a value that is not a constant goes in: text
    assembled from literals and constants (a name assigned only literals, in the function or at module
    level, or ``", ".join`` of them) is as fixed as one literal."""

    def __init__(self, path: str, source: str, *, literal_rule: bool) -> None:
        self.path = path
        self.lines = source.splitlines()
        self.literal_rule = literal_rule
        self.scope: list[str] = []
        self.module_assignments: dict[str, list[ast.AST]] = {}
        self.assignments: list[dict[str, list[ast.AST]]] = [{}]
        self.findings: list[Finding] = []

    def visit_Module(self, node: ast.Module) -> None:
        self.module_assignments = _assignments(node, top_level_only=True)
        self.generic_visit(node)

    # -- scopes --------------------------------------------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.scope.append(node.name)
        self.assignments.append(_assignments(node))
        self.generic_visit(node)
        self.assignments.pop()
        self.scope.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.scope.append(node.name)
        self.generic_visit(node)
        self.scope.pop()

    # -- what is constant, what is formatted ---------------------------------------------------------------
    def _values_of(self, name: str) -> list[ast.AST]:
        local = self.assignments[-1].get(name)
        return local if local is not None else self.module_assignments.get(name, [])

    def is_constant(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> bool:
        if isinstance(node, ast.Constant):
            return True
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return all(self.is_constant(element, seen) for element in node.elts)
        if isinstance(node, ast.JoinedStr):
            return all(self.is_constant(value, seen) for value in node.values)
        if isinstance(node, ast.FormattedValue):
            return self.is_constant(node.value, seen)
        if isinstance(node, ast.BinOp):
            return self.is_constant(node.left, seen) and self.is_constant(node.right, seen)
        if isinstance(node, ast.Name):
            values = self._values_of(node.id)
            return (
                node.id not in seen
                and bool(values)
                and all(self.is_constant(value, seen | {node.id}) for value in values)
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "join":
            return self.is_constant(node.func.value, seen) and all(
                self.is_constant(a, seen) for a in node.args
            )
        return False

    def is_formatted(self, node: ast.AST) -> bool:
        """Whether ``node`` builds a string by formatting a value that is not a constant into it."""
        if isinstance(node, ast.JoinedStr):
            return any(
                isinstance(value, ast.FormattedValue) and not self.is_constant(value.value)
                for value in node.values
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            return bool(_literal_text(node.left)) and not self.is_constant(node.right)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            textual = bool(_literal_text(node.left) or _literal_text(node.right))
            return (textual or self.is_formatted(node.left) or self.is_formatted(node.right)) and not (
                self.is_constant(node.left) and self.is_constant(node.right)
            )
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
            arguments = [*node.args, *(keyword.value for keyword in node.keywords)]
            return not all(self.is_constant(argument) for argument in arguments)
        return False

    def builds_sql(self, node: ast.AST, seen: frozenset[str] = frozenset()) -> bool:
        if self.is_formatted(node):
            return True
        if isinstance(node, ast.Name) and node.id not in seen:
            return any(self.builds_sql(value, seen | {node.id}) for value in self._values_of(node.id))
        return False

    # -- checks --------------------------------------------------------------------------------------------
    def _report(self, node: ast.AST, kind: str) -> None:
        line = getattr(node, "lineno", 0)
        code = self.lines[line - 1].strip() if 0 < line <= len(self.lines) else ""
        self.findings.append(Finding(self.path, line, ".".join(self.scope), kind, code))

    @staticmethod
    def _sql_argument(node: ast.Call) -> ast.AST | None:
        for keyword in node.keywords:
            if keyword.arg in SQL_KEYWORDS:
                return keyword.value
        return node.args[0] if node.args else None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name in SQL_CALLS:
            arguments = [self._sql_argument(node)]
            if name == "extra":  # QuerySet.extra(select=..., where=[...], tables=[...], order_by=[...])
                arguments += [keyword.value for keyword in node.keywords]
            if any(self.builds_sql(part) for argument in arguments for part in _parts(argument)):
                self._report(node, "call")
        if (
            name == "replace"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and re.fullmatch(r"\{\w+\}", node.args[0].value)
        ):
            self._report(node, "template")
        self.generic_visit(node)

    def _sql_literal(self, node: ast.AST) -> bool:
        return self.literal_rule and self.is_formatted(node) and bool(SQL_TEXT.search(_literal_text(node)))

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        if self._sql_literal(node):
            self._report(node, "literal")

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if self._sql_literal(node):
            self._report(node, "literal")
            return
        self.generic_visit(node)


def _parts(node: ast.AST | None) -> list[ast.AST]:
    """The strings an SQL argument holds: itself, or the items of a list, tuple or dict of them."""
    if node is None:
        return []
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return list(node.elts)
    if isinstance(node, ast.Dict):
        return [value for value in node.values if value is not None]
    return [node]


def _assignments(scope: ast.AST, *, top_level_only: bool = False) -> dict[str, list[ast.AST]]:
    """Every value assigned to each plain name in a function, or at a module's top level (``+=``
    counts as ``name + value``; a loop variable as a value that is not a constant)."""
    found: dict[str, list[ast.AST]] = {}
    nodes = scope.body if top_level_only else ast.walk(scope)  # type: ignore[attr-defined]
    for node in nodes:
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for target in ast.walk(node.target):
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(ast.Name(id="<loop>"))
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            found.setdefault(node.target.id, []).append(
                ast.BinOp(left=node.target, op=node.op, right=node.value)
            )
    return found


def scan_source(source: str, path: str = "<string>", *, literal_rule: bool = True) -> list[Finding]:
    scanner = _Scanner(path, source, literal_rule=literal_rule)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings


def python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if not EXCLUDED_DIRS.intersection(path.relative_to(root).parts[:-1]):
            yield path


def scan_tree(root: Path, allowed: dict[tuple[str, str], str] = ALLOWED) -> tuple[list[Finding], set]:
    """Findings in every project Python file not allowed by ``allowed``, and the allowed entries used."""
    findings, used = [], set()
    for path in python_files(root):
        relative = path.relative_to(root).as_posix()
        literal_rule = relative.split("/", 1)[0] in APPLICATION_PACKAGES
        for finding in scan_source(path.read_text(encoding="utf-8"), relative, literal_rule=literal_rule):
            key = (finding.path, finding.function)
            if key in allowed:
                used.add(key)
            else:
                findings.append(finding)
    return findings, used


def format_findings(findings: Iterable[Finding]) -> str:
    return "\n".join(str(finding) for finding in findings)
