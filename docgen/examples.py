"""Every example of README.md, CONTRIBUTING.md and docs/, checked as a user would use it.

A fenced block in bash, python, json or yaml is an example; `text` and `mermaid` blocks are
not, and any other language is an error. A comment on the line before a block,
`<!-- check: MODE -->`, says how it is checked; without one:

- json: `request`, parsed against the real request model and the page's configuration
  (its last YAML block with `sources`, else the repository's motoray.yaml);
- yaml: `config`, validated as a motoray configuration;
- bash and python: `run`, run in the page's workspace: a scratch copy of the demo layout
  (motoray.yaml, examples/, cluster.yaml, a few sample frames), one per page, in order.

Other modes: `run ray` (runs, and needs a Ray), `validate (why)` for commands that cannot
run here (shell syntax, `make` targets, paths, and every `motoray` command parsed by the
real command line), `plugin` (a Python operator plugin, loaded and run by `motoray
preview`), `json` and `yaml` (well-formed only), `response MODEL` (validated against
motoray.api.models.MODEL).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import yaml

from docgen import code

REPO = code.REPO
LANGUAGES = {"bash": "run", "python": "run", "json": "request", "yaml": "config"}
NOT_EXAMPLES = {"text", "mermaid"}
MODES = {"run", "run ray", "validate", "plugin", "json", "yaml", "response", "request", "config"}
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>\S*)[^\n]*\n(?P<code>.*?)^(?P=indent)```\s*$", re.M | re.S
)
CHECK = re.compile(r"^\s*<!-- check: (?P<mode>[a-z ]+?)(?: (?P<arg>\(.*\)|[A-Z]\w*))? -->\s*$")
TIMEOUT_S = 600


@dataclass(frozen=True)
class Example:
    page: Path
    line: int
    language: str
    code: str
    mode: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{shown(self.page)}:{self.line} ({self.language}, {self.mode})"


def pages() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def examples_of(page: Path) -> list[Example]:
    """The page's examples, in order; an unknown language or check is an error."""
    text = page.read_text()
    found = []
    for fence in FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        language = fence["lang"]
        if language in NOT_EXAMPLES:
            continue
        where = f"{shown(page)}:{line}"
        if language not in LANGUAGES:
            raise ValueError(
                f"{where}: a block in {language or 'no language'}; use one of "
                f"{', '.join([*LANGUAGES, *NOT_EXAMPLES])}"
            )
        before = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1]
        check = CHECK.match(before)
        mode, arg = (check["mode"], check["arg"] or "") if check else (LANGUAGES[language], "")
        if mode not in MODES:
            raise ValueError(f"{where}: unknown check {mode!r}")
        code_text = "\n".join(line[len(fence["indent"]) :] for line in fence["code"].splitlines())
        found.append(Example(page, line, language, code_text, mode, arg.strip("()")))
    return found


def shown(page: Path) -> str:
    return str(page.relative_to(REPO) if page.is_relative_to(REPO) else page)


def needs_ray(page: Path) -> bool:
    return any(example.mode == "run ray" for example in examples_of(page))


