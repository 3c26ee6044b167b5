"""Edits a contaminating copy of a benchmark function may carry, for the decontamination quality test.

Each edit works on the syntax tree of a benchmark item's code (prompt + solution, docstrings gone) and
returns the edited source, or None where it does not apply (no loop to rewrite, no two statements
that can swap). Every edited copy is also renamed (``rename``): renaming alone leaves the normalised
stream as it was, so what a test measures on an edit is what the edit changes.
Deterministic: every choice comes from the ``random.Random`` passed in.
"""
from __future__ import annotations

import ast
import builtins
import copy
import io
import keyword
import random
import re
import tokenize

_KEEP = set(dir(builtins)) | set(keyword.kwlist) | {"self"}


def strip_docstrings(code: str) -> ast.Module:
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)) and node.body:
            b = node.body[0]
            if isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant) and isinstance(b.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def reformat(code: str) -> str:
    """``ast.unparse``: canonical spacing, quotes and parentheses, no docstrings or comments, 2-space indent."""
    text = ast.unparse(strip_docstrings(code))
    return re.sub(r"(?m)^((?:    )+)", lambda m: "  " * (len(m.group(1)) // 4), text) + "\n"


def rename(code: str, rng: random.Random) -> str:
    """Alpha-rename every name the code defines, keeping its layout (docstrings dropped first)."""
    code = ast.unparse(strip_docstrings(code)) + "\n"
    names = set()
    for n in ast.walk(ast.parse(code)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, ast.arg):
            names.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
    new = {n: f"{rng.choice(['val', 'tmp', 'item', 'acc', 'data'])}_{i}" for i, n in enumerate(sorted(names - _KEEP))}
    out, prev = [], None
    for t in tokenize.generate_tokens(io.StringIO(code).readline):
        s = new.get(t.string, t.string) if t.type == tokenize.NAME and prev != "." else t.string
        out.append((t.type, s, t.start, t.end, t.line))
        if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            prev = t.string
    return tokenize.untokenize(out)


def _main_function(tree: ast.Module) -> ast.FunctionDef | None:
    funcs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    return funcs[-1] if funcs else None


def _names(node: ast.AST, ctx) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ctx)}


def _bodies(fn: ast.FunctionDef) -> list[list[ast.stmt]]:
    """Every statement list inside the function (its body, loop and branch bodies)."""
    out = []
    for n in ast.walk(fn):
        for attr in ("body", "orelse", "finalbody"):
            b = getattr(n, attr, None)
            if isinstance(b, list) and b and isinstance(b[0], ast.stmt):
                out.append(b)
    return out


def _independent(a: ast.stmt, b: ast.stmt) -> bool:
    simple = (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Import, ast.ImportFrom, ast.Expr)
    if not isinstance(a, simple) or not isinstance(b, simple) or isinstance(a, ast.Expr) and isinstance(b, ast.Expr):
        return False
    wa, wb = _names(a, ast.Store), _names(b, ast.Store)
    ra, rb = _names(a, ast.Load), _names(b, ast.Load)
    if isinstance(a, (ast.Import, ast.ImportFrom)) or isinstance(b, (ast.Import, ast.ImportFrom)):
        return isinstance(a, (ast.Import, ast.ImportFrom)) and isinstance(b, (ast.Import, ast.ImportFrom))
    return not (wa & (rb | wb) or wb & ra) and not any(isinstance(n, ast.Call) for n in ast.walk(a))


def reorder(tree: ast.Module, rng: random.Random) -> bool:
    """Swap two adjacent statements that do not depend on each other (assignments, imports)."""
    fn = _main_function(tree)
    spots = [(body, i) for body in ([tree.body] + (_bodies(fn) if fn else [])) for i in range(len(body) - 1)
             if _independent(body[i], body[i + 1]) and ast.dump(body[i]) != ast.dump(body[i + 1])]
    if not spots:
        return False
    body, i = rng.choice(spots)
    body[i], body[i + 1] = body[i + 1], body[i]
    return True


def insert_lines(tree: ast.Module, rng: random.Random) -> bool:
    """A debug print and a sanity check inserted into the function body (comments are added as text)."""
    fn = _main_function(tree)
    if fn is None:
        return False
    arg = fn.args.args[0].arg if fn.args.args else None
    lines = [ast.parse("print('checking input')").body[0]]
    if arg:
        lines.append(ast.parse(f"assert {arg} is not None, 'missing input'").body[0])
    for stmt in lines:
        body = rng.choice(_bodies(fn))
        body.insert(rng.randrange(len(body)), stmt)
    return True


def toggle_type_hints(tree: ast.Module, rng: random.Random) -> bool:
    """Remove every annotation the function has; add ones where it has none."""
    fn = _main_function(tree)
    if fn is None:
        return False
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    if fn.returns is not None or any(a.annotation is not None for a in args):
        fn.returns = None
        for a in args:
            a.annotation = None
        return True
    if not args:
        return False
    for a in args:
        a.annotation = ast.Name(rng.choice(["int", "list", "str", "float"]), ast.Load())
    fn.returns = ast.Name(rng.choice(["int", "list", "bool"]), ast.Load())
    return True


def _has(node: ast.AST, kinds) -> bool:
    return any(isinstance(n, kinds) for n in ast.walk(node))


def for_to_while(tree: ast.Module, rng: random.Random) -> bool:
    """``for x in range(a, b)`` / ``for x in xs`` become index-driven ``while`` loops (loops with ``continue``
    or ``else`` left alone)."""
    fn = _main_function(tree)
    if fn is None:
        return False
    spots = [(body, i) for body in _bodies(fn) for i, s in enumerate(body)
             if isinstance(s, ast.For) and isinstance(s.target, ast.Name) and not s.orelse
             and not _has(s, ast.Continue)]
    if not spots:
        return False
    body, i = rng.choice(spots)
    loop = body[i]
    x, it = loop.target.id, loop.iter
    if isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range" and len(it.args) <= 2 \
            and not it.keywords:
        lo, hi = (ast.Constant(0), it.args[0]) if len(it.args) == 1 else (it.args[0], it.args[1])
        new = [ast.Assign([ast.Name(x, ast.Store())], lo, lineno=0),
               ast.While(ast.Compare(ast.Name(x, ast.Load()), [ast.Lt()], [hi]),
                         loop.body + [ast.AugAssign(ast.Name(x, ast.Store()), ast.Add(), ast.Constant(1))], [])]
    else:
        k, seq = f"{x}_index", f"{x}_items"
        new = [ast.Assign([ast.Name(seq, ast.Store())], ast.Call(ast.Name("list", ast.Load()), [it], []), lineno=0),
               ast.Assign([ast.Name(k, ast.Store())], ast.Constant(0), lineno=0),
               ast.While(ast.Compare(ast.Name(k, ast.Load()), [ast.Lt()],
                                     [ast.Call(ast.Name("len", ast.Load()), [ast.Name(seq, ast.Load())], [])]),
                         [ast.Assign([ast.Name(x, ast.Store())],
                                     ast.Subscript(ast.Name(seq, ast.Load()), ast.Name(k, ast.Load()), ast.Load()),
                                     lineno=0)]
                         + loop.body + [ast.AugAssign(ast.Name(k, ast.Store()), ast.Add(), ast.Constant(1))], [])]
    body[i:i + 1] = new
    return True


class _CompToLoop(ast.NodeTransformer):
    """``NAME = [e for x in xs if c]`` / ``return [...]`` become an explicit loop that appends."""

    def __init__(self):
        self.done = False

    def _loop(self, target: str, comp: ast.ListComp) -> list[ast.stmt]:
        inner: ast.stmt = ast.Expr(ast.Call(ast.Attribute(ast.Name(target, ast.Load()), "append", ast.Load()),
                                            [comp.elt], []))
        for gen in reversed(comp.generators):
            for cond in reversed(gen.ifs):
                inner = ast.If(cond, [inner], [])
            inner = ast.For(gen.target, gen.iter, [inner], [], lineno=0)
        return [ast.Assign([ast.Name(target, ast.Store())], ast.List([], ast.Load()), lineno=0), inner]

    def generic_visit(self, node):
        super().generic_visit(node)
        for attr in ("body", "orelse"):
            body = getattr(node, attr, None)
            if not isinstance(body, list) or self.done:
                continue
            for i, s in enumerate(body):
                if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name) \
                        and isinstance(s.value, ast.ListComp):
                    body[i:i + 1] = self._loop(s.targets[0].id, s.value)
                    self.done = True
                    break
                if isinstance(s, ast.Return) and isinstance(s.value, ast.ListComp):
                    body[i:i + 1] = self._loop("result", s.value) + [ast.Return(ast.Name("result", ast.Load()))]
                    self.done = True
                    break
        return node


