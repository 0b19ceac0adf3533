"""Read the ObjectScript classes in iris/src with tree-sitter-objectscript, for the static tests.

Everything the tests know about the classes comes from here, i.e. from the .cls files
themselves: classes, parameters, properties with their keywords, methods with their
arguments, defaults, language and body, the ObjectScript calls between methods, and the
Python functions the ``[ Language = python ]`` bodies call (with the arguments they pass).
"""

from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import tree_sitter
import tree_sitter_objectscript

ROOT = Path(__file__).resolve().parents[2]
CLASS_DIR = ROOT / "iris" / "src"


@cache
def parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_objectscript.language_objectscript()))


def class_files() -> list[Path]:
    return sorted(CLASS_DIR.rglob("*.cls"))


def parse_tree(path: Path) -> tree_sitter.Tree:
    return parser().parse(path.read_bytes())


def problems(tree: tree_sitter.Tree) -> list[str]:
    """Every ERROR or MISSING node, with its position."""
    found: list[str] = []

    def walk(node: tree_sitter.Node) -> None:
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            text = (node.text or b"").decode(errors="replace")[:60]
            found.append(f"{node.type} at line {row + 1}, column {col + 1}: {text!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return found


def _text(node: tree_sitter.Node | None) -> str:
    return "" if node is None else (node.text or b"").decode()


def literal(text: str) -> Any:
    """An ObjectScript literal as Python: "a""b" -> 'a"b', 20 -> 20, 0.6 -> 0.6."""
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1].replace('""', '"')
    try:
        return int(text)
    except ValueError:
        return float(text)


@dataclass
class Argument:
    name: str
    type: str
    default: Any = None
    has_default: bool = False


@dataclass
class ObjectScriptCall:
    """``##class(Cls).Method(args)`` (``cls`` set) or ``..Method(args)`` (``cls`` None)."""

    cls: str | None
    method: str
    args: list[str]


@dataclass
class Method:
    name: str
    kind: str  # ClassMethod or Method
    arguments: list[Argument]
    returns: str
    language: str  # python or objectscript
    body: str
    calls: list[ObjectScriptCall] = field(default_factory=list)

    @property
    def python(self) -> ast.Module:
        return ast.parse(textwrap.dedent(self.body))


@dataclass
class Property:
    name: str
    type: str
    keywords: dict[str, str]

    @property
    def sql_name(self) -> str:
        return self.keywords.get("SqlFieldName", self.name)


@dataclass
class ClassDef:
    name: str
    path: Path
    extends: list[str]
    keywords: str
    parameters: dict[str, Any]
    properties: dict[str, Property]
    methods: dict[str, Method]
    indices: dict[str, str]


def _keywords(node: tree_sitter.Node) -> dict[str, str]:
    out: dict[str, str] = {}
    for kw in node.children:
        if kw.type not in (
            "property_keyword",
            "method_keyword",
            "index_keyword",
            "keyword_external_language",
        ):
            continue
        text = _text(kw)
        name, _, value = text.partition("=")
        out[name.strip()] = value.strip()
    return out


def _calls(node: tree_sitter.Node) -> list[ObjectScriptCall]:
    found: list[ObjectScriptCall] = []

    def args_of(n: tree_sitter.Node) -> list[str]:
        holder = next((c for c in n.children if c.type == "method_args"), None)
        if holder is None:
            return []
        return [_text(c) for c in holder.children if c.type == "method_arg"]

    def walk(n: tree_sitter.Node) -> None:
        if n.type == "class_method_call":
            ref = next(c for c in n.children if c.type == "class_ref")
            cls = _text(next(c for c in ref.children if c.type == "class_name"))
            name = _text(next(c for c in n.children if c.type == "method_name"))
            found.append(ObjectScriptCall(cls, name, args_of(n)))
        elif n.type == "oref_method" and n.parent is not None and n.parent.type == "relative_dot_method":
            name = _text(next(c for c in n.children if c.type == "method_name"))
            found.append(ObjectScriptCall(None, name, args_of(n)))
        for c in n.children:
            walk(c)

    walk(node)
    return found


