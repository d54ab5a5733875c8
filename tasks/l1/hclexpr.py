"""HCL expressions as python-hcl2 hands them over, parsed once and evaluated per template.

python-hcl2 gives every expression back as text: `var.x` and `"${var.x}"` both become `${var.x}`,
`file("a")` becomes `${file("a")}`, a heredoc stays `<<EOT ... EOT`. `compile_template` turns such a
string into a small tree of JSON lists (cached with the parsed file, so a warm run never parses an
expression again); `Evaluator.value` evaluates a tree against one template's variables, locals,
`path.root`/`path.cwd` and a set of pure functions, recording every file `file`, `templatefile`
and `fileset` read. What cannot be known here (`vault()`, a variable without a value, a function
Packer evaluates only at build time) evaluates to an `Unknown` carrying the reason, never to a
guess.

`parse_literals` reads a variable-definitions file (`*.auto.pkrvars.hcl`: `name = literal` lines)
without python-hcl2, so those files, which may hold secrets, never need the parse cache.

Trees (all JSON lists, the first item says what it is):
    ["L", value]                      a literal number, string, bool or null
    ["T", [part, ...]]                a string template; a part is literal text or a tree
    ["V", root, [step, ...]]          var.x, local.y[0], path.root; a step is ["a", name] or ["i", tree]
    ["G", tree, [step, ...]]          a traversal of another expression: jsondecode(...).iso
    ["C", name, [tree, ...], spread]  a function call
    ["A", [tree, ...]]                a tuple; ["O", [[key, value], ...]] an object
    ["B", op, left, right], ["U", op, operand], ["Q", cond, yes, no]
    ["F", is_object, key_var, value_var, collection, key, value, cond, group]   a for expression
    ["X", reason]                     something this evaluator does not evaluate (a splat, %{...})
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from collections.abc import Callable
from typing import Any

# ---------------------------------------------------------------------------------------- values


class Unknown:
    """A value that cannot be known before Packer runs; `reason` says why, for the operator."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unknown({self.reason!r})"


