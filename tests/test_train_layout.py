"""The layout's promises, read from the source with ast: the top-level modules and support/ import
each other without a circle (imports inside functions count too), support/system.py imports no
project module, and the concept files that train.py builds on never import it back."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def project_modules():
    """{module name: path} of the top-level .py files and support/*.py."""
    mods = {n[:-3]: os.path.join(ROOT, n) for n in os.listdir(ROOT) if n.endswith(".py")}
    support = os.path.join(ROOT, "support")
    mods.update({f"support.{n[:-3]}": os.path.join(support, n) for n in os.listdir(support)
                 if n.endswith(".py") and n != "__init__.py"})
    return mods


def imports_of(path, known):
    """The project modules `path` imports anywhere in the file (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph():
    mods = project_modules()
    return {m: imports_of(p, mods) for m, p in mods.items()}


def find_cycle(graph):
    """One import circle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert {"train", "evaluate", "visualize", "support.system", "support.runs", "support.checkpoints"} <= set(graph)
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_import_directions():
    graph = import_graph()
    assert graph["support.system"] == set()                      # depends on torch only
    for m in ("evaluate", "visualize", "data", "backbones", "mgda", "pwtp"):
        assert "train" not in graph[m], m
    assert "evaluate" not in graph["visualize"]                  # its helpers live in support/