def comprehension_loop(tree: ast.Module, rng: random.Random) -> bool:
    """A list comprehension becomes a loop; failing that, an appending loop becomes a comprehension."""
    fn = _main_function(tree)
    if fn is None:
        return False
    t = _CompToLoop()
    t.visit(fn)
    if t.done:
        return True
    for body in _bodies(fn):
        for i in range(len(body) - 1):
            a, b = body[i], body[i + 1]
            if (isinstance(a, ast.Assign) and len(a.targets) == 1 and isinstance(a.targets[0], ast.Name)
                    and isinstance(a.value, ast.List) and not a.value.elts and isinstance(b, ast.For)
                    and not b.orelse and len(b.body) == 1):
                s, ifs = b.body[0], []
                if isinstance(s, ast.If) and not s.orelse and len(s.body) == 1:
                    ifs, s = [s.test], s.body[0]
                call = s.value if isinstance(s, ast.Expr) else None
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "append"
                        and isinstance(call.func.value, ast.Name) and call.func.value.id == a.targets[0].id
                        and len(call.args) == 1):
                    comp = ast.ListComp(call.args[0], [ast.comprehension(b.target, b.iter, ifs, 0)])
                    body[i:i + 2] = [ast.Assign([a.targets[0]], comp, lineno=0)]
                    return True
    return False


