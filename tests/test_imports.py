"""Issue 29: no import circle between the classifier trainers (evaluate/, the judge,
pseudo-labeling and their shared pieces in classify/), checked two ways: the import
graph read from the source (module-level and function-level imports alike), and each
module imported alone in a fresh interpreter."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TRAINERS = ("genaug.evaluate", "genaug.judge", "genaug.pseudo", "genaug.classify")


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """genaug module -> the genaug modules it imports anywhere in its file."""
    modules = {_module(p): p for p in (ROOT / "genaug").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            for t in targets:
                while t and t not in modules:  # "genaug.judge.predict" -> "genaug.judge"
                    t = t.rpartition(".")[0]
                if t and t != name:
                    deps.add(t)
        graph[name] = deps
    return graph


def cycles_through(graph: dict[str, set[str]], keep) -> list[list[str]]:
    """Simple cycles among the modules ``keep`` accepts (depth-first from each)."""
    sub = {m: {d for d in deps if keep(d)} for m, deps in graph.items() if keep(m)}
    found = []

    def walk(start, node, path):
        for nxt in sub.get(node, ()):
            if nxt == start:
                found.append(path + [start])
            elif nxt not in path and nxt > start:
                walk(start, nxt, path + [nxt])

    for m in sorted(sub):
        walk(m, m, [m])
    return found


def test_no_import_circle_among_the_classifier_trainers():
    graph = import_graph()
    assert "genaug.classify.views" in graph and "genaug.pseudo" in graph
    circles = cycles_through(graph, lambda m: m.startswith(TRAINERS))
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


def test_the_cycle_finder_finds_a_planted_circle():
    graph = {"genaug.judge": {"genaug.pseudo"}, "genaug.pseudo": {"genaug.classify.trainer"},
             "genaug.classify.trainer": {"genaug.judge"}, "genaug.io": set()}
    assert cycles_through(graph, lambda m: m.startswith(TRAINERS)) == [
        ["genaug.classify.trainer", "genaug.judge", "genaug.pseudo", "genaug.classify.trainer"]]


@pytest.mark.parametrize("module", ["genaug.pseudo", "genaug.judge", "genaug.classify.trainer", "genaug.classify.streams",
                                    "genaug.evaluate.data", "genaug.evaluate.learner", "genaug.evaluate.run"])
def test_each_trainer_module_imports_alone(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_one_classifier_trainer_steps_an_optimiser():
    """STYLE 9: the judge, its self-training, the FixMatch learner and every evaluation row
    train through genaug.classify.trainer; no other classifier module builds an optimiser
    or runs a backward pass of its own."""
    others = [ROOT / "genaug" / "judge.py", ROOT / "genaug" / "pseudo.py", ROOT / "genaug" / "quality.py",
              *sorted((ROOT / "genaug" / "evaluate").glob("*.py")), *sorted((ROOT / "genaug" / "classify").glob("*.py"))]
    own_loops = [p.relative_to(ROOT).as_posix() for p in others if p.name != "trainer.py"
                 and any(s in p.read_text() for s in ("create_optimizer", "torch.optim.", ".backward("))]
    assert (ROOT / "genaug" / "classify" / "trainer.py").read_text().count("create_optimizer_v2(") == 1
    assert not own_loops, f"classifier training outside genaug/classify/trainer.py: {own_loops}"
