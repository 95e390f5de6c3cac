"""The code's shape, checked: support/ is a lower layer, no project module is imported inside a
function, and one traced training step runs exactly the functions README's "Follow one step"
names, with the counts it states."""
import ast
import glob
import os
import re
import sys

import torch

import train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONCEPT = {os.path.basename(f)[:-3] for f in glob.glob(os.path.join(ROOT, "*.py"))}
SOURCES = sorted(glob.glob(os.path.join(ROOT, "*.py")) + glob.glob(os.path.join(ROOT, "support", "*.py"))
                 + glob.glob(os.path.join(ROOT, "experiments", "*.py")))


def imports(tree):
    """(node, module name) of every import in `tree`."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            yield from ((n, a.name) for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0:
            yield n, n.module


def project_module(name):
    top = name.split(".")[0]
    return top in CONCEPT or top in ("support", "experiments")


def test_support_imports_no_concept_file():
    for path in glob.glob(os.path.join(ROOT, "support", "*.py")):
        tree = ast.parse(open(path).read())
        bad = [(n.lineno, m) for n, m in imports(tree) if m.split(".")[0] in CONCEPT | {"experiments"}]
        assert not bad, f"{os.path.relpath(path, ROOT)} imports a file above it: {bad}"


def test_no_project_module_imported_inside_a_function():
    found = []
    for path in SOURCES:
        tree = ast.parse(open(path).read())
        for fn in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            found += [f"{os.path.relpath(path, ROOT)}:{n.lineno} {m} in {fn.name}()"
                      for n, m in imports(fn) if project_module(m)]
    assert not found, found


# ---------------------------------------------------------------------------------------------
# One training step, traced
# ---------------------------------------------------------------------------------------------
# README's step: --dataset ucf101 --backbone tsm, i.e. DA-TSM-R50 with MGDA and --mgda-normalize
# loss+; here a narrow R50 on random 32x32 uint8 clips (pixels, as the loader gives them), one
# process, float32, one micro-batch, a step that writes no log line.
FLAGS = ["--backbone", "tsm", "--depth", "50", "--small", "--joint", "mgda", "--segments", "2", "--frames", "4",
         "--crop-size", "32", "--batch-size", "2", "--out", "unused"]


def module_of(path):
    rel = os.path.relpath(path, ROOT) if os.path.isabs(path) else ".."
    return None if rel.startswith("..") or rel.startswith("tests") else rel[:-3].replace(os.sep, ".")


def trace_one_step():
    """{(module, qualname): lines} of the project functions one train_step runs; a function's
    lines are its whole definition, docstring included."""
    args = train.resolve_defaults(train.build_parser().parse_args(["--dataset", "ucf101"] + FLAGS), 1, "none")
    torch.manual_seed(0)
    model = train.build_model(args, num_classes=5)
    run = train.make_run(args, model, 10, torch.device("cpu"), 0, 1, lambda *a: None)
    clip = torch.randint(0, 256, (2, args.segments * args.frames, 3, 32, 32), dtype=torch.uint8)
    labels = torch.tensor([0, 3])
    train.train_step(run, clip, labels, 0)                       # the first step builds lazily: untraced
    ran = set()

    def profile(frame, event, arg):
        module = module_of(frame.f_code.co_filename) if event == "call" else None
        if module and "<" not in frame.f_code.co_qualname:
            ran.add((module, frame.f_code.co_qualname, frame.f_code.co_firstlineno))
    sys.setprofile(profile)
    try:
        train.train_step(run, clip, labels, 1)
    finally:
        sys.setprofile(None)
    sizes = {}
    for module, name, line in ran:
        tree = ast.parse(open(os.path.join(ROOT, module.replace(".", os.sep) + ".py")).read())
        node = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and (n.decorator_list[0].lineno if n.decorator_list else n.lineno) == line)
        sizes[(module, name)] = node.end_lineno - line + 1
    return sizes


def readme_step_section():
    text = open(os.path.join(ROOT, "README.md")).read()
    return text.split("## Follow one step", 1)[1].split("\n## ", 1)[0]


def named_functions(section):
    """The project functions the section's numbered list names in backticks, as (module, qualname)."""
    steps = section[section.index("\n1. "):].split("\n\n")[0]
    names = set()
    for token in re.findall(r"`([A-Za-z_][\w.]*\.[A-Za-z_]\w*)`", steps):
        parts = token.split(".")
        for i in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:i])
            if os.path.isfile(os.path.join(ROOT, module.replace(".", os.sep) + ".py")):
                names.add((module, ".".join(parts[i:])))
                break
    return names


def test_one_step_runs_what_the_readme_names():
    sizes = trace_one_step()
    section = readme_step_section()
    named = named_functions(section)
    assert not set(sizes) - named, f"run but not named in README's Follow one step: {sorted(set(sizes) - named)}"
    assert not named - set(sizes), f"named in README's Follow one step but not run: {sorted(named - set(sizes))}"
    functions, lines = len(sizes), sum(sizes.values())
    files = {m for m, _ in sizes}
    concept = sum(n for (m, _), n in sizes.items() if not m.startswith("support."))
    share = round(100 * concept / lines)
    stated = re.search(r"(\d+)\s+functions\s+in\s+(\d+)\s+files\s+\((\d+)\s+of\s+them\s+concept\s+files\),"
                       r"\s+(\d+)\s+lines,\s+(\d+)\s+%", section)
    assert stated, "README's Follow one step states no count"
    measured = (functions, len(files), len({m for m in files if "." not in m}), lines, share)
    assert tuple(map(int, stated.groups())) == measured, f"README states {stated.group(0)!r}, measured {measured}"
    # The aim: a step a student can read in one sitting, mostly the paper.
    assert functions <= 30 and lines <= 350 and share >= 75 and measured[2] <= 4, measured


if __name__ == "__main__":                  # print the step's map: python tests/test_structure.py
    for (module, name), n in sorted(trace_one_step().items()):
        print(f"{n:4d}  {module}.{name}")