class Workspace:
    """A scratch copy of the demo layout where a page's examples run, in order."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.config: object | None = None  # the page's last configuration with sources
        self._made = False

    def path(self) -> Path:
        if not self._made:
            from motoray.sample_data import write_sample_frames

            for name in ("motoray.yaml", "cluster.yaml", ".gitignore"):
                shutil.copy(REPO / name, self.root / name)
            shutil.copytree(REPO / "examples", self.root / "examples")
            write_sample_frames(self.root / "data" / "sample" / "MotoGP", 8, (640, 360))
            self._made = True
        return self.root

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MOTORAY_", "RAY_"))}
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def run(self, command: list[str], **kwargs) -> str:
        done = subprocess.run(
            command, cwd=self.path(), env=kwargs.pop("env", self.env()), capture_output=True,
            text=True, timeout=TIMEOUT_S, **kwargs,
        )  # fmt: skip
        if done.returncode != 0:
            raise AssertionError(
                f"exit {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done.stdout


def check(example: Example, workspace: Workspace) -> None:
    """Raise an AssertionError naming the example if it does not hold."""
    try:
        CHECKS[example.mode](example, workspace)
    except Exception as e:
        raise AssertionError(f"{example}: {type(e).__name__}: {e}\n---\n{example.code}") from e


def _request(example: Example, workspace: Workspace) -> None:
    config = workspace.config or code.load_config(REPO / "motoray.yaml")
    if not code.parse_request(config, json.loads(example.code)):
        raise ValueError("no request in it")


def _config(example: Example, workspace: Workspace) -> None:
    config = code.config_model().model_validate(yaml.safe_load(example.code))
    if config.sources:
        workspace.config = config


def _response(example: Example, workspace: Workspace) -> None:
    code.public(f"motoray.api.models.{example.arg}").model_validate_json(example.code)


def _run(example: Example, workspace: Workspace) -> None:
    if example.language == "python":
        workspace.run([sys.executable, "-c", example.code])
    else:
        workspace.run(["bash", "-euc", example.code])


def _plugin(example: Example, workspace: Workspace) -> None:
    """The plugin, named in a configuration, makes a contact sheet of the sample frames."""
    root = workspace.path()
    (root / "docs_plugin.py").write_text(example.code)
    namespace: dict = {}
    exec(compile(example.code, "docs_plugin.py", "exec"), namespace)
    name = namespace["OPERATOR"].name
    config = yaml.safe_load((root / "motoray.yaml").read_text())
    config["operators"] = {"plugins": ["docs_plugin"]}
    (root / "plugin.yaml").write_text(yaml.safe_dump(config))
    request = {"name": "MotoGP", "input_image_size": [160, 90], "augmentations": [{name: {}}]}
    (root / "plugin-request.json").write_text(json.dumps(request))
    env = {**workspace.env(), "PYTHONPATH": str(root)}
    workspace.run(
        ["motoray", "preview", "plugin-request.json", "--config", "plugin.yaml",
         "-o", "plugin.png", "--count", "1"],
        env=env,
    )  # fmt: skip
    if not (root / "plugin.png").stat().st_size:
        raise ValueError("no contact sheet")


def _validate(example: Example, workspace: Workspace) -> None:
    if example.language != "bash":
        raise ValueError("validate applies to shell blocks")
    subprocess.run(["bash", "-n", "-c", example.code], check=True, capture_output=True)
    for words in commands(example.code):
        validate_command(words)


def commands(script: str) -> Iterator[list[str]]:
    """Every simple command of a script, as words, without leading VAR=value settings."""
    joined = re.sub(r"\\\n", " ", script)
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        command: list[str] = []
        for word in [*words, ";"]:
            if word in (";", "&&", "||", "|") or word.endswith(";"):
                if word.endswith(";") and word != ";":
                    command.append(word[:-1])
                while command and re.fullmatch(r"[A-Za-z_]\w*=.*", command[0]):
                    command.pop(0)
                if command:
                    yield command
                command = []
            else:
                command.append(word)


def validate_command(words: list[str]) -> None:
    program = Path(words[0]).name
    if program == "motoray":
        parse_motoray(words[1:])
    elif program == "make":
        targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.M))
        unknown = [w for w in words[1:] if "=" not in w and w not in targets]
        if unknown:
            raise ValueError(f"make has no target {unknown[0]!r}")
    for word in words[1:]:
        _check_path(word)


def _check_path(word: str) -> None:
    """A relative path to a file of the repository (with ::test for pytest) must exist."""
    path, _, test = word.partition("::")
    if not re.fullmatch(r"[\w./-]+\.(py|json|yaml|ipynb|md)", path) or path.startswith("/"):
        return
    if path.startswith(("outputs/", "data/")):  # made by the examples themselves
        return
    if not (REPO / path).is_file():
        raise FileNotFoundError(f"{path} is not in the repository")
    if test and not re.search(rf"^def {re.escape(test)}\(", (REPO / path).read_text(), re.M):
        raise ValueError(f"{path} has no test {test}")


def parse_motoray(args: list[str]) -> None:
    """Parse a `motoray` command line as the real command would, without running it."""
    group = code.cli()
    if not args or args[0].startswith("-"):
        group.make_context("motoray", list(args)).close()
        return
    command = group.get_command(click.Context(group), args[0])
    if command is None:
        raise ValueError(f"motoray has no command {args[0]!r}")
    with contextlib.suppress(click.exceptions.Exit):  # --help
        command.make_context(args[0], list(args[1:])).close()


CHECKS = {
    "request": _request,
    "config": _config,
    "response": _response,
    "json": lambda example, _: json.loads(example.code),
    "yaml": lambda example, _: yaml.safe_load(example.code),
    "run": _run,
    "run ray": _run,
    "plugin": _plugin,
    "validate": _validate,
}
