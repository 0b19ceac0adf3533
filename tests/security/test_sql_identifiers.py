"""SQL identifiers come only from validated definitions, and raw SQL is an audited exception.

Two guarantees. (1) A definition whose feature set, table or column names look like SQL (or
merely need quoting) is refused when it is loaded, so no such name ever reaches the store.
(2) Every place in the package that hands SQL *text* to a database (``text()``,
``exec_driver_sql``, a DB-API ``execute``/``copy_expert`` with a string, any f-string that
starts like a SQL statement) is on the reviewed allow-list below, each with why it is safe;
a new one fails the test until someone reviews it and adds it. Everything else is built
with SQLAlchemy constructs, which bind values and quote identifiers. The bad-input corpus in
tests/badinput covers the messages users get; this is about the identifier guarantee.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from mlpipeline.errors import DefinitionError
from mlpipeline.featuresets import definition as definition_module
from mlpipeline.featuresets.definition import IDENTIFIER, load_definition, parse_definition
from mlpipeline.featurestore.ingest import ingest_frame
from mlpipeline.featurestore.sql import SqlFeatureStore

PACKAGE = Path(definition_module.__file__).resolve().parents[1]

# (file, enclosing function, source of the SQL argument) -> why it is safe.
ALLOWED: dict[tuple[str, str, str], str] = {
    (
        "featurestore/evolve.py",
        "apply_schema_plan",
        "f'ALTER TABLE {prep.format_table(added.table)} ADD COLUMN {spec}'",
    ): "the table of a validated definition quoted by the dialect's identifier preparer, and the "
    "column spec compiled by SQLAlchemy's CreateColumn from a Column built from the definition",
    (
        "featurestore/sql.py",
        "SqlFeatureStore.bulk_insert",
        "compiled.string",
    ): "SQLAlchemy's own compilation of insert(table): identifiers quoted by the dialect, values bound",
    (
        "featurestore/sql.py",
        "SqlFeatureStore.bulk_insert",
        "f\"COPY {prep.format_table(table)} ({', '.join((prep.quote(n) for n in names))}) "
        'FROM STDIN WITH (FORMAT csv)"',
    ): "table and column names of a validated definition, each quoted by the PostgreSQL dialect's "
    "identifier preparer; the rows travel as CSV data, never as SQL",
    (
        "featurestore/sql.py",
        "_configure_sqlite._on_begin",
        "'BEGIN IMMEDIATE' if immediate else 'BEGIN'",
    ): "two constant statements chosen by a boolean execution option",
    (
        "featurestore/sql.py",
        "_configure_sqlite._on_connect",
        "'PRAGMA foreign_keys=ON'",
    ): "a constant SQLite pragma",
    (
        "featurestore/sql.py",
        "_configure_sqlite._on_connect",
        "'PRAGMA journal_mode=WAL'",
    ): "a constant SQLite pragma",
    (
        "featurestore/sql.py",
        "_configure_sqlite._on_connect",
        "'PRAGMA synchronous=NORMAL'",
    ): "a constant SQLite pragma",
    (
        "featurestore/sql.py",
        "_configure_sqlite._on_connect",
        "f'PRAGMA busy_timeout={int(busy_timeout_s * 1000)}'",
    ): "the only interpolation is int() of a float setting: digits, never text",
    (
        "stack.py",
        "Stack.ensure_database",
        "'SELECT 1 FROM pg_database WHERE datname = :name'",
    ): "a constant query; the database name is a bound parameter",
    (
        "stack.py",
        "Stack.ensure_database",
        "f'CREATE DATABASE \"{name}\"'",
    ): "the name is checked against _DB_NAME (letters, digits, underscore) in Stack.__init__; "
    "a development tool, not the pipeline",
    (
        "stack.py",
        "Stack.ensure_database",
        "f'DROP DATABASE \"{name}\" WITH (FORCE)'",
    ): "the name is checked against _DB_NAME (letters, digits, underscore) in Stack.__init__; "
    "a development tool, not the pipeline",
    (
        "stack.py",
        "Stack.drop_database",
        "f'DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)'",
    ): "the name is checked against _DB_NAME (letters, digits, underscore) in Stack.__init__; "
    "a development tool, not the pipeline",
}

_SQL_START = re.compile(
    r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER|COPY|PRAGMA|BEGIN|TRUNCATE|GRANT)\b"
)


def _is_text_sql(node: ast.expr) -> bool:
    """A string built in Python (literal, f-string, concatenation, %/format) rather than a construct."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr | ast.BinOp):
        return True
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("format", "join")
    )


