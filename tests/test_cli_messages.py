"""Every flag and command that fastattr's own words name exists: errors, help and docstrings alike.

The source of python/fastattr and export is read as syntax trees; every string literal (f-string
holes become ``{}``) is searched for ``--flag`` and ``fastattr COMMAND`` mentions, which are checked
against the real argparse tree that :func:`fastattr.cli.build_parser` builds. A flag bound to a
named command (```fastattr export --fp16```, ``fastattr t2i train --steps 10``) must exist on that
command; any other flag must exist on a command that the module's stage registers.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import re
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

from fastattr import cli

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "python" / "fastattr"


def _module(path: Path, root: Path, prefix: str) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join((prefix, *parts[:-1]) if parts[-1] == "__init__" else (prefix, *parts))


# python/fastattr/export is a symlink to export/: read export/ once, under its installed name.
SOURCES = [(p, _module(p, PACKAGE, "fastattr")) for p in sorted(PACKAGE.rglob("*.py"))
           if p.relative_to(PACKAGE).parts[0] != "export"]
SOURCES += [(p, _module(p, ROOT / "export", "fastattr.export")) for p in sorted((ROOT / "export").rglob("*.py"))]

# Who answers for a module's words: a stage's modules, the commands that stage registers (a teacher
# error must not suggest a flag only `fastattr build` has). Library modules that serve every
# command (datasets, models, the SDK, atomic writes) answer to the whole CLI.
STAGE_CLI = {
    "fastattr.world": "fastattr.world.cli",
    "fastattr.t2i": "fastattr.t2i.cli",
    "fastattr.teacher": "fastattr.teacher.cli",
    "fastattr.student": "fastattr.student.cli",
    "fastattr.export": "fastattr.export.cli",
    "fastattr.build": "fastattr.build_cli",
    "fastattr.bundle_build": "fastattr.bundle_build",
    "fastattr.demo": "fastattr.demo",
    "fastattr.query_cli": "fastattr.query_cli",
    "fastattr.build_cli": "fastattr.build_cli",
}
# Flags of other tools, named on purpose: (module, flag) -> why.
KNOWN_FOREIGN: dict[tuple[str, str], str] = {
    ("fastattr.index", "--inplace"): "rsync's flag, in a docstring on files overwritten in place",
}

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
HOLE = "{}"


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]
    flags: frozenset[str]
    children: tuple[str, ...]


def _walk(parser: argparse.ArgumentParser, path: tuple[str, ...], out: dict[tuple[str, ...], Command]) -> None:
    children: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            children.update(action.choices)
    flags = frozenset(s for a in parser._actions for s in a.option_strings)
    out[path] = Command(path, flags, tuple(children))
    for name, child in children.items():
        _walk(child, path + (name,), out)


def _commands_of(register_module: str | None) -> dict[tuple[str, ...], Command]:
    """The command tree of the whole CLI, or of what one module's ``register`` adds."""
    if register_module is None:
        parser = cli.build_parser()
    else:
        parser = argparse.ArgumentParser(prog="fastattr")
        importlib.import_module(register_module).register(parser.add_subparsers())
    tree: dict[tuple[str, ...], Command] = {}
    _walk(parser, (), tree)
    return tree


TREE = _commands_of(None)
REGISTERED = {m: _commands_of(m) for m in cli._COMMAND_MODULES}


def _pytest_plugin_flags() -> set[str]:
    """The options fastattr's pytest plugin registers (its words name pytest's command line)."""
    from fastattr import pytest_plugin

    flags: set[str] = set()
    recorder = types.SimpleNamespace(addoption=lambda *names, **_: flags.update(names), addini=lambda *a, **k: None)
    recorder.getgroup = lambda *a, **k: recorder
    pytest_plugin.pytest_addoption(recorder)
    return flags


def _owner_flags(module: str) -> tuple[str, set[str]]:
    """Who answers for a module's words, and the flags its commands have."""
    if module == "fastattr.pytest_plugin":
        return "the pytest plugin", _pytest_plugin_flags()
    for prefix, owner in sorted(STAGE_CLI.items(), key=lambda kv: -len(kv[0])):
        if module == prefix or module.startswith(prefix + "."):
            cmds = REGISTERED[owner]
            return owner, {f for c in cmds.values() if c.path for f in c.flags}
    return "any command", {f for c in TREE.values() for f in c.flags}


def _text(node: ast.AST) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else HOLE for v in node.values)
    return None


