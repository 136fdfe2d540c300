"""Reference pages generated from the code: the CLI from its argparse parsers, the config files
from their pydantic schemas. Run by ``docs/hooks/main.py`` on every ``mkdocs build``, so the
pages cannot drift from the code; nothing here is written by hand but the meanings of the few
fields whose source says nothing about them (``docs/hooks/config_meanings.yaml``).

Where a field's meaning comes from, first found wins: its ``Field(description=...)``; a comment on
or just above its line in the class; a ``name: meaning`` line of the class docstring's field list;
the comment beside ``name:`` in the YAML example of its module's docstring; the meanings file.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import io
import json
import re
import textwrap
import tokenize
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

HERE = Path(__file__).resolve().parent
MEANINGS_FILE = HERE / "config_meanings.yaml"

# ---------------------------------------------------------------------------------------------
# CLI


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _action_row(action: argparse.Action) -> tuple[str, str, str]:
    if action.option_strings:
        name = ", ".join(f"`{s}`" for s in action.option_strings)
        if action.nargs != 0:
            metavar = action.metavar or action.dest.upper()
            if isinstance(metavar, tuple):
                metavar = " ".join(metavar)
            name += f" `{metavar}`"
    else:
        name = f"`{action.metavar or action.dest}`"
    default = ""
    if (
        action.option_strings
        and action.default not in (None, False, argparse.SUPPRESS)
        and action.nargs != 0
    ):
        default = f"`{action.default}`"
    help_ = (action.help or "").replace("%(default)s", str(action.default))
    if action.choices and "{" not in help_:
        help_ += " (one of " + ", ".join(f"`{c}`" for c in action.choices) + ")"
    if getattr(action, "required", False) and action.option_strings:
        help_ = "**required**. " + help_
    return name, default, help_


def cli_reference_markdown() -> str:
    """The ``qcalo`` program: every verb, its usage and every argument, from the parsers."""
    from qcalo.cli import main as cli

    parser, parsers = cli.build_parser()
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parsers of `qcalo` (`qcalo.cli`) on every build of this site;",
        "`qcalo VERB --help` prints the same. Every verb also takes `-q`/`--quiet`. A user error",
        "prints one line naming the problem and exits with status 2.",
        "",
        "| verb | what it does |",
        "|---|---|",
    ]
    for name, (_, help_) in cli.SUBCOMMANDS.items():
        if name in parsers:
            lines.append(f"| [`qcalo {name}`](#qcalo-{name}) | {_escape(help_)} |")
    for name, (module_name, help_) in cli.SUBCOMMANDS.items():
        if name not in parsers:
            continue
        module = importlib.import_module(module_name)
        sub = parsers[name]
        module.add_arguments(sub)
        lines += ["", f"## qcalo {name}", "", help_[0].upper() + help_[1:] + ".", ""]
        doc = inspect.getdoc(module) or ""
        body = doc.split("\n\n", 1)[1] if "\n\n" in doc else ""
        if body.strip():
            # The module docstring's examples, reST literal blocks turned into code blocks.
            lines += [_rst_to_markdown(body), ""]
        usage = " ".join(sub.format_usage().split()).removeprefix("usage: ")
        lines += ["```text", textwrap.fill(usage, 96, subsequent_indent="    "), "```", ""]
        lines += ["| argument | default | meaning |", "|---|---|---|"]
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                continue
            arg, default, meaning = _action_row(action)
            lines.append(f"| {arg} | {_escape(default)} | {_escape(meaning)} |")
    return "\n".join(lines) + "\n"


def _rst_to_markdown(text: str) -> str:
    """Docstring prose with ``literal`` and ``Example::`` blocks as Markdown."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.rstrip().endswith("::"):
            head = line.rstrip()[:-2].rstrip()
            if head:
                out.append(head + ":")
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            out += ["", "```bash", textwrap.dedent("\n".join(block)).strip("\n"), "```", ""]
            continue
        out.append(re.sub(r"``([^`]+)``", r"`\1`", line))
        i += 1
    return re.sub(r":(?:class|func|mod|meth|attr):`~?([^`]+)`", r"`\1`", "\n".join(out))


# ---------------------------------------------------------------------------------------------
# configs