def raw_sql_sites(package: Path = PACKAGE) -> set[tuple[str, str, str]]:
    """(file, function, SQL source) of every place that hands SQL text to a database."""
    found: set[tuple[str, str, str]] = set()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        tree = ast.parse(path.read_text(encoding="utf-8"))
        scopes: list[tuple[ast.AST, str]] = [(tree, "<module>")]
        while scopes:
            scope, name = scopes.pop()
            for node in ast.iter_child_nodes(scope):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    scopes.append((node, node.name if name == "<module>" else f"{name}.{node.name}"))
                    continue
                scopes.append((node, name))
                if isinstance(node, ast.Call) and node.args:
                    func = node.func
                    attr = (
                        func.attr
                        if isinstance(func, ast.Attribute)
                        else func.id
                        if isinstance(func, ast.Name)
                        else ""
                    )
                    first = node.args[0]
                    sql_text = attr in ("literal_column", "exec_driver_sql", "DDL") or (
                        attr == "text" and (isinstance(func, ast.Name) or _sqlalchemy_text(func))
                    )
                    string_execute = attr in ("execute", "executemany", "copy_expert") and _is_text_sql(first)
                    if sql_text or string_execute:
                        found.add((rel, name, ast.unparse(first)))
                if isinstance(node, ast.JoinedStr):
                    head = node.values[0] if node.values else None
                    if isinstance(head, ast.Constant) and _SQL_START.match(str(head.value)):
                        found.add((rel, name, ast.unparse(node)))
    return found


def _sqlalchemy_text(func: ast.expr) -> bool:
    """``sqlalchemy.text(...)``/``sa.text(...)``, not ``Path.read_text`` or ``x.text``."""
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("sqlalchemy", "sa")
    )


def test_every_raw_sql_site_is_reviewed() -> None:
    found = raw_sql_sites()
    unreviewed = sorted(found - set(ALLOWED))
    stale = sorted(set(ALLOWED) - found)
    assert not unreviewed, (
        "raw SQL not on the allow-list (review it, then add it with why it is safe):\n"
        + "\n".join(map(repr, unreviewed))
    )
    assert not stale, "allow-list entries that no longer exist (remove them):\n" + "\n".join(map(repr, stale))
    assert all(len(why) > 15 for why in ALLOWED.values()), "say why each one is safe"


def test_the_stack_database_name_is_validated_before_use() -> None:
    """The allow-list's reason for stack.py, checked: a quote in the name is refused."""
    from mlpipeline.stack import Stack, StackConfig, StackError

    with pytest.raises(StackError, match="database name"):
        Stack(
            StackConfig(
                postgres_url="postgresql+psycopg2://u@127.0.0.1/db", database='x" ; DROP DATABASE y; --'
            )
        )