class Content:
    """A known value that is file content, not a path (templatefile's result): never an input."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"Content({self.what!r})"


class HclSyntaxError(ValueError):
    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.offset = offset


# ---------------------------------------------------------------------------------------- lexer

_TOKEN_PATTERN = r"""
    (?P<ws>[ \t\r]+|\\\n)
  | (?P<nl>\n)
  | (?P<comment>\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<heredoc><<-?[A-Za-z_][A-Za-z0-9_]*[ \t]*\n)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_\-]*)
  | (?P<op>\.\.\.|=>|==|!=|<=|>=|&&|\|\||\[\*\]|\.\*|[-+*/%<>!?:=.,()\[\]{}])
  | (?P<quote>")
    """
_COMPILED: list[re.Pattern[str]] = []


def _token_re() -> re.Pattern[str]:
    """The token pattern, compiled on first use (a warm `l1.list` never lexes anything)."""
    if not _COMPILED:
        _COMPILED.append(re.compile(_TOKEN_PATTERN, re.VERBOSE | re.DOTALL))
    return _COMPILED[0]


class _Lexer:
    """Tokens of one expression text; strings become template trees as they are met.

    A token is (kind, value, offset, newline_before): newlines are never tokens, but where they
    separate items (object members, the lines of a var file) the parser reads the flag.
    """

    def __init__(self, text: str, pos: int = 0) -> None:
        self.text = text
        self.pos = pos
        self.peeked: tuple[str, Any, int, bool] | None = None

    def peek(self) -> tuple[str, Any, int, bool]:
        if self.peeked is None:
            self.peeked = self._next()
        return self.peeked

    def take(self) -> tuple[str, Any, int, bool]:
        token = self.peek()
        self.peeked = None
        return token

    def expect(self, value: str) -> None:
        kind, got, at, _ = self.take()
        if got != value or kind not in ("op", "ident"):
            raise HclSyntaxError(f"expected {value!r}, found {got!r}", at)

    def _next(self) -> tuple[str, Any, int, bool]:
        text = self.text
        newline = False
        while True:
            if self.pos >= len(text):
                return ("end", None, self.pos, True)
            match = _token_re().match(text, self.pos)
            if match is None:
                raise HclSyntaxError(f"unexpected character {text[self.pos]!r}", self.pos)
            kind = match.lastgroup or ""
            start = self.pos
            self.pos = match.end()
            if kind == "ws":
                continue
            if kind in ("nl", "comment"):
                newline = (
                    newline
                    or kind == "nl"
                    or "\n" in match.group()
                    or match.group()[0] in "#/"
                    and not match.group().startswith("/*")
                )
                continue
            if kind == "num":
                raw = match.group()
                number = float(raw) if any(c in raw for c in ".eE") else int(raw)
                return ("lit", number, start, newline)
            if kind == "quote":
                parts, self.pos = _template_parts(text, self.pos, quoted=True)
                return ("lit", _template_tree(parts), start, newline)
            if kind == "heredoc":
                tree, self.pos = _heredoc(text, start)
                return ("lit", tree, start, newline)
            return (kind, match.group(), start, newline)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _template_parts(text: str, pos: int, *, quoted: bool) -> tuple[list[Any], int]:
    """Literal text and interpolations from `pos` to the closing quote (or the end of `text`)."""
    parts: list[Any] = []
    buf: list[str] = []
    n = len(text)
    while pos < n:
        ch = text[pos]
        if quoted and ch == '"':
            pos += 1
            break
        if quoted and ch == "\\" and pos + 1 < n:
            nxt = text[pos + 1]
            if nxt == "u" and pos + 6 <= n:
                buf.append(chr(int(text[pos + 2 : pos + 6], 16)))
                pos += 6
                continue
            buf.append(_ESCAPES.get(nxt, nxt))
            pos += 2
            continue
        if ch in "$%" and text.startswith("{", pos + 1):
            if ch == "%":
                raise_or = _skip_directive(text, pos)
                if buf:
                    parts.append("".join(buf))
                    buf = []
                parts.append(["X", "a %{...} template directive"])
                pos = raise_or
                continue
            if buf:
                parts.append("".join(buf))
                buf = []
            lexer = _Lexer(text, pos + 2)
            tree = _Parser(lexer).expression()
            kind, value, at, _ = lexer.take()
            if value != "}":
                raise HclSyntaxError(
                    f"expected '}}' to close an interpolation, found {value!r}", at
                )
            parts.append(tree)
            pos = lexer.pos
            continue
        if ch in "$%" and text.startswith(ch + "{", pos + 1):
            buf.append(ch + "{")  # $${ and %%{ are a literal ${ and %{
            pos += 3
            continue
        buf.append(ch)
        pos += 1
    else:
        if quoted:
            raise HclSyntaxError("unterminated string", pos)
    if buf:
        parts.append("".join(buf))
    return parts, pos


def _skip_directive(text: str, pos: int) -> int:
    end = text.find("}", pos)
    return len(text) if end < 0 else end + 1


def _template_tree(parts: list[Any]) -> Any:
    if not parts:
        return ["L", ""]
    if len(parts) == 1 and isinstance(parts[0], str):
        return ["L", parts[0]]
    if len(parts) == 1:
        return parts[0]  # "${expr}" is the expression itself (its type kept)
    return ["T", parts]


def _heredoc(text: str, start: int) -> tuple[Any, int]:
    header = re.match(r"<<(-?)([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n", text[start:])
    assert header is not None
    strip, marker = header.group(1) == "-", header.group(2)
    body_start = start + header.end()
    end = re.compile(r"^[ \t]*" + re.escape(marker) + r"[ \t]*$", re.MULTILINE)
    found = end.search(text, body_start)
    if found is None:
        raise HclSyntaxError(f"heredoc <<{marker} is never closed", start)
    body = text[body_start : found.start()]
    if strip:
        lines = body.split("\n")
        indents = [len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()]
        cut = min(indents) if indents else 0
        body = "\n".join(ln[cut:] for ln in lines)
    parts, _ = _template_parts(body, 0, quoted=False)
    return _template_tree(parts), found.end()


# ---------------------------------------------------------------------------------------- parser

_BINARY = [("||",), ("&&",), ("==", "!="), ("<", ">", "<=", ">="), ("+", "-"), ("*", "/", "%")]
_KEYWORDS = {"true": True, "false": False, "null": None}


class _Parser:
    def __init__(self, lexer: _Lexer) -> None:
        self.lx = lexer

    def _is(self, value: str) -> bool:
        kind, got, _, _ = self.lx.peek()
        return kind == "op" and got == value

    def expression(self) -> Any:
        cond = self._binary(0)
        if self._is("?"):
            self.lx.take()
            yes = self.expression()
            self.lx.expect(":")
            no = self.expression()
            return ["Q", cond, yes, no]
        return cond

    def _binary(self, level: int) -> Any:
        if level == len(_BINARY):
            return self._unary()
        left = self._binary(level + 1)
        while True:
            kind, value, _, _ = self.lx.peek()
            if kind != "op" or value not in _BINARY[level]:
                return left
            self.lx.take()
            left = ["B", value, left, self._binary(level + 1)]

    def _unary(self) -> Any:
        kind, value, _, _ = self.lx.peek()
        if kind == "op" and value in ("!", "-"):
            self.lx.take()
            return ["U", value, self._unary()]
        return self._postfix(self._primary())

    def _postfix(self, tree: Any) -> Any:
        steps: list[Any] = []
        while True:
            kind, value, at, _ = self.lx.peek()
            if kind == "op" and value == ".":
                self.lx.take()
                kind, name, at, _ = self.lx.take()
                if kind == "ident":
                    steps.append(["a", name])
                elif kind == "lit" and isinstance(name, int):
                    steps.append(["i", ["L", name]])
                else:
                    raise HclSyntaxError(
                        f"expected an attribute name after '.', found {name!r}", at
                    )
            elif kind == "op" and value == "[":
                self.lx.take()
                index = self.expression()
                self.lx.expect("]")
                steps.append(["i", index])
            elif kind == "op" and value in ("[*]", ".*"):
                self.lx.take()
                tree, steps = ["X", "a splat expression ([*])"], []
            else:
                break
        if not steps:
            return tree
        if tree[0] == "V":
            return ["V", tree[1], tree[2] + steps]
        return ["G", tree, steps]

    def _primary(self) -> Any:
        kind, value, at, _ = self.lx.take()
        if kind == "lit":
            return value if isinstance(value, list) else ["L", value]
        if kind == "ident":
            if value in _KEYWORDS:
                return ["L", _KEYWORDS[value]]
            if self._is("("):
                return self._call(value)
            return ["V", value, []]
        if kind == "op" and value == "(":
            inner = self.expression()
            self.lx.expect(")")
            return inner
        if kind == "op" and value == "[":
            return self._tuple()
        if kind == "op" and value == "{":
            return self._object()
        raise HclSyntaxError(f"unexpected {value!r}" if value is not None else "unexpected end", at)

    def _call(self, name: str) -> Any:
        self.lx.take()  # (
        args: list[Any] = []
        spread = False
        if self._is(")"):
            self.lx.take()
            return ["C", name, args, spread]
        while True:
            args.append(self.expression())
            kind, value, at, _ = self.lx.take()
            if kind == "op" and value == "...":
                spread = True
                kind, value, at, _ = self.lx.take()
            if kind == "op" and value == ",":
                if self._is(")"):
                    self.lx.take()
                    break
                continue
            if kind == "op" and value == ")":
                break
            raise HclSyntaxError(f"expected ',' or ')' in {name}(...), found {value!r}", at)
        return ["C", name, args, spread]

    def _tuple(self) -> Any:
        kind, value, _, _ = self.lx.peek()
        if kind == "ident" and value == "for":
            return self._for(False, "]")
        items: list[Any] = []
        while not self._is("]"):
            items.append(self.expression())
            kind, value, at, _ = self.lx.peek()
            if kind == "op" and value == ",":
                self.lx.take()
            elif not (kind == "op" and value == "]"):
                raise HclSyntaxError(f"expected ',' or ']', found {value!r}", at)
        self.lx.take()
        return ["A", items]

    def _object(self) -> Any:
        kind, value, _, _ = self.lx.peek()
        if kind == "ident" and value == "for":
            return self._for(True, "}")
        pairs: list[Any] = []
        while not self._is("}"):
            kind, value, at, _ = self.lx.peek()
            if kind == "ident" and value not in _KEYWORDS:
                self.lx.take()
                key: Any = ["L", value]
            else:
                key = self._binary(0)
            kind, value, at, _ = self.lx.take()
            if not (kind == "op" and value in ("=", ":")):
                raise HclSyntaxError(f"expected '=' after an object key, found {value!r}", at)
            pairs.append([key, self.expression()])
            kind, value, at, newline = self.lx.peek()
            if kind == "op" and value == ",":
                self.lx.take()
            elif not (newline or (kind == "op" and value == "}")):
                raise HclSyntaxError(f"expected ',' or a new line, found {value!r}", at)
        self.lx.take()
        return ["O", pairs]

    def _for(self, is_object: bool, closer: str) -> Any:
        self.lx.take()  # for
        kind, first, at, _ = self.lx.take()
        if kind != "ident":
            raise HclSyntaxError("expected a name after `for`", at)
        key_var, value_var = None, first
        if self._is(","):
            self.lx.take()
            kind, second, at, _ = self.lx.take()
            key_var, value_var = first, second
        self.lx.expect("in")
        collection = self.expression()
        self.lx.expect(":")
        key = None
        value_tree = self.expression()
        if is_object:
            self.lx.expect("=>")
            key, value_tree = value_tree, self.expression()
        group = False
        if self._is("..."):
            self.lx.take()
            group = True
        cond = None
        kind, value, _, _ = self.lx.peek()
        if kind == "ident" and value == "if":
            self.lx.take()
            cond = self.expression()
        self.lx.expect(closer)
        return ["F", is_object, key_var, value_var, collection, key, value_tree, cond, group]


def compile_template(text: str) -> Any:
    """The tree of one string as python-hcl2 returns it (a template, maybe a heredoc)."""
    if text.startswith("<<") and re.match(r"<<-?[A-Za-z_][A-Za-z0-9_]*[ \t]*\n", text):
        return _heredoc(text, 0)[0]
    parts, _ = _template_parts(text, 0, quoted=False)
    return _template_tree(parts)


def needs_compiling(text: str) -> bool:
    return "${" in text or "%{" in text or text.startswith("<<")


def literal_text(text: str) -> str:
    """A string without interpolations: only the `$${`/`%%{` escapes to undo."""
    if "{" not in text:
        return text
    return text.replace("$${", "${").replace("%%{", "%{")


# ---------------------------------------------------------------------------------------- var files


def parse_literals(text: str) -> tuple[dict[str, Any], dict[str, int], list[tuple[str, int, int]]]:
    """A variable-definitions file: (values, the line of each name, duplicates as (name, first, second)).

    Only literal values (strings, numbers, bools, null, tuples, objects) are allowed, as in
    Packer's own var files; anything else raises HclSyntaxError (the caller then asks python-hcl2
    for its error message).
    """
    lexer = _Lexer(text)
    parser = _Parser(lexer)
    values: dict[str, Any] = {}
    lines: dict[str, int] = {}
    dups: list[tuple[str, int, int]] = []
    first = True
    while True:
        kind, name, at, newline = lexer.take()
        if kind == "end":
            break
        if kind != "ident" or not (newline or first):
            raise HclSyntaxError(f"expected a variable name on a new line, found {name!r}", at)
        first = False
        line = text.count("\n", 0, at) + 1
        lexer.expect("=")
        result = constant(parser.expression())
        if isinstance(result, Unknown):
            raise HclSyntaxError(f"{name}: {result.reason}", at)
        if name in lines:
            dups.append((name, lines[name], line))
        values[name] = result
        lines[name] = line
    return values, lines, dups


def constant(tree: Any) -> Any:
    """The value of a tree that references nothing (Unknown when it does)."""
    return Evaluator(_NoScope()).value(tree)


class _NoScope:
    def root(self, name: str) -> Any:
        return Unknown(f"{name}. references are not allowed in a variable-definitions file")


# ---------------------------------------------------------------------------------------- evaluation


class Evaluator:
    """Evaluates trees against a scope; `reads` collects every file a function read."""

    def __init__(self, scope: Any, cwd: str = ".", env: dict[str, str] | None = None) -> None:
        self.scope = scope
        self.cwd = cwd
        self.env = env or {}
        self.reads: dict[str, None] = {}  # absolute paths of files read (inputs)
        self.globbed: dict[str, None] = {}  # folders fileset() listed
        # The value depends on more than the files read (a folder's listing, the environment).
        self.volatile = False
        self.frames: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- entry points

    def text(self, raw: Any, compiled: dict[str, Any] | None = None) -> Any:
        """The value of an attribute as python-hcl2 returned it (strings are templates)."""
        if isinstance(raw, str):
            if not needs_compiling(raw):
                return literal_text(raw)
            tree = compiled.get(raw) if compiled else None
            if tree is None:
                try:
                    tree = compile_template(raw)
                except HclSyntaxError as exc:
                    return Unknown(f"cannot read the expression {raw!r}: {exc}")
            return self.value(tree)
        if isinstance(raw, list):
            return [self.text(item, compiled) for item in raw]
        if isinstance(raw, dict):
            return {k: self.text(v, compiled) for k, v in raw.items()}
        return raw

    def value(self, tree: Any) -> Any:
        try:
            return self._eval(tree)
        except RecursionError:
            return Unknown("the expression nests too deeply")
        except _Fail as exc:
            return Unknown(exc.reason)

    # ----------------------------------------------------------------- the walk

    def _eval(self, tree: Any) -> Any:
        tag = tree[0]
        if tag == "L":
            return tree[1]
        if tag == "T":
            out = []
            for part in tree[1]:
                if isinstance(part, str):
                    out.append(part)
                    continue
                value = self._eval(part)
                if isinstance(value, Unknown | Content):
                    return value
                out.append(_to_text(value))
            return "".join(out)
        if tag == "V":
            base = self._root(tree[1])
            return self._steps(base, tree[2], tree[1])
        if tag == "G":
            return self._steps(self._eval(tree[1]), tree[2], "expression")
        if tag == "C":
            return self._call(tree[1], tree[2], tree[3])
        if tag == "A":
            items = [self._eval(t) for t in tree[1]]
            bad = _first_unknown(items)
            return bad if bad is not None else items
        if tag == "O":
            result: dict[str, Any] = {}
            for key_tree, value_tree in tree[1]:
                key = self._eval(key_tree)
                if isinstance(key, Unknown):
                    return key
                result[_to_text(key)] = self._eval(value_tree)
            return result
        if tag == "B":
            return self._binary(tree[1], tree[2], tree[3])
        if tag == "U":
            operand = self._eval(tree[2])
            if isinstance(operand, Unknown):
                return operand
            if tree[1] == "!":
                return not _truthy(operand)
            return -_number(operand)
        if tag == "Q":
            cond = self._eval(tree[1])
            if isinstance(cond, Unknown):
                return cond
            return self._eval(tree[2] if _truthy(cond) else tree[3])
        if tag == "F":
            return self._for(tree)
        if tag == "X":
            return Unknown(f"{tree[1]} is not evaluated here")
        raise _Fail(f"unknown expression {tag!r}")

    def _root(self, name: str) -> Any:
        for frame in reversed(self.frames):
            if name in frame:
                return frame[name]
        return self.scope.root(name)

    def _steps(self, base: Any, steps: list[Any], root: str) -> Any:
        where = root
        for step in steps:
            if isinstance(base, Unknown | Content):
                return base
            if step[0] == "a":
                key: Any = step[1]
                where = f"{where}.{key}"
            else:
                key = self._eval(step[1])
                if isinstance(key, Unknown):
                    return key
                where = f"{where}[{key!r}]"
            getter = getattr(base, "attribute", None)
            if getter is not None:
                base = getter(key)
            elif isinstance(base, dict):
                if str(key) not in base:
                    return Unknown(f"{where} is not set")
                base = base[str(key)]
            elif isinstance(base, list):
                try:
                    base = base[int(key)]
                except (ValueError, IndexError):
                    return Unknown(f"{where}: no such element")
            else:
                return Unknown(f"{where}: {type(base).__name__} has no attributes")
        return base

    def _binary(self, op: str, left_tree: Any, right_tree: Any) -> Any:
        left = self._eval(left_tree)
        if op in ("&&", "||"):
            if isinstance(left, Unknown):
                return left
            if op == "&&" and not _truthy(left):
                return False
            if op == "||" and _truthy(left):
                return True
            right = self._eval(right_tree)
            return right if isinstance(right, Unknown) else _truthy(right)
        right = self._eval(right_tree)
        for side in (left, right):
            if isinstance(side, Unknown):
                return side
        if op == "==":
            return left == right
        if op == "!=":
            return left != right
        a, b = _number(left), _number(right)
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if b == 0:
                raise _Fail("division by zero")
            return a / b
        if op == "%":
            return a % b
        return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]

    def _for(self, tree: Any) -> Any:
        _, is_object, key_var, value_var, coll_tree, key_tree, value_tree, cond, group = tree
        collection = self._eval(coll_tree)
        if isinstance(collection, Unknown):
            return collection
        if isinstance(collection, dict):
            pairs = list(collection.items())
        elif isinstance(collection, list):
            pairs = list(enumerate(collection))
        else:
            return Unknown("a for expression over something that is not a collection")
        out_list: list[Any] = []
        out_obj: dict[str, Any] = {}
        for k, v in pairs:
            frame = {value_var: v}
            if key_var:
                frame[key_var] = k
            self.frames.append(frame)
            try:
                if cond is not None:
                    keep = self._eval(cond)
                    if isinstance(keep, Unknown):
                        return keep
                    if not _truthy(keep):
                        continue
                item = self._eval(value_tree)
                if isinstance(item, Unknown):
                    return item
                if is_object:
                    key = self._eval(key_tree)
                    if isinstance(key, Unknown):
                        return key
                    if group:
                        out_obj.setdefault(_to_text(key), []).append(item)
                    else:
                        out_obj[_to_text(key)] = item
                else:
                    out_list.append(item)
            finally:
                self.frames.pop()
        return out_obj if is_object else out_list

    # ----------------------------------------------------------------- functions

    def _call(self, name: str, arg_trees: list[Any], spread: bool) -> Any:
        if name in _LATE:
            return Unknown(f"{name}() {_LATE[name]}")
        args = [self._eval(t) for t in arg_trees]
        if spread and args:
            last = args.pop()
            if isinstance(last, Unknown):
                return last
            args += list(last) if isinstance(last, list) else [last]
        if name in ("file", "templatefile", "fileexists", "fileset", "abspath"):
            return self._path_function(name, args)
        if name == "env":
            self.volatile = True
            key = args[0] if args else ""
            if isinstance(key, Unknown):
                return key
            return self.env.get(str(key), "")
        bad = _first_unknown(args)
        if bad is not None:
            return bad
        function = _FUNCTIONS.get(name)
        if function is None:
            return Unknown(f"the function {name}() is not evaluated here")
        try:
            return function(*args)
        except _Fail:
            raise
        except Exception as exc:  # a wrong argument: Packer reports it; here it is unknown
            return Unknown(f"{name}(): {exc}")

    def _path(self, raw: Any) -> str:
        if isinstance(raw, Unknown):
            raise _Fail(raw.reason)
        text = _to_text(raw)
        return os.path.normpath(os.path.join(self.cwd, os.path.expanduser(text)))

    def _path_function(self, name: str, args: list[Any]) -> Any:
        if not args:
            return Unknown(f"{name}() without arguments")
        if isinstance(args[0], Unknown):
            return Unknown(f"{name}() of a value that is not known here: {args[0].reason}")
        path = self._path(args[0])
        if name == "abspath":
            return path
        if name == "fileexists":
            self.volatile = True
            self.reads[path] = None
            return os.path.isfile(path)
        if name == "fileset":
            if len(args) < 2 or isinstance(args[1], Unknown):
                return Unknown("fileset() of a pattern that is not known here")
            return self._fileset(path, _to_text(args[1]))
        self.reads[path] = None
        if name == "templatefile":
            return Content(f"templatefile({args[0]!r})")
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_FILE + 1)
        except OSError as exc:
            return Unknown(f"file({_to_text(args[0])!r}): {exc.strerror}")
        if len(data) > MAX_FILE:
            return Content(f"file({args[0]!r})")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return Content(f"file({args[0]!r})")

    def _fileset(self, folder: str, pattern: str) -> list[str]:
        self.volatile = True
        self.globbed[folder] = None
        regex = _glob_regex(pattern)
        found = []
        for base, dirs, files in os.walk(folder):
            dirs.sort()
            for name in files:
                full = os.path.join(base, name)
                rel = os.path.relpath(full, folder).replace(os.sep, "/")
                if regex.match(rel):
                    found.append(rel)
                    self.reads[full] = None
        return sorted(found)


MAX_FILE = 1 << 20

# Functions Packer evaluates at build time from outside sources, or whose value changes each run.
_LATE = {
    "vault": "reads HashiCorp Vault at build time",
    "consul_key": "reads Consul at build time",
    "aws_secretsmanager": "reads AWS Secrets Manager at build time",
    "aws_secretsmanager_raw": "reads AWS Secrets Manager at build time",
    "timestamp": "changes on every run",
    "uuidv4": "changes on every run",
    "bcrypt": "changes on every run",
}


class _Fail(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _first_unknown(values: list[Any]) -> Unknown | None:
    for value in values:
        if isinstance(value, Unknown):
            return value
        if isinstance(value, list | dict):
            inner = _first_unknown(list(value.values()) if isinstance(value, dict) else value)
            if inner is not None:
                return inner
    return None


def _to_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, Content):
        return value.what
    raise _Fail(f"a {type(value).__name__} used as a string")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise _Fail("a bool used as a number")
    if isinstance(value, int | float):
        return value
    try:
        return float(value) if "." in str(value) else int(value)
    except (TypeError, ValueError):
        raise _Fail(f"{value!r} is not a number") from None


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value == "true"
    return bool(value)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            ch = pattern[i]
            out.append("[^/]*" if ch == "*" else "[^/]" if ch == "?" else re.escape(ch))
            i += 1
    return re.compile("^" + "".join(out) + "$")


def _format(spec: str, *args: Any) -> str:
    values = iter(args)

    def sub(match: re.Match[str]) -> str:
        verb = match.group(2)
        if verb == "%":
            return "%"
        value = next(values)
        if verb in ("d",):
            return str(int(_number(value)))
        if verb == "q":
            return json.dumps(_to_text(value))
        return _to_text(value) if not isinstance(value, list | dict) else json.dumps(value)

    return re.sub(r"%([-+# 0-9.]*)([a-zA-Z%])", sub, spec)


def _flatten(value: list[Any]) -> list[Any]:
    out: list[Any] = []
    for item in value:
        out += _flatten(item) if isinstance(item, list) else [item]
    return out


def _yamldecode(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def _digest(algorithm: str) -> Callable[[str], str]:
    def digest(text: str) -> str:
        import hashlib

        return hashlib.new(algorithm, _to_text(text).encode()).hexdigest()

    return digest


def _b64encode(text: str) -> str:
    import base64

    return base64.b64encode(_to_text(text).encode()).decode()


def _b64decode(text: str) -> str:
    import base64

    return base64.b64decode(_to_text(text)).decode()


def _regex_replace(text: str, pattern: str, replacement: str) -> str:
    return re.sub(pattern, re.sub(r"\$\{?(\d+)\}?", r"\\\1", replacement), text)


def _lookup(mapping: dict[str, Any], key: str, *default: Any) -> Any:
    if key in mapping:
        return mapping[key]
    if default:
        return default[0]
    raise _Fail(f"lookup(): no key {key!r}")


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "basename": lambda p: os.path.basename(_to_text(p).rstrip("/")),
    "dirname": lambda p: os.path.dirname(_to_text(p)) or ".",
    "pathexpand": lambda p: os.path.expanduser(_to_text(p)),
    "join": lambda sep, *lists: _to_text(sep).join(_to_text(x) for x in _flatten(list(lists))),
    "split": lambda sep, text: _to_text(text).split(_to_text(sep)),
    "format": _format,
    "formatlist": lambda spec, *lists: [_format(spec, *row) for row in zip(*lists, strict=False)],
    "concat": lambda *lists: [x for lst in lists for x in lst],
    "flatten": _flatten,
    "length": len,
    "lower": lambda s: _to_text(s).lower(),
    "upper": lambda s: _to_text(s).upper(),
    "title": lambda s: _to_text(s).title(),
    "replace": lambda s, old, new: (
        re.sub(old[1:-1], new, _to_text(s))
        if len(old) > 1 and old.startswith("/") and old.endswith("/")
        else _to_text(s).replace(_to_text(old), _to_text(new))
    ),
    "regex_replace": _regex_replace,
    "trimprefix": lambda s, p: _to_text(s).removeprefix(_to_text(p)),
    "trimsuffix": lambda s, p: _to_text(s).removesuffix(_to_text(p)),
    "trimspace": lambda s: _to_text(s).strip(),
    "trim": lambda s, chars: _to_text(s).strip(_to_text(chars)),
    "chomp": lambda s: _to_text(s).rstrip("\r\n"),
    "substr": lambda s, offset, length: _to_text(s)[
        int(offset) : (None if int(length) < 0 else int(offset) + int(length))
    ],
    "coalesce": lambda *xs: next((x for x in xs if x not in (None, "")), None),
    "coalescelist": lambda *xs: next((x for x in xs if x), []),
    "element": lambda lst, i: lst[int(i) % len(lst)],
    "index": lambda lst, item: lst.index(item),
    "lookup": _lookup,
    "merge": lambda *maps: {k: v for m in maps for k, v in (m or {}).items()},
    "keys": lambda m: sorted(m),
    "values": lambda m: [m[k] for k in sorted(m)],
    "contains": lambda lst, item: item in lst,
    "distinct": lambda lst: list(dict.fromkeys(lst)),
    "compact": lambda lst: [x for x in lst if x not in (None, "")],
    "reverse": lambda lst: list(reversed(lst)),
    "sort": lambda lst: sorted(_to_text(x) for x in lst),
    "slice": lambda lst, a, b: lst[int(a) : int(b)],
    "zipmap": lambda ks, vs: dict(zip((_to_text(k) for k in ks), vs, strict=False)),
    "min": lambda *xs: min(_number(x) for x in _flatten(list(xs))),
    "max": lambda *xs: max(_number(x) for x in _flatten(list(xs))),
    "tostring": _to_text,
    "tonumber": _number,
    "tobool": _truthy,
    "tolist": list,
    "toset": lambda lst: list(dict.fromkeys(lst)),
    "tomap": dict,
    "jsondecode": lambda text: json.loads(_to_text(text)),
    "jsonencode": lambda value: json.dumps(value, separators=(",", ":")),
    "yamldecode": _yamldecode,
    "sha256": _digest("sha256"),
    "sha1": _digest("sha1"),
    "sha512": _digest("sha512"),
    "md5": _digest("md5"),
    "base64encode": _b64encode,
    "base64decode": _b64decode,
    "urlencode": lambda s: __import__("urllib.parse", fromlist=["quote"]).quote(_to_text(s)),
    "can": lambda value: True,
    "try": lambda first, *rest: first,
}


_PATH_FUNCTIONS = frozenset({"file", "templatefile", "fileset", "fileexists", "abspath"})


def pathy_tree(tree: Any) -> bool:
    """True when an expression can name a local file: it uses path.*, a file function, or builds
    a string with a slash in its literal text."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if not isinstance(node, list) or not node:
            continue
        tag = node[0]
        if not isinstance(tag, str):
            stack.extend(node)
            continue
        if tag == "V" and node[1] == "path":
            return True
        if tag == "C" and node[1] in _PATH_FUNCTIONS:
            return True
        if tag == "T" and any(isinstance(p, str) and "/" in p for p in node[1]):
            return True
        if tag == "L":
            continue
        stack.extend(item for item in node[1:] if isinstance(item, list))
    return False


def fnmatch_any(name: str, patterns: list[str]) -> bool:
    """Packer's `only`/`except` lists match build names with globs."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def strings_in(value: Any) -> list[str]:
    """Every string in a value (lists and objects walked)."""
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return out