def _method(node: tree_sitter.Node) -> Method:
    kind = _text(node.children[0])
    definition = next(c for c in node.children if c.type == "method_definition")
    name = _text(next(c for c in definition.children if c.type == "method_name"))
    arguments: list[Argument] = []
    holder = next((c for c in definition.children if c.type == "arguments"), None)
    for arg in holder.children if holder else []:
        if arg.type != "argument":
            continue
        arg_name = _text(next(c for c in arg.children if c.type == "method_arg")).strip()
        arg_type = next((c for c in arg.children if c.type == "return_type"), None)
        default = next((c for c in arg.children if c.type == "default_argument_value"), None)
        argument = Argument(arg_name, _text(arg_type).removeprefix("As").strip())
        if default is not None:
            argument.has_default = True
            argument.default = literal(_text(default.children[-1]))
        arguments.append(argument)
    returns = next((c for c in definition.children if c.type == "return_type"), None)
    language = "objectscript"
    external = next((c for c in definition.children if c.type == "external_method_keywords"), None)
    if external is not None and "python" in _text(external).lower():
        language = "python"
    content = next((c for c in definition.children if c.type == "external_method_body_content"), None)
    if content is not None:
        body = _text(content)
    else:
        statements = [c for c in definition.children if c.type == "statement"]
        body = "\n".join(_text(s) for s in statements)
    method = Method(name, kind, arguments, _text(returns).removeprefix("As").strip(), language, body)
    if language == "objectscript":
        method.calls = _calls(definition)
    return method


def parse_class(path: Path) -> ClassDef:
    tree = parse_tree(path)
    definition = next(c for c in tree.root_node.children if c.type == "class_definition")
    name = _text(next(c for c in definition.children if c.type == "class_name"))
    extends_node = next((c for c in definition.children if c.type == "class_extends"), None)
    extends = [_text(c) for c in extends_node.children if c.type == "class_name"] if extends_node else []
    keywords = " ".join(_text(c) for c in definition.children if c.type == "class_keyword")
    body = next(c for c in definition.children if c.type == "class_body")
    parameters: dict[str, Any] = {}
    properties: dict[str, Property] = {}
    methods: dict[str, Method] = {}
    indices: dict[str, str] = {}
    for statement in body.children:
        if statement.type != "class_statement":
            continue
        member = statement.children[0]
        if member.type == "parameter":
            pname = _text(next(c for c in member.children if c.type == "parameter_name"))
            default = next(c for c in member.children if c.type == "default_argument_value")
            parameters[pname] = literal(_text(default.children[-1]))
        elif member.type == "property":
            pname = _text(next(c for c in member.children if c.type == "property_name"))
            ptype = (
                _text(next(c for c in member.children if c.type == "return_type")).removeprefix("As").strip()
            )
            kws = next((c for c in member.children if c.type == "property_keywords"), None)
            properties[pname] = Property(pname, ptype, _keywords(kws) if kws else {})
        elif member.type in ("classmethod", "method"):
            method = _method(member)
            methods[method.name] = method
        elif member.type == "index":
            iname = _text(next(c for c in member.children if c.type == "index_name"))
            indices[iname] = _text(member)
    return ClassDef(name, path, extends, keywords, parameters, properties, methods, indices)


@cache
def all_classes() -> dict[str, ClassDef]:
    return {c.name: c for c in (parse_class(p) for p in class_files())}


# -- the Python side of the classes ------------------------------------------------------


@dataclass
class PyArg:
    """One argument a Python body passes: a method parameter, a literal, or a class parameter."""

    kind: str  # "param", "const", "class_parameter", "property"
    value: Any  # parameter name, literal, (class, parameter) or property name


@dataclass
class PythonCall:
    cls: str
    method: str
    module: str
    function: str
    args: list[PyArg]


def _imports(tree: ast.Module) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or alias.name.split(".")[0]] = alias.name
    return names


def _arg(node: ast.expr, method: Method) -> PyArg:
    params = {a.name for a in method.arguments}
    if isinstance(node, ast.Name) and node.id in params:
        return PyArg("param", node.id)
    if isinstance(node, ast.Constant):
        return PyArg("const", node.value)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
        return PyArg("property", node.attr)
    # iris.cls("Cls")._GetParameter("NAME")
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "_GetParameter"
        and isinstance(node.func.value, ast.Call)
        and isinstance(node.func.value.func, ast.Attribute)
        and node.func.value.func.attr == "cls"
        and len(node.func.value.args) == 1
        and isinstance(node.func.value.args[0], ast.Constant)
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
    ):
        return PyArg("class_parameter", (node.func.value.args[0].value, node.args[0].value))
    raise AssertionError(f"{method.name}: cannot tell what argument {ast.unparse(node)!r} is")


def python_calls(cls: ClassDef, method: Method) -> list[PythonCall]:
    """Calls of functions of the ``mlpipeline`` package in a Python body."""
    tree = method.python
    imports = {k: v for k, v in _imports(tree).items() if v.startswith("mlpipeline")}
    calls: list[PythonCall] = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in imports
        ):
            assert not node.keywords, f"{cls.name}.{method.name}: pass arguments by position"
            calls.append(
                PythonCall(
                    cls.name,
                    method.name,
                    imports[node.func.value.id],
                    node.func.attr,
                    [_arg(a, method) for a in node.args],
                )
            )
    return calls


def all_python_calls() -> list[PythonCall]:
    return [
        call
        for cls in all_classes().values()
        for method in cls.methods.values()
        if method.language == "python"
        for call in python_calls(cls, method)
    ]