def test_the_sql_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The scanner is not blind: every kind of raw SQL it claims to catch is caught."""
    sample = (
        "from sqlalchemy import text\n"
        "def f(conn, cur, name):\n"
        "    conn.execute(text(f'SELECT * FROM {name}'))\n"
        "    conn.exec_driver_sql('DELETE FROM t')\n"
        "    cur.execute('UPDATE t SET a = ' + name)\n"
        "    q = f'INSERT INTO {name} VALUES (1)'\n"
    )
    (tmp_path / "m.py").write_text(sample + "    conn.execute(select_stmt)\n", encoding="utf-8")
    found = raw_sql_sites(tmp_path)
    assert {(rel, fn) for rel, fn, _ in found} == {("m.py", "f")}
    assert {sql for _, _, sql in found} == {
        "f'SELECT * FROM {name}'",  # text() of an f-string
        "'DELETE FROM t'",  # exec_driver_sql
        "'UPDATE t SET a = ' + name",  # a DB-API execute of a concatenation
        "f'INSERT INTO {name} VALUES (1)'",  # an f-string that starts like SQL
    }


SQL_LOOKING = [
    "x; DROP TABLE mlp_production_pointer; --",
    'a"b',
    "a'b",
    "a b",
    "a--b",
    "a/*b*/",
    "Robert'); DROP TABLE students;--",
    "select-1",
    "Upper",
    "_batch_id",
    "1abc",
    "a" * 64,
    "ａｂ",  # full-width letters: look like ASCII, are not
    "a\u0000b",
    "orders\n",  # a trailing newline: "$" in a pattern would let it through
]

BASE = {
    "name": "shop",
    "table": "shop_orders",
    "entity_key": {"column": "order_id", "type": "integer"},
    "target": {"column": "amount"},
    "features": {"price": {"type": "float"}},
    "constants": {"vat": 0.2},
    "derived": {"gross": "price * (1 + vat)"},
}


def _with(key: str, value: str) -> dict[str, object]:
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    if key == "name":
        data["name"] = value
    elif key == "table":
        data["table"] = value
    elif key == "entity_key.column":
        data["entity_key"] = {"column": value, "type": "integer"}
    elif key == "target.column":
        data["target"] = {"column": value}
    elif key == "event_time":
        data["event_time"] = value
    elif key == "features":
        data["features"] = {value: {"type": "float"}, "price": {"type": "float"}}
    elif key == "constants":
        data["constants"] = {"vat": 0.2, value: 1.0}
    elif key == "derived":
        data["derived"] = {value: "price * 2"}
    return data


KEYS = [
    "name",
    "table",
    "entity_key.column",
    "target.column",
    "event_time",
    "features",
    "constants",
    "derived",
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("value", SQL_LOOKING, ids=range(len(SQL_LOOKING)))
def test_sql_looking_names_are_refused_at_load(key: str, value: str) -> None:
    parse_definition(_with(key, "fine_name"), source="shop.toml")  # the control: the same slot, a good name
    with pytest.raises(DefinitionError) as info:
        parse_definition(_with(key, value), source="shop.toml")
    assert key.split(".", maxsplit=1)[0] in str(info.value)


def test_the_reserved_table_prefix_is_refused() -> None:
    with pytest.raises(DefinitionError, match="reserved prefix"):
        parse_definition(_with("table", "mlp_production_pointer"), source="shop.toml")


def test_every_accepted_identifier_needs_no_quoting() -> None:
    """What the pattern lets through: lower-case ASCII letters, digits, underscores, ≤ 63 chars,
    starting with a letter. No quote, space, semicolon, comment or non-ASCII character."""
    accepted = [chr(c) for c in range(0x250) if IDENTIFIER.match("a" + chr(c))]
    assert "".join(sorted(accepted)) == "0123456789_abcdefghijklmnopqrstuvwxyz"
    assert IDENTIFIER.match("a" * 63)
    assert not IDENTIFIER.match("a" * 64)
    assert not IDENTIFIER.match("a\n")  # $ must not accept a trailing newline
    for shipped in ("demo", "housing"):
        d = load_definition(shipped)
        for name in [d.name, d.table, d.entity_key.column, d.target.column, *d.features]:
            assert IDENTIFIER.fullmatch(name), name


def test_sql_keywords_as_names_are_quoted_not_interpreted(tmp_path: Path) -> None:
    """Names that pass validation but are SQL keywords (a table ``order``, columns ``select``,
    ``from``, ``group``) work end to end, because every statement quotes identifiers."""
    toml = tmp_path / "select.toml"
    toml.write_text(
        "\n".join(
            [
                'name = "select"',
                'table = "order"',
                "[entity_key]",
                'column = "from"',
                'type = "integer"',
                "[target]",
                'column = "where"',
                "[features.group]",
                'type = "float"',
                "[features.table]",
                'type = "categorical"',
                'values = ["a", "b"]',
            ]
        ),
        encoding="utf-8",
    )
    tomllib.loads(toml.read_text(encoding="utf-8"))
    d = load_definition(toml)
    store = SqlFeatureStore(f"sqlite:///{tmp_path / 'store.db'}", chunk_rows=1_000)
    try:
        store.create_schema([d])
        frame = pd.DataFrame(
            {"from": [1, 2, 3], "where": [1.0, 2.0, 3.0], "group": [0.5, 1.5, 2.5], "table": ["a", "b", "a"]}
        )
        outcome = ingest_frame(store, d, frame)
        assert outcome.written == 3
        assert store.count_rows(d) == 3
        table = store.table_for(d)
        with store.engine.connect() as conn:
            back = conn.execute(select(table.c["from"], table.c["table"]).order_by(table.c["from"])).all()
            assert [tuple(r) for r in back] == [(1, "a"), (2, "b"), (3, "a")]
            names = {
                row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        assert "order" in names
    finally:
        store.dispose()
