"""The runner's one HCL loader (L1's Packer templates and L2's VM declarations).

`load_hcl` parses a file with python-hcl2 (7.x-shaped dicts) through the content-hash parse cache
and adds what python-hcl2 leaves out: the line of every block and attribute (python-hcl2 emits no
line numbers, so the source text is scanned for them), an error for an attribute set twice in one
block (python-hcl2 silently keeps the last; Packer and Terraform refuse it), every interpolated
string compiled to an expression tree (tasks/l1/hclexpr.py) and the path-like words of every
literal string. `load_vars_file` reads a variable-definitions file without python-hcl2 and without
the cache: such files hold secrets.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tasks.l1.parsecache import EXTRA_TAG, HCL_TAG, cache_key, lookup, sha256, store
from tasks.runtime.errors import ConfigError
from tasks.runtime.records import Record

REDACTED = "\x00sensitive"  # a sensitive variable's default, as the cache stores it
_QUOTED = r'\\?"([^"\\]+)\\?"'


class HclError(ConfigError):
    """A file that is not valid HCL; `line`/`column` are 0 when the parser gave none."""

    def __init__(self, shown: str, detail: str, line: int = 0, column: int = 0) -> None:
        where = f":{line}:{column}" if line and column else f":{line}" if line else ""
        super().__init__(f"{shown}{where}: invalid HCL: {detail}")
        self.shown, self.detail, self.line, self.column = shown, detail, line, column


class HclFile:
    """One parsed file: its document and the path-like words of its variable defaults and locals;
    its block/attribute lines, compiled expressions and literal words are read from the cache only
    when asked for (a warm `l1.list` that remembers a build's inputs never needs them)."""

    __slots__ = ("path", "shown", "doc", "static", "digest", "cache_dir", "_extra")

    def __init__(
        self,
        path: Path,
        shown: str,
        doc: dict[str, Any],
        static: list[str],
        digest: str,
        cache_dir: Path | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.path = path
        self.shown = shown  # the name messages use (checkout-relative)
        self.doc = doc
        self.static = static  # path-like words of literal variable defaults and locals
        self.digest = digest  # SHA-256 of the bytes parsed
        self.cache_dir = cache_dir
        self._extra = extra

    def __repr__(self) -> str:
        return f"HclFile({self.shown!r})"

    def _details(self) -> dict[str, Any]:
        if self._extra is None:
            found = lookup(self.cache_dir, cache_key(self.digest, EXTRA_TAG))
            if not isinstance(found, dict):
                data = self.path.read_bytes()
                parsed = _parse(data, self.shown)
                key = sha256(data).hexdigest()
                store(self.cache_dir, cache_key(key, HCL_TAG), _light(parsed))
                found = _heavy(parsed)
                store(self.cache_dir, cache_key(key, EXTRA_TAG), found)
            self._extra = found
        return self._extra

    @property
    def tree(self) -> dict[str, Any]:
        """{"a": {attr: line}, "b": [{"t", "l", "n", "a", "b"}...]}"""
        return self._details().get("tree") or {"a": {}, "b": []}

    @property
    def exprs(self) -> dict[str, Any]:
        """string -> expression tree, for every string with an interpolation"""
        return self._details().get("exprs") or {}

    @property
    def pathy(self) -> list[str]:
        """the strings whose expression can name a file (path.*, file(), "a/b")"""
        return self._details().get("pathy") or []

    @property
    def words(self) -> dict[str, list[str]]:
        """literal string -> its path-like words"""
        return self._details().get("words") or {}

    def where(self, *path: Any) -> str:
        """`file:line` of a block or attribute, found by `path` (see `line_of`)."""
        line = line_of(self.tree, path)
        return f"{self.shown}:{line}" if line else self.shown

    def place(self, *path: Any) -> Place:
        """`where`, worked out only when it is shown (most places never are)."""
        return Place(self, path)


class Place:
    __slots__ = ("hcl", "path")

    def __init__(self, hcl: HclFile, path: tuple[Any, ...]) -> None:
        self.hcl = hcl
        self.path = path

    def __str__(self) -> str:
        return self.hcl.where(*self.path)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]


def load_hcl(
    path: Path, cache_dir: Path | None, shown: str | None = None, digest: str | None = None
) -> HclFile:
    """Parse one HCL file. A syntax error names the file, line and column; an attribute set twice
    in one block names both lines. With `digest` (the SHA-256 of its bytes, known from a stat
    cache) a cached parse is used without reading the file at all."""
    shown = shown or str(path)
    light = lookup(cache_dir, cache_key(digest, HCL_TAG)) if digest and cache_dir else None
    extra = None
    if light is None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
        digest = sha256(data).hexdigest()
        light = lookup(cache_dir, cache_key(digest, HCL_TAG))
        if light is None:
            parsed = _parse(data, shown)
            light, extra = _light(parsed), _heavy(parsed)
            store(cache_dir, cache_key(digest, EXTRA_TAG), extra)
            store(cache_dir, cache_key(digest, HCL_TAG), light)
    if not isinstance(light, dict) or not isinstance(light.get("doc"), dict):
        raise HclError(shown, "expected blocks and attributes")
    assert digest is not None
    return HclFile(path, shown, light["doc"], light.get("static") or [], digest, cache_dir, extra)


def _light(parsed: dict[str, Any]) -> dict[str, Any]:
    return {"doc": parsed["doc"], "static": parsed["static"]}


def _heavy(parsed: dict[str, Any]) -> dict[str, Any]:
    return {k: parsed[k] for k in ("tree", "exprs", "pathy", "words")}


def _parse(data: bytes, shown: str) -> dict[str, Any]:
    try:
        return _entry(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    except _Duplicate as dup:
        raise ConfigError(
            f"{shown}:{dup.second}: {dup.name} is set twice in {dup.block} "
            f"(lines {dup.first} and {dup.second})",
            hint="keep one of them: HCL allows each attribute once per block",
        ) from None
    except Exception as exc:  # lark's errors, and hcl2's own ValueErrors on bad constructs
        line, column = getattr(exc, "line", 0), getattr(exc, "column", 0)
        raise HclError(
            shown,
            _first_line(exc),
            line if isinstance(line, int) and line > 0 else 0,
            column if isinstance(column, int) and column > 0 else 0,
        ) from None


def hcl_loads(text: str) -> dict[str, Any]:
    import hcl2
    from hcl2 import SerializationOptions

    options = SerializationOptions(
        strip_string_quotes=True, explicit_blocks=False, with_comments=False
    )
    return hcl2.loads(text, serialization_options=options)


def _entry(text: str) -> dict[str, Any]:
    from tasks.l1.hclexpr import HclSyntaxError, compile_template, needs_compiling, pathy_tree

    doc = hcl_loads(text)
    tree, dups = scan_structure(text)
    if dups:
        raise _Duplicate(*dups[0])
    _redact_sensitive(doc)
    exprs: dict[str, Any] = {}
    pathy: list[str] = []
    words: dict[str, list[str]] = {}
    for string in _strings(doc):
        if string in exprs or string in words:
            continue
        if needs_compiling(string):
            try:
                exprs[string] = compile_template(string)
            except HclSyntaxError as exc:
                exprs[string] = ["X", f"an expression this runner cannot read ({exc})"]
            if pathy_tree(exprs[string]):
                pathy.append(string)
        else:
            found = path_words(string)
            if found:
                words[string] = found
    static: dict[str, None] = {}
    for text in _strings([_defaults(doc), doc.get("locals") or []]):
        static.update(dict.fromkeys(words.get(text) or ()))
    return {
        "doc": doc,
        "static": list(static),
        "tree": tree,
        "exprs": exprs,
        "pathy": pathy,
        "words": words,
    }


def _defaults(doc: dict[str, Any]) -> list[Any]:
    """The default of every variable block that is not sensitive."""
    found = []
    for block in doc.get("variable") or []:
        if isinstance(block, dict):
            for body in block.values():
                if isinstance(body, dict) and body.get("default") not in (None, REDACTED):
                    found.append(body["default"])
    return found


def _redact_sensitive(doc: dict[str, Any]) -> None:
    """Blank the defaults of sensitive variables, so no secret reaches the cache."""
    for block in doc.get("variable") or []:
        if not isinstance(block, dict):
            continue
        for body in block.values():
            if (
                isinstance(body, dict)
                and body.get("sensitive") in (True, "true")
                and "default" in body
            ):
                body["default"] = REDACTED


def _strings(value: Any) -> list[str]:
    out: list[str] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
            out.extend(k for k in item if isinstance(k, str) and "/" in k)
        elif isinstance(item, list):
            stack.extend(item)
    return out


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Duplicate(Exception):
    def __init__(self, block: str, name: str, first: int, second: int) -> None:
        super().__init__(name)
        self.block, self.name, self.first, self.second = block, name, first, second


# ------------------------------------------------------------------ path-like words


def path_words(text: str) -> list[str]:
    """The words of a string that could name a file or folder (relative or absolute)."""
    cleaned = (
        text.replace("${path.root}/", "")
        .replace("${path.cwd}/", "")
        .replace("{{template_dir}}/", "")
    )
    words = [cleaned, *re.findall(_QUOTED, cleaned)]
    for word in re.split(r"[\s,;]+", cleaned):
        words.append(word.split("=", 1)[1] if "=" in word else word)
    out: dict[str, None] = {}
    for word in words:
        word = word.strip().strip("'\"").removeprefix("file:").removeprefix("./")
        if not word or "${" in word or "{{" in word or "://" in word or len(word) > 255:
            continue
        if "\n" in word or "\0" in word:
            continue
        out[word] = None
    return list(out)


# ------------------------------------------------------------------ lines


def line_of(tree: dict[str, Any], path: tuple[Any, ...] | list[Any]) -> int:
    """The line of a block or attribute. `path` alternates (block type, index among the blocks of
    that type at that level) and may end with an attribute name: ("build", 0, "source", 1, "name")."""
    node = tree
    line = 0
    items = list(path)
    while items:
        head = items.pop(0)
        if items and isinstance(items[0], int):
            index = items.pop(0)
            blocks = [b for b in node.get("b", []) if b.get("t") == head]
            if index >= len(blocks):
                return line
            node = blocks[index]
            line = int(node.get("n") or line)
        else:
            return int(node.get("a", {}).get(head) or line)
    return line


def scan_structure(text: str) -> tuple[dict[str, Any], list[tuple[str, str, int, int]]]:
    """Blocks and attributes with their lines; duplicates as (block, attribute, first, second).

    Runs on text python-hcl2 has accepted, so it only has to keep its place: strings (with
    interpolations), heredocs, comments and brackets are skipped, not checked.
    """
    import bisect

    ident_re = re.compile(_IDENT_PATTERN)
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line(at: int) -> int:
        return bisect.bisect_right(newlines, at - 1) + 1

    root: dict[str, Any] = {"a": {}, "b": []}
    stack: list[tuple[dict[str, Any], str]] = [(root, "the file's top level")]
    dups: list[tuple[str, str, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        i = _skip_space(text, i, newlines=True)
        if i >= n:
            break
        ch = text[i]
        if ch == "}":
            if len(stack) > 1:
                stack.pop()
            i += 1
            continue
        ident = ident_re.match(text, i)
        if ident is None:
            i += 1
            continue
        name, start = ident.group(), i
        i = _skip_space(text, ident.end(), newlines=False)
        if text.startswith("=", i) and not text.startswith("==", i):
            node, label = stack[-1]
            seen = node["a"]
            if name in seen:
                dups.append((label, name, seen[name], line(start)))
            else:
                seen[name] = line(start)
            i = _skip_expression(text, i + 1)
            continue
        labels: list[str] = []
        while i < n and text[i] != "{":
            if text[i] == '"':
                end = _skip_string(text, i + 1)
                labels.append(text[i + 1 : end - 1])
                i = end
            else:
                word = ident_re.match(text, i)
                if word is None:
                    break
                labels.append(word.group())
                i = word.end()
            i = _skip_space(text, i, newlines=False)
        if i >= n or text[i] != "{":
            i += 1
            continue
        block = {"t": name, "l": labels, "n": line(start), "a": {}, "b": []}
        stack[-1][0]["b"].append(block)
        shown = " ".join([name, *(f'"{label}"' for label in labels)])
        stack.append((block, shown))
        i += 1
    return root, dups


_IDENT_PATTERN = r"[A-Za-z_][A-Za-z0-9_\-]*"


def _skip_space(text: str, i: int, *, newlines: bool) -> int:
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r" or (newlines and ch == "\n"):
            i += 1
        elif ch == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            if end < 0:
                return n
            i = end if not newlines else end + 1
            if not newlines:
                return i
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            break
    return i


def _skip_string(text: str, i: int) -> int:
    """From just after an opening quote to just after its closing quote."""
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        if ch in "$%" and text.startswith(ch + ch + "{", i):
            i += 3
            continue
        if ch in "$%" and text.startswith("{", i + 1):
            i = _skip_braces(text, i + 2)
            continue
        i += 1
    return n


def _skip_braces(text: str, i: int) -> int:
    """From inside an interpolation (or object) to just after its closing brace."""
    depth, n = 1, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _skip_string(text, i + 1)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


_HEREDOC_PATTERN = r"<<-?([A-Za-z_][A-Za-z0-9_]*)[ \t]*\n"


def _skip_expression(text: str, i: int) -> int:
    """From after `=` to the end of the attribute's expression (a newline outside brackets)."""
    depth, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i = _skip_string(text, i + 1)
            continue
        if ch == "<" and text.startswith("<<", i):
            heredoc = re.compile(_HEREDOC_PATTERN).match(text, i)
            if heredoc is not None:
                closing = re.compile(
                    r"^[ \t]*" + re.escape(heredoc.group(1)) + r"[ \t]*$", re.MULTILINE
                ).search(text, heredoc.end())
                i = n if closing is None else closing.end()
                continue
        if ch == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                return i  # the block's closing brace right after the value
            depth -= 1
        elif ch == "\n" and depth == 0:
            return i + 1
        i += 1
    return n


# ------------------------------------------------------------------ variable-definitions files


class VarsFile(Record):
    __slots__ = ("path", "shown", "values", "lines", "digest")

    def __init__(
        self, path: Path, shown: str, values: dict[str, Any], lines: dict[str, int], digest: str
    ) -> None:
        self.path = path
        self.shown = shown
        self.values = values  # name -> evaluated literal value
        self.lines = lines
        self.digest = digest


def load_vars_file(path: Path, shown: str | None = None) -> VarsFile:
    """A `*.auto.pkrvars.hcl` file, read on every run and never cached (it may hold secrets)."""
    from tasks.l1.hclexpr import Evaluator, HclSyntaxError, _NoScope, parse_literals

    shown = shown or str(path)
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{shown}: not UTF-8 text") from None
    digest = sha256(data).hexdigest()
    try:
        values, lines, dups = parse_literals(text)
    except HclSyntaxError:
        # Not plain literals: python-hcl2 has the authoritative word (and an error's line).
        try:
            doc = hcl_loads(text)
        except Exception as exc:
            line, column = getattr(exc, "line", 0), getattr(exc, "column", 0)
            raise HclError(
                shown,
                _first_line(exc),
                line if isinstance(line, int) and line > 0 else 0,
                column if isinstance(column, int) and column > 0 else 0,
            ) from None
        tree, structure_dups = scan_structure(text)
        dups = [d[1:] for d in structure_dups]
        lines = dict(tree["a"])
        evaluator = Evaluator(_NoScope())
        values = {k: evaluator.text(v) for k, v in doc.items()}
    if dups:
        name, first, second = dups[0]
        raise ConfigError(
            f"{shown}:{second}: {name} is set twice (lines {first} and {second})",
            hint="keep one of them",
        )
    return VarsFile(path, shown, values, lines, digest)
