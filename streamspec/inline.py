"""Inlining modules into one standalone script, so that it runs the very code of the modules it inlines.

A `Piece` is a module's text (all of it, or only some of its top-level definitions). `assemble` puts
pieces one after the other into one namespace: each piece's docstring and ``from __future__``
line go, its imports of the project's own packages are stripped (what they imported is defined by
an earlier or later piece), and its other imports are hoisted, merged, into the script's head.
It refuses to assemble what would not run as written: a name two pieces both define, or a name a
stripped import brought in that no piece defines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The folder that holds the `harness` and `streamspec` packages."""
INTERNAL = ("harness", "scenarios", "streamspec")


class InlineError(ValueError):
    """The pieces cannot become one script as they are."""


@dataclass(frozen=True)
class Piece:
    label: str
    """What the piece is, e.g. its path ("harness/history.py"); the script shows it in a banner."""
    source: str
    names: tuple[str, ...] | None = None
    """Only these top-level definitions (None: the whole module)."""

    @classmethod
    def of(cls, path: str, names: Iterable[str] | None = None) -> Piece:
        """The module at `path` (relative to the repository root) or some of its definitions."""
        return cls(path, (ROOT / path).read_text(encoding="utf-8"), None if names is None else tuple(names))


def _internal(node: ast.Import | ast.ImportFrom) -> bool:
    if isinstance(node, ast.ImportFrom):
        return node.level > 0 or (node.module or "").split(".")[0] in INTERNAL
    return all(alias.name.split(".")[0] in INTERNAL for alias in node.names)


def _bound(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [alias.asname or alias.name.split(".")[0] for alias in node.names]


def _defines(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _is_type_checking(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        and all(isinstance(n, ast.Import | ast.ImportFrom) and _internal(n) for n in node.body)
    )


def _is_docstring(node: ast.stmt) -> bool:
    value = node.value if isinstance(node, ast.Expr) else None
    return isinstance(value, ast.Constant) and isinstance(value.value, str)


@dataclass
class _Cut:
    """What one piece gives the script."""

    text: str
    defined: dict[str, str]
    """Name -> piece label, for every top-level definition kept."""
    needed: set[str]
    """Names the stripped imports brought in."""
    hoisted: list[ast.Import | ast.ImportFrom]


def _cut(piece: Piece) -> _Cut:
    tree = ast.parse(piece.source)
    lines = piece.source.splitlines(keepends=True)
    kept: list[str] = []
    defined: dict[str, str] = {}
    needed: set[str] = set()
    hoisted: list[ast.Import | ast.ImportFrom] = []
    wanted = set(piece.names or ())
    previous_end = 0
    keep_next_docstring = False
    for position, node in enumerate(tree.body):
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
        # The comments and blank lines above a statement go with it.
        chunk = "".join(lines[previous_end : node.end_lineno])
        previous_end = node.end_lineno or start
        attribute_doc, keep_next_docstring = keep_next_docstring and _is_docstring(node), False
        if position == 0 and _is_docstring(node):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            if _internal(node):
                needed.update(_bound(node))
            else:
                hoisted.append(node)
            continue
        if _is_type_checking(node):
            for inner in node.body:
                needed.update(_bound(inner))  # type: ignore[arg-type]
            continue
        if "__all__" in _defines(node):
            continue
        names = _defines(node)
        if piece.names is not None and not attribute_doc:
            if not set(names) & wanted:
                continue
            keep_next_docstring = True
        for name in names:
            defined[name] = piece.label
        kept.append(chunk)
    missing = wanted - set(defined)
    if missing:
        raise InlineError(f"{piece.label} defines no {', '.join(sorted(missing))}")
    text = "".join(kept).strip("\n")
    if piece.names is not None:  # only the imports the kept definitions use
        used = {n.id for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Name)}
        hoisted = [_only(node, used) for node in hoisted if set(_bound(node)) & used]
    return _Cut(text, defined, needed, hoisted)


def _only(node: ast.Import | ast.ImportFrom, used: set[str]) -> ast.Import | ast.ImportFrom:
    names = [alias for alias in node.names if (alias.asname or alias.name.split(".")[0]) in used]
    if isinstance(node, ast.ImportFrom):
        return ast.ImportFrom(module=node.module, names=names, level=node.level)
    return ast.Import(names=names)


def _imports(nodes: Sequence[ast.Import | ast.ImportFrom]) -> tuple[str, dict[str, str]]:
    """The hoisted imports as text (merged, sorted) and what each name they bind comes from."""
    plain: set[str] = set()
    froms: dict[str, set[str]] = {}
    origin: dict[str, str] = {}
    for node in nodes:
        for alias in node.names:
            text = alias.name + (f" as {alias.asname}" if alias.asname else "")
            bound = alias.asname or alias.name.split(".")[0]
            source = f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
            if origin.setdefault(bound, source) != source:
                raise InlineError(f"two pieces import different things as {bound}: {origin[bound]}, {source}")
            if isinstance(node, ast.ImportFrom):
                froms.setdefault(node.module or "", set()).add(text)
            else:
                plain.add(text)
    out = [f"import {name}" for name in sorted(plain)]
    out += [f"from {module} import {', '.join(sorted(names))}" for module, names in sorted(froms.items())]
    return "\n".join(out), origin


def assemble(head: str, pieces: Sequence[Piece]) -> str:
    """One script: `head` (shebang and docstring), the hoisted imports, then the pieces in order."""
    cuts = [_cut(piece) for piece in pieces]
    imports, imported = _imports([node for cut in cuts for node in cut.hoisted])
    defined: dict[str, str] = {}
    for cut in cuts:
        for name, label in cut.defined.items():
            if name in defined or name in imported:
                where = defined.get(name) or f"an import of {imported[name]}"
                raise InlineError(f"{name} is defined by both {where} and {label}")
            defined[name] = label
    missing = set().union(*(cut.needed for cut in cuts)) - set(defined)
    if missing:
        raise InlineError(f"stripped imports need {', '.join(sorted(missing))}, which no piece defines")
    parts = [head.rstrip("\n"), "from __future__ import annotations", imports]
    for piece, cut in zip(pieces, cuts, strict=True):
        banner = f"# == {piece.label} "
        parts.append(banner + "=" * max(3, 100 - len(banner)) + "\n\n" + cut.text)
    return "\n\n\n".join(parts) + "\n"