def _strings(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    inner = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        text = _text(node)
        if text and ("--" in text or "fastattr " in text):
            found.append((node.lineno, text))
    return found


_WORD = re.compile(r"[A-Za-z][\w-]*")


def _mentions(text: str) -> list[tuple[tuple[str, ...], str | None, list[str]]]:
    """``fastattr ...`` mentions: (command path, problem or None, flags bound to the command)."""
    found = []
    for match in re.finditer(r"(`?)fastattr ((?:[^`\n])*)", text):
        ticked = bool(match.group(1))
        rest = match.group(2)
        if ticked:
            rest = rest.split("`", 1)[0]
        tokens = rest.split()
        path: tuple[str, ...] = ()
        problem = None
        i = 0
        while i < len(tokens):
            word = tokens[i].rstrip(".,;:)")
            node = TREE[path]
            if word in node.children:
                path += (word,)
                i += 1
                if word != tokens[i - 1]:   # punctuation ends the command
                    break
                continue
            # Only a mention in backticks is surely a command ("a fastattr world folder" is prose).
            if ticked and node.children and _WORD.fullmatch(word) and word.islower():
                problem = f"`fastattr {' '.join(path + (word,))}`: no such command"
            break
        if not path:
            if ticked and problem is None and tokens and not tokens[0].startswith("-"):
                problem = f"`fastattr {tokens[0]}`: no such command"
            if problem:
                found.append((path, problem, []))
            continue
        bound = []
        # Flags right after the command (with their values, metavars, holes) belong to it; in
        # backticks the whole span does.
        for token in tokens[i:]:
            if ticked or token.startswith("-") or token == HOLE or token.isupper() or token[0].isdigit() \
                    or "/" in token or "." in token.strip(".,;:)"):
                bound += FLAG.findall(token)
                if not ticked and token[-1] in ".,;:)":
                    break
            else:
                break
        found.append((path, problem, bound))
    return found


def problems_in(module: str, strings: list[tuple[int, str]]) -> list[str]:
    owner, owned = _owner_flags(module)
    problems = []
    for line, text in strings:
        bound: set[str] = set()
        for path, problem, flags in _mentions(text):
            if problem:
                problems.append(f"{module}:{line}: {problem}")
            for flag in flags:
                bound.add(flag)
                if flag not in TREE[path].flags:
                    problems.append(f"{module}:{line}: `fastattr {' '.join(path)}` has no {flag}")
        for match in FLAG.finditer(text):
            flag = match.group()
            if flag in bound or (module, flag) in KNOWN_FOREIGN:
                continue
            if text[match.end():match.end() + len(HOLE)] == HOLE:
                continue   # --{precision}: the value decides; only a bound command can check it
            if flag not in owned:
                problems.append(f"{module}:{line}: {flag} is on no command of {owner}: {text[:90]!r}")
    return problems


def test_every_named_flag_and_command_exists() -> None:
    strings = {module: _strings(path) for path, module in SOURCES}
    # The walk really reads the source (a moved folder must not make this pass on nothing).
    assert len(strings) > 50 and sum(len(FLAG.findall(t)) for s in strings.values() for _, t in s) > 100
    problems = [p for module, found in strings.items() for p in problems_in(module, found)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module, text, expected", [
    # The bug this test was written for: a teacher error suggesting a flag no teacher command has.
    ("fastattr.teacher.inputs", "load it with image_size=16 (CLI: --image-size 16)", "--image-size is on no command"),
    ("fastattr.t2i.model", "train one with `fastattr t2i train --image-sise 8`", "has no --image-sise"),
    ("fastattr.bundle", "rebuild it with `fastattr bundel build`", "`fastattr bundel`: no such command"),
    ("fastattr.bundle", "rebuild it with `fastattr bundle biuld`", "`fastattr bundle biuld`: no such command"),
    ("fastattr.data.layouts", "retry with fastattr t2i train --steps 10 --lr 1e-3 --nope.", "has no --nope"),
])
def test_the_check_catches_wrong_names(module: str, text: str, expected: str) -> None:
    problems = problems_in(module, [(1, text)])
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("module, text", [
    ("fastattr.t2i.cli", "pass --image-size N to centre-crop them"),
    ("fastattr.attributor", "build it with `fastattr export --{}`"),
    ("fastattr.data.dataset", "this fastattr reads version 1"),
    ("fastattr.bundle_build", "former name of `fastattr bundle` (kept for existing scripts)"),
    ("fastattr.data.layouts", "or create one with `fastattr world make {}`."),
])
def test_the_check_passes_right_names(module: str, text: str) -> None:
    assert problems_in(module, [(1, text)]) == []


# Every command that writes a folder, pointed at a folder of the user's: the refusal comes before
# any work, and the flag it suggests is one the command has.
WRITERS = {
    ("world", "make"): ["world", "make", "{out}", "--n-items", "4"],
    ("t2i", "train"): ["t2i", "train", "{tmp}/none", "{out}"],
    ("student", "train"): ["student", "train", "--dataset", "{tmp}/none", "--teacher-set", "{tmp}/none",
                           "--out", "{out}"],
    ("bundle", "build"): ["bundle", "build", "--embedder", "{tmp}/none", "--dataset", "{tmp}/none", "--out", "{out}"],
    ("build",): ["build", "--model", "{tmp}/none", "--dataset", "{tmp}/none", "--out", "{out}"],
}


@pytest.mark.parametrize("path", sorted(WRITERS), ids=" ".join)
def test_a_refused_output_names_a_flag_the_command_has(path: tuple[str, ...], tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    argv = [a.format(out=out, tmp=tmp_path) for a in WRITERS[path]]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "refusing to replace it" in err, err
    assert set(FLAG.findall(err)) <= TREE[path].flags and "--overwrite" in err, err
    assert (out / "notes.txt").read_text() == "keep me"


def test_world_make_overwrite_replaces_a_foreign_folder(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("x")
    assert cli.main(["world", "make", str(out), "--n-items", "4", "--overwrite"]) == 0
    assert (out / "dataset.json").is_file() and not (out / "notes.txt").exists()