#: (title, root class, YAML path of its instances, intro) of each config file kind.
ROOTS: list[tuple[str, str, str, str]] = [
    (
        "Run config (`qcalo train CONFIG.yaml`)",
        "qcalo.training.config:RunConfig",
        "",
        "One YAML file says what to train and how; `model.kind` picks the model (its section "
        "below). Unknown keys are errors. The shipped configs are in `src/qcalo/configs/`.",
    ),
    (
        "Study file (`qcalo study STUDY.yaml`)",
        "qcalo.studies.config:StudyConfig",
        "",
        "A grid (or list) of run-config cells over seeds; see [Studies](../studies.md).",
    ),
]


#: Classes whose fields are another class's, documented there (the circuit settings).
SAME_FIELDS_AS: dict[str, tuple[str, ...]] = {
    "CircuitConfig": ("qcalo.quantum.spec:CircuitSpec",),
    "BornStage1Config": ("qcalo.quantum.spec:CircuitSpec",),
}


def _import(path: str) -> Any:
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    """The pydantic models named anywhere inside a type annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in typing.get_args(annotation):
        yield from _models_in(arg)


def type_text(annotation: Any) -> str:
    """A short reading of a field's type: ``int``, ``"a" | "b"``, ``list[int] | null``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "null"
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(type_text(a) for a in args)
    if origin in (list, tuple, dict, set):
        name = origin.__name__
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return f"tuple[{type_text(args[0])}, …]"
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
        return {"str": "str", "int": "int", "float": "float", "bool": "bool"}.get(
            annotation.__name__, annotation.__name__
        )
    if annotation is Any:
        return "any"
    return str(annotation).replace("typing.", "")


def _default_text(info: FieldInfo) -> str:
    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return f"see [{type(value).__name__}](#{type(value).__name__.lower()})"
    try:
        dumped = json.loads(json.dumps(value, default=list))
    except (TypeError, ValueError):
        dumped = repr(value)
    text = json.dumps(dumped, ensure_ascii=False) if not isinstance(dumped, str) else dumped
    return f"`{text}`"


_BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥"}


def _constraints(info: FieldInfo) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sign in _BOUNDS.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sign} {value:g}" if isinstance(value, float) else f"{sign} {value}")
    return ", ".join(parts)


def _source_comments(cls: type) -> dict[str, str]:
    """Comments on a field's lines or the comment lines just above it, by field name."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#:").strip()
    lines = source.splitlines()
    out: dict[str, str] = {}
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    for node in body.body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        found = [
            comments[n]
            for n in range(node.lineno, (node.end_lineno or node.lineno) + 1)
            if n in comments
        ]
        above: list[str] = []
        n = node.lineno - 1
        while n >= 1 and lines[n - 1].strip().startswith("#"):
            above.insert(0, comments.get(n, ""))
            n -= 1
        text = " ".join(part for part in [*above, *found] if part and "type: ignore" not in part)
        if text:
            out[node.target.id] = text
    return out


def _own_doc(cls: type) -> str:
    """The class's own docstring (not one inherited from pydantic's BaseModel)."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _docstring_fields(cls: type) -> dict[str, str]:
    """``name: meaning`` entries of a docstring's field list (names may be comma-separated)."""
    doc = _own_doc(cls)
    out: dict[str, str] = {}
    current: list[str] = []
    for line in doc.splitlines():
        match = re.match(r"^([a-z_][a-z0-9_]*(?:, [a-z_][a-z0-9_]*)*): (.+)$", line)
        if match:
            current = match.group(1).split(", ")
            for name in current:
                out[name] = match.group(2)
        elif current and line.startswith("    ") and line.strip():
            for name in current:
                out[name] += " " + line.strip()
        else:
            current = []
    return {k: _rst_inline(v) for k, v in out.items()}


def _yaml_example_comments(cls: type) -> dict[str, str]:
    """Comments beside ``name:`` in the YAML example of the class's module docstring."""
    module = inspect.getmodule(cls)
    doc = (module.__doc__ if module else "") or ""
    out: dict[str, str] = {}
    for line in doc.splitlines():
        match = re.match(r"^\s*([a-z_][a-z0-9_]*):[^#]*#\s*(.+)$", line)
        if match and match.group(1) not in out:
            out[match.group(1)] = match.group(2).strip()
    return out