def _helper_spot(fn: ast.FunctionDef) -> tuple[ast.AST, str, ast.expr] | None:
    """An expression worth a helper: the value of the last ``return``, else an ``if``'s test, else an
    assignment's value (with 5+ nodes). Returns (parent node, field name, expression)."""
    cands = []
    for n in ast.walk(fn):
        if isinstance(n, ast.Return) and n.value is not None:
            cands.append((0, n, "value", n.value))
        elif isinstance(n, (ast.If, ast.While)):
            cands.append((1, n, "test", n.test))
        elif isinstance(n, ast.Assign):
            cands.append((2, n, "value", n.value))
    cands = [c for c in cands if sum(1 for _ in ast.walk(c[3])) >= 5
             and not _has(c[3], (ast.Lambda, ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp, ast.Yield,
                                 ast.Await, ast.NamedExpr))]
    if not cands:
        return None
    _, parent, attr, expr = min(cands, key=lambda c: c[0])
    return parent, attr, expr


def extract_helper(tree: ast.Module, rng: random.Random) -> ast.FunctionDef | None:
    """Move an expression of the function into a new helper ``def`` placed before it; returns the helper."""
    fn = _main_function(tree)
    if fn is None:
        return None
    spot = _helper_spot(fn)
    if spot is None:
        return None
    parent, attr, expr = spot
    local = {a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs}
    local |= {a.arg for a in (fn.args.vararg, fn.args.kwarg) if a} | _names(fn, ast.Store)
    params = sorted(_names(expr, ast.Load) & local)
    name = f"{fn.name}_part"
    helper = ast.FunctionDef(name, ast.arguments([], [ast.arg(p) for p in params], None, [], [], None, []),
                             [ast.Return(copy.deepcopy(expr))], [], None, lineno=0)
    setattr(parent, attr, ast.Call(ast.Name(name, ast.Load()), [ast.Name(p, ast.Load()) for p in params], []))
    tree.body.insert(tree.body.index(fn), helper)
    return helper


EDITS = {"reordered": reorder, "inserted": insert_lines, "type_hints": toggle_type_hints, "for_while": for_to_while,
         "comprehension": comprehension_loop, "helper": lambda t, rng: extract_helper(t, rng) is not None}


def edited(code: str, kind: str, rng: random.Random) -> str | None:
    """``code`` with one edit of ``kind`` applied, renamed, with a comment added; None: not applicable."""
    tree = strip_docstrings(code)
    if not EDITS[kind](tree, rng):
        return None
    out = rename(ast.unparse(ast.fix_missing_locations(tree)), rng)
    if kind == "inserted":  # and a comment line, which the normaliser drops (the statements it keeps)
        lines = out.split("\n")
        i = next((j + 1 for j, ln in enumerate(lines) if ln.startswith("def ")), 0)
        lines.insert(i, "    # validate arguments before use")
        out = "\n".join(lines)
    return out


def split_in_host(code: str, host: str, rng: random.Random) -> str | None:
    """The solution in two places of a real module: its imports and an extracted helper at the top, the
    function at the bottom, the module in between; renamed. None when no helper can be extracted."""
    tree = strip_docstrings(code)
    if extract_helper(tree, rng) is None:
        return None
    fn = _main_function(tree)
    head = [n for n in tree.body if n is not fn]
    first = rename(ast.unparse(ast.fix_missing_locations(ast.Module(head + [fn], []))), rng)
    cut = [m.start() for m in re.finditer(r"(?m)^def ", first)][-1]  # the main function: the last top-level def
    return first[:cut] + "\n" + host + "\n\n" + first[cut:]


def reference_stream(code: str) -> list[str]:
    """The test's own fixed normal form, independent of the normaliser under test: ``tokenize`` tokens of
    the code (docstrings and comments gone, layout canonical), names not builtins, keywords or attributes
    as ``I``, strings ``S``, numbers ``N``. An edit counts when it changes this; a function's size is its
    length."""
    text = ast.unparse(strip_docstrings(code))
    out, prev = [], None
    for t in tokenize.generate_tokens(io.StringIO(text).readline):
        if t.type == tokenize.NAME:
            out.append(t.string if t.string in _KEEP or prev == "." else "I")
        elif t.type == tokenize.STRING:
            out.append("S")
        elif t.type == tokenize.NUMBER:
            out.append("N")
        elif t.type == tokenize.OP and t.string not in "()":
            out.append(t.string)
        if t.type not in (tokenize.NL, tokenize.COMMENT, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            prev = t.string
    return out
