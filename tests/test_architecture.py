"""The package's shape: no import cycles (lazy imports included), nothing imports the CLI,
and the API replica does not load the pipeline's heavy modules."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import motoray

PACKAGE = Path(motoray.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """motoray module -> the motoray modules it imports, anywhere in the file (a function's
    import included: a cycle hidden behind one is still a cycle)."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                    base = f"{base}.{node.module}" if node.module else base
                # `from motoray.pipeline import worker` imports the submodule worker.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]  # fmt: skip
            else:
                continue
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for target in sorted(graph[node]):
            if found := visit(target, [*path, node]):
                return found
        done.add(node)
        return None

    return next((c for node in sorted(graph) if (c := visit(node, []))), None)


def test_the_graph_is_read_right():
    graph = _imports()
    assert (
        "motoray.pipeline.worker"
        in graph["motoray.pipeline.job"] | graph["motoray.pipeline.ray_data"]
    )
    assert "motoray.client" in graph["motoray.cli"]  # a function-level import counts


def test_no_import_cycle_among_motoray_modules():
    graph = _imports()
    # Each package's __init__ may gather its own modules; those edges are not cycles.
    for name in graph:
        graph[name] = {t for t in graph[name] if not name.startswith(f"{t}.")}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def test_nothing_imports_the_cli():
    importers = [name for name, targets in _imports().items() if "motoray.cli" in targets]
    assert importers == []


def test_the_api_replica_does_not_load_the_pipeline():
    """What `import motoray.api.app` costs a replica: no Ray Data, Arrow or JPEG codec."""
    code = (
        "import sys, json, motoray.api.app; "
        "print(json.dumps([m for m in ('ray.data', 'pyarrow', 'simplejpeg') if m in sys.modules]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_seed_request_is_kept_once_in_substance():
    """The package cannot read examples/ (it is not installed with it), so /docs and the
    bench hold the seed request as data: it must stay the example file's request."""
    from motoray.spec import SEED_REQUEST
    from tests.conftest import EXAMPLES

    assert json.loads((EXAMPLES / "seed_sample.json").read_text()) == [SEED_REQUEST]


MAX_MODULE_LINES = 500  # past that, a module does more than one thing: split it


def test_no_module_is_over_500_lines():
    repository = PACKAGE.parent
    folders = [PACKAGE, repository / "benchmarks", repository / "docgen"]
    long = {
        str(path.relative_to(repository)): lines
        for folder in folders
        for path in folder.rglob("*.py")
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long