def _rst_inline(text: str) -> str:
    text = re.sub(r":(?:class|func|mod|meth|attr):`~?([^`]+)`", r"`\1`", text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def load_meanings() -> dict[str, str]:
    data = (
        yaml.safe_load(MEANINGS_FILE.read_text(encoding="utf-8")) if MEANINGS_FILE.is_file() else {}
    )
    return {str(k): str(v) for k, v in (data or {}).items()}


def field_meaning(cls: type[BaseModel], name: str, meanings: dict[str, str]) -> str | None:
    info = cls.model_fields[name]
    if info.description:
        return info.description
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, BaseModel)) or klass is BaseModel:
            continue
        if name not in getattr(klass, "__annotations__", {}):
            continue
        for source in (_source_comments, _docstring_fields):
            text = source(klass).get(name)
            if text:
                return text
        for other in SAME_FIELDS_AS.get(klass.__name__, ()):
            text = _docstring_fields(_import(other)).get(name)
            if text:
                return text
    for klass in cls.__mro__:
        key = f"{klass.__name__}.{name}"
        if key in meanings:
            return meanings[key]
    for klass in cls.__mro__:
        if name in getattr(klass, "__annotations__", {}):
            text = _yaml_example_comments(klass).get(name)
            if text:
                return text
    return None


def config_classes() -> list[tuple[type[BaseModel], list[str]]]:
    """Every schema class reachable from the roots, with the YAML paths it appears at."""
    from qcalo.training.config import MODEL_CONFIG_TYPES

    seen: dict[type[BaseModel], list[str]] = {}
    queue: list[tuple[type[BaseModel], str]] = []
    for _, root, path, _ in ROOTS:
        queue.append((_import(root), path))
    # model: is a union over the registered kinds; each kind is its own section.
    for kind, cls in MODEL_CONFIG_TYPES.items():
        queue.append((cls, f"model (kind: {kind})"))
    while queue:
        cls, path = queue.pop(0)
        if cls in seen:
            if path and path not in seen[cls]:
                seen[cls].append(path)
            continue
        seen[cls] = [path] if path else []
        for name, info in cls.model_fields.items():
            if name == "model" and cls.__name__ == "RunConfig":
                continue
            for sub in _models_in(info.annotation):
                clean = re.sub(r" \(kind: \w+\)", "", path)
                queue.append((sub, f"{clean}.{name}" if clean else name))
    return list(seen.items())


def config_reference_markdown() -> tuple[str, list[str]]:
    """The page, and the fields (``Class.field``) for which no meaning was found."""
    from qcalo.training.config import MODEL_CONFIG_TYPES

    meanings = load_meanings()
    missing: list[str] = []
    lines = [
        "# Config reference",
        "",
        "Every field of every config file, generated from the pydantic schemas on every build of",
        "this site: its type, default, bounds and meaning. Unknown keys are errors everywhere; a",
        "bad value is a one-line error naming the field path (`model.stage1.conditioner[2]: ...`).",
        "Model kinds (`model.kind`): "
        + ", ".join(f"[`{k}`](#{c.__name__.lower()})" for k, c in MODEL_CONFIG_TYPES.items())
        + ".",
        "",
    ]
    intros = {_import(root): (title, intro) for title, root, _, intro in ROOTS}
    for cls, paths in config_classes():
        title, intro = intros.get(cls, (None, None))
        lines.append(f"## {cls.__name__}")
        lines.append("")
        if title:
            lines += [f"**{title}.** {intro}", ""]
        if paths:
            lines += ["At: " + ", ".join(f"`{p}`" for p in paths), ""]
        doc = _own_doc(cls)
        summary = doc.split("\n\n")[0].replace("\n", " ")
        if (
            summary
            and not summary.startswith("A study file; see")
            and "module docstring" not in summary
        ):
            lines += [_rst_inline(summary), ""]
        lines += ["| field | type | default | bounds | meaning |", "|---|---|---|---|---|"]
        for name, info in cls.model_fields.items():
            if info.exclude:
                continue
            meaning = field_meaning(cls, name, meanings)
            if meaning is None:
                missing.append(f"{cls.__name__}.{name}")
                meaning = "(not described in the source)"
            annotation = info.annotation
            if name == "model" and cls.__name__ == "RunConfig":
                type_ = "one of " + ", ".join(
                    f"[{c.__name__}](#{c.__name__.lower()})" for c in MODEL_CONFIG_TYPES.values()
                )
            else:
                type_ = type_text(annotation)
            lines.append(
                f"| `{name}` | {type_} | {_escape(_default_text(info))} | "
                f"{_constraints(info)} | {_escape(meaning)} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n", missing


if __name__ == "__main__":  # python docs/hooks/reference.py: print what lacks a meaning
    page, missing = config_reference_markdown()
    print("\n".join(missing) or "every field has a meaning")
