"""The package's layout: layers that import only the layers below them, and
no import loops, counting the imports inside functions too."""

import ast
import glob
import os.path as osp
import re

from conftest import REPO

PACKAGE = osp.join(REPO, "pyg_schnet")
#: Each folder or ground module and its layer: a module may import its own
#: layer (without a loop) and the layers below.
LAYERS = {
    "errors": 0,
    "resources": 0,
    "io": 0,
    "registry": 0,
    "metrics": 0,
    "plots": 0,
    "version": 0,
    "nn": 1,
    "data": 2,
    "run": 3,
    "hub": 4,
    "analysis": 5,
    "study": 6,
    "calculators": 6,
    "cli": 7,
    "__init__": 8,
}


def _modules():
    out = {}
    for path in glob.glob(osp.join(PACKAGE, "**", "*.py"), recursive=True):
        rel = osp.relpath(path, REPO)[:-3].replace(osp.sep, ".")
        out[rel.removesuffix(".__init__")] = path
    return out


def _imports(name, path, modules):
    """The package's modules that ``name`` imports, anywhere in the file."""
    pkg = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module):
    parts = module.split(".")
    return LAYERS["__init__"] if len(parts) == 1 else LAYERS[parts[1]]


def test_every_module_has_a_layer():
    for module in _graph():
        assert len(module.split(".")) == 1 or module.split(".")[1] in LAYERS, module


def test_no_import_loops():
    graph = _graph()
    index, low, stack, on, loops = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                loops.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not loops, f"import loops: {loops}"


def test_layers_import_only_their_own_and_lower_layers():
    upward = [(m, d) for m, deps in _graph().items() for d in deps if _layer(d) > _layer(m)]
    assert not upward, f"imports of a higher layer: {upward}"


def test_the_loop_check_can_fail(tmp_path):
    """The checks above see a loop hidden inside a function."""
    modules = {"pyg_schnet.nn.a": str(tmp_path / "a.py"), "pyg_schnet.nn.b": str(tmp_path / "b.py")}
    (tmp_path / "a.py").write_text("from pyg_schnet.nn.b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from pyg_schnet.nn.a import y\n")
    assert _imports("pyg_schnet.nn.a", modules["pyg_schnet.nn.a"], modules) == {"pyg_schnet.nn.b"}
    assert _imports("pyg_schnet.nn.b", modules["pyg_schnet.nn.b"], modules) == {"pyg_schnet.nn.a"}


def test_no_model_or_filter_name_is_compared_outside_the_registries():
    """A new model or filter needs no edit outside its class and registry entry."""
    names = [
        "schnet",
        "pyg_schnet_ref",
        "visnet",
        "dimenet\\+\\+",
        "painn",
        "gaussian",
        "distance",
        "coords",
        "conv1d",
    ]
    compare = re.compile(
        r"(==|!=|\bin)\s*\(?\s*[\"'](" + "|".join(names) + r")[\"']"
        r"|[\"'](" + "|".join(names) + r")[\"']\s*(==|!=)"
    )
    hits = []
    for path in glob.glob(osp.join(PACKAGE, "**", "*.py"), recursive=True):
        for no, line in enumerate(open(path), 1):
            if compare.search(line):
                hits.append(f"{osp.relpath(path, REPO)}:{no}: {line.strip()}")
    assert not hits, "\n".join(hits)


#: A markdown link's target: ``[text](target)``.
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _broken_links(path):
    """The relative link targets of markdown file ``path`` that name no file or
    folder (anchors after ``#`` ignored; web and mail addresses not checked)."""
    out = []
    for target in _LINK.findall(open(path, encoding="utf-8").read()):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        if not osp.exists(osp.join(osp.dirname(path), target.split("#")[0])):
            out.append(target)
    return out


def test_every_relative_link_of_the_docs_resolves():
    """README, CHANGELOG, docs/ and every markdown file under experiments/ (the
    study reports and measurement records; run folders hold none)."""
    files = [osp.join(REPO, "README.md"), osp.join(REPO, "CHANGELOG.md")]
    files += glob.glob(osp.join(REPO, "docs", "*.md"))
    files += glob.glob(osp.join(REPO, "experiments", "**", "*.md"), recursive=True)
    assert len(files) > 10
    broken = {osp.relpath(f, REPO): b for f in files if (b := _broken_links(f))}
    assert not broken, f"links to nothing: {broken}"


def test_the_link_check_can_fail(tmp_path):
    (tmp_path / "there.md").write_text("x")
    page = tmp_path / "page.md"
    page.write_text("[a](there.md) [b](there.md#part) [c](gone.md) [d](https://x.org) [e](#top)")
    assert _broken_links(str(page)) == ["gone.md"]
