"""The runner's `inv`: Invoke's own CLI as a Program subclass, installed as the `inv` script.

Invoke documents reusing its CLI as a program of one's own; `pyproject.toml` installs this one as
`inv` and `invoke` (setup.sh runs `pip install -e .`). On top of Invoke's parsing it adds:

- optional positionals (a task's `optional_positional`): `inv app.mode` lists, `inv app.mode X`
  selects. On Invoke's "did not receive required positional arguments" for a left-out optional
  one, the arguments are parsed again with a placeholder in its place, which the task sees as None;
- the project's error for a missing required positional: exit 2 naming it and its valid values
  (the task's `choices`);
- `did you mean: ...?` for an unknown task name;
- bare `inv` lists the tasks with a hint;
- `-h`/`--help` after a task name is that task's help, also when a positional is missing;
- a bash completion script that calls this `inv` by its absolute path, so TAB works with
  `.venv/bin/inv` when the venv is not on PATH;
- `--debug` logging held until the run knows its secrets, then written masked (Invoke logs every
  argument it parses, secrets included, long before the env is resolved);
- SIGTERM and SIGHUP handled like Ctrl-C (the run stops, its trace says interrupted, exit 143
  or 129), and Ctrl-C while the runner is still loading ends quietly with 130.

It relies on two of Invoke's parse error texts (a test pins them) and on public Program hooks
(`create_config`, `parse_core`, `parse_collection`, `parse_tasks`, `update_config`, `execute`,
`no_tasks_given`, `core_args`, `print_task_help`, `parse_core_args`, `parse_cleanup`). Nothing
here imports the runner's `tasks` package: task attributes are read with getattr.
"""

from __future__ import annotations

import signal
import sys


def _quiet(signum: int, _frame) -> None:
    # Ctrl-C (or SIGTERM) while Python is still importing the runner: no traceback.
    print("interrupted", file=sys.stderr)
    raise SystemExit(128 + signum)


for _signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_signum, _quiet)

import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from invoke import Exit, ParseError, Program  # noqa: E402

OMITTED = "\x00omitted\x00"  # stands in for a left-out optional positional during a re-parse
HELP = ("-h", "--help")
FLAG_LIKE = re.compile(r"^(--[A-Za-z][\w-]*(=.*)?|-[A-Za-z])$")
MISSING = "did not receive required positional arguments"
UNKNOWN = re.compile(r"No idea what (.+) is!$")
NEEDS_VALUE = re.compile(r"Flag <Argument: (\S+?)[ >].*needed value")
# Set by main(): tasks.py warns when `inv` is Invoke's own script instead of this program.
ACTIVE = False


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stop like Ctrl-C, with the signal's own exit code."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.exit_code = 128 + signum


def _stop(signum: int, _frame) -> None:
    raise Terminated(signum)


class HeldLog(logging.Handler):
    """Holds log records until the run's secrets are known (`release_held()`), then hands each one,
    masked, to the handler it stands in for."""

    def __init__(self, target: logging.Handler):
        super().__init__(target.level)
        self.target = target
        self.held: list[logging.LogRecord] = []
        self.open = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.open:
            self._send(record)
        else:
            self.held.append(record)

    def _send(self, record: logging.LogRecord) -> None:
        secrets = sys.modules.get("tasks.runtime.secrets")
        message = record.getMessage()
        if secrets is not None:
            message = secrets.mask(message)
        masked = logging.makeLogRecord({**record.__dict__, "msg": message, "args": None})
        self.target.handle(masked)

    def release_held(self) -> None:
        self.open = True
        held, self.held = self.held, []
        for record in held:
            self._send(record)


def hold_debug_log() -> None:
    """Put every root log handler behind a HeldLog (once)."""
    root = logging.getLogger()
    root.handlers = [h if isinstance(h, HeldLog) else HeldLog(h) for h in root.handlers]


def release_debug_log() -> None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, HeldLog):
            handler.release_held()


@contextmanager
def _interrupt_as_exit():
    try:
        yield
    except KeyboardInterrupt as exc:
        raise Exit("interrupted", code=getattr(exc, "exit_code", 130)) from None


class HomelabProgram(Program):
    def run(self, argv=None, exit: bool = True) -> None:  # noqa: A002 (Invoke's name)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C: KeyboardInterrupt
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _stop)
        try:
            super().run(argv, exit)
        except BrokenPipeError:
            # `inv --help | head`: core help is printed before the tasks (and their hook for a
            # closed pipe) are loaded. End as Unix tools do: quietly, 141 (128 + SIGPIPE).
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise SystemExit(141) from None
        finally:
            release_debug_log()

    # Invoke's run() turns a KeyboardInterrupt into a silent exit 1; each phase turns it into an
    # Exit instead, which run() prints ("interrupted") and exits with (130, or 128 + the signal).
    def create_config(self) -> None:
        with _interrupt_as_exit():
            super().create_config()

    def parse_core(self, argv) -> None:
        with _interrupt_as_exit():
            super().parse_core(argv)
        if self.args.debug.value:
            hold_debug_log()

    def parse_collection(self) -> None:
        with _interrupt_as_exit():
            super().parse_collection()

    def load_collection(self) -> None:
        """As Invoke's, except that a tasks module's own `ns` collection is used as it is:
        `Collection.from_module` deep-copies it (every task of the tree, on every start-up) only
        to keep the module's object apart, which nothing else here uses. Another dash setting
        than the tree was built with still goes through `from_module`, which applies it."""
        from invoke import Collection
        from invoke.exceptions import CollectionNotFound

        # The FilesystemLoader takes `start`; the Loader type Invoke declares does not (Invoke
        # ignores the same type error in its own load_collection).
        loader = self.loader_class(  # type: ignore[call-arg]
            config=self.config, start=self.args["search-root"].value
        )
        try:
            module, parent = loader.load(self.args.collection.value)
        except CollectionNotFound as exc:
            raise Exit(f"Can't find any collection named {exc.name!r}!") from None
        self.config.set_project_location(parent)
        self.config.load_project()
        dashes = self.config.tasks.auto_dash_names
        ns = getattr(module, "ns", None)
        if isinstance(ns, Collection) and ns.auto_dash_names == dashes:
            ns.name = ns.name or module.__name__.split(".")[-1]
            ns.loaded_from = parent
            ns.__doc__ = module.__doc__
            self.collection = ns
        else:
            self.collection = Collection.from_module(
                module, loaded_from=parent, auto_dash_names=dashes
            )

    def execute(self) -> None:
        with _interrupt_as_exit():
            super().execute()

    def update_config(self, merge: bool = True) -> None:
        with _interrupt_as_exit():
            super().update_config(merge)

    def _make_parser(self):
        """The task parser, knowing only the tasks argv can name. Invoke's parser deep-copies
        every context it is given, for every parse; a token that names no task parses the same
        either way (the parser consults contexts only for the tokens it sees), so the others are
        left out. Completion needs them all."""
        from invoke.parser import Parser, ParserContext

        unknown_help = self.config.tasks.ignore_unknown_help
        if self.args.complete.value:
            contexts = self.collection.to_contexts(ignore_unknown_help=unknown_help)
        else:
            # As Collection.to_contexts, for the named tasks only: each task's arguments come
            # from inspecting its signature, most of the parse's cost when done for all of them.
            tokens = {t.split("=", 1)[0] for t in self.core.unparsed} | {self.args.help.value}
            contexts = [
                ParserContext(
                    name=primary,
                    aliases=aliases,
                    args=self.collection[primary].get_arguments(ignore_unknown_help=unknown_help),
                )
                for primary, aliases in self.collection.task_names.items()
                if primary in tokens or tokens & set(aliases)
            ]
        return Parser(initial=self.initial_context, contexts=contexts)

    def parse_tasks(self) -> None:
        if self.args.list.value and not self.core.unparsed and not self.args.help.value:
            # `inv --list` names no task: building the task parser (a deep copy of every task's
            # arguments) would be most of its start-up, for nothing.
            from invoke.parser import ParseResult

            self.tasks = ParseResult()
            return
        argv = list(self.core.unparsed)
        try:
            with _interrupt_as_exit():
                self._parse_filling(argv, 0)
        except ParseError as exc:
            raise self._friendly(exc) from None
        except ValueError as exc:  # Invoke casting a flag's value to its default's type (int)
            kind = "a whole number" if "int()" in str(exc) else "a value of another type"
            raise Exit(
                f"error: a flag got {str(exc).rpartition(': ')[2]}, but it takes {kind} ({exc})"
                f"\n  hint: `{self.binary} TASK --help` shows each flag",
                code=2,
            ) from None
        finally:
            self.core.unparsed = argv
        for ctx in self.tasks:
            for arg in ctx.positional_args:
                if arg.raw_value == OMITTED:
                    arg.set_value(None, cast=False)  # the task gets None (its default)
                elif arg.raw_value in HELP:  # Invoke feeds a missing positional `-h`/`--help`
                    self.args.help.value = ctx.name
                elif isinstance(arg.raw_value, str) and FLAG_LIKE.match(arg.raw_value):
                    # Invoke hands a positional the next token, even `--yes`: a misspelt flag
                    # must not become a Kustomization or mode name.
                    raise self._friendly(ParseError(f"No idea what {arg.raw_value!r} is!", ctx))
        self._check_list_flags(argv)

    def _check_list_flags(self, argv: list[str]) -> None:
        """A repeatable flag (`--layer`) left without its value: Invoke gives it an empty list,
        which would read as "not given" (every layer)."""
        by_name = {n: c for c in self.tasks for n in (c.name, *c.aliases)}
        current = None
        for i, token in enumerate(argv):
            if token in by_name:
                current = by_name[token]
                continue
            flag = current.flags.get(token) if current is not None else None
            if flag is None or flag.kind is not list:
                continue
            after = argv[i + 1] if i + 1 < len(argv) else None
            if after is None or FLAG_LIKE.match(after) or after in by_name:
                raise self._friendly(
                    ParseError(
                        f"Flag <Argument: {flag.name}> needed value and was not given one!", current
                    )
                )

    def _parse_filling(self, argv: list[str], omitted: int) -> None:
        """Parse argv; on a left-out optional positional, re-parse with OMITTED in its place."""
        self.core.unparsed = argv
        try:
            super().parse_tasks()
        except ParseError as exc:
            fixes = [
                *self._fill_missing(argv, exc),
                *self._unswallow_task_names(argv, [exc.context]),
            ]
            error = exc
        else:
            fixes = list(self._unswallow_task_names(argv, self.tasks))
            if not fixes:
                placed = sum(a.raw_value == OMITTED for c in self.tasks for a in c.positional_args)
                if placed != omitted:
                    raise ParseError("an omitted optional positional was misplaced")
                return
        for candidate, n in fixes:
            try:
                return self._parse_filling(candidate, omitted + n)
            except ParseError as again:
                error = again  # the reading with the omission explains the input better
        raise error

    def _task(self, ctx):
        if ctx is None or not ctx.name or ctx.name not in self.collection:
            return None
        return self.collection[ctx.name]

    def _optional(self, ctx, arg) -> bool:
        return arg.name in getattr(self._task(ctx), "optional_positional", ())

    def _value_spots(self, argv: list[str], ctx):
        """For each token naming ctx's task: the indices of the positional values it was given."""
        given = [a.raw_value for a in ctx.positional_args if a.raw_value is not None]
        contexts = self.parser.contexts
        for i, token in enumerate(argv):
            if token in contexts and contexts[token].name == ctx.name:
                spots, at = [i], i + 1
                for value in given:
                    if value not in argv[at:]:
                        break
                    at = argv.index(value, at) + 1
                    spots.append(at - 1)
                else:
                    yield spots

    def _fill_missing(self, argv: list[str], exc: ParseError):
        """`inv app.mode [--flags]`: put OMITTED after the task name and its given positionals."""
        ctx = exc.context
        if not (ctx and MISSING in str(exc)) or any(
            a.raw_value in HELP for a in ctx.positional_args
        ):
            return
        missing = ctx.missing_positional_args
        if all(self._optional(ctx, a) for a in missing):
            for spots in self._value_spots(argv, ctx):
                at = spots[-1] + 1
                yield argv[:at] + [OMITTED] * len(missing) + argv[at:], len(missing)

    def _unswallow_task_names(self, argv: list[str], contexts):
        """`inv app.mode env.check l1`: an optional positional must not eat the next task's name."""
        for ctx in filter(None, contexts):
            args = [a for a in ctx.positional_args if a.raw_value is not None]
            for j, arg in enumerate(args):
                if self._optional(ctx, arg) and arg.raw_value in self.parser.contexts:
                    for spots in self._value_spots(argv, ctx):
                        yield argv[: spots[j + 1]] + [OMITTED] + argv[spots[j + 1] :], 1
                    return

    def _friendly(self, exc: ParseError) -> Exception:
        ctx = exc.context
        task = self._task(ctx)
        if ctx is not None and MISSING in str(exc) and task is not None:
            if any(a.raw_value in HELP for a in ctx.positional_args):
                self.print_task_help(str(ctx.name))
                return Exit()
            parts = []
            for arg in [a for a in ctx.missing_positional_args if not self._optional(ctx, a)]:
                values = getattr(task, "choices", {}).get(arg.name)
                shown = f": one of {', '.join(values())}" if values else ""
                parts.append(str(arg.name).upper() + shown)
            usage = f"\n  hint: `{self.binary} {ctx.name} --help` shows its arguments"
            return Exit(f"error: {ctx.name} needs {'; '.join(parts)}{usage}", code=2)
        # Every other parse error is bad input too: exit 2 (1 for `inv plan`), said as the
        # runner says errors, with the nearest names.
        import difflib

        code = getattr(task, "bad_input_exit", 2)
        name = str(ctx.name) if ctx is not None and task is not None else ""
        flags = list(ctx.flags) if ctx is not None and task is not None else []
        where = f"`{self.binary} {name} --help` shows its flags" if name else ""
        message, close = str(exc), []
        found = UNKNOWN.match(message)
        needs = NEEDS_VALUE.match(message)
        if found:
            import ast

            token = str(ast.literal_eval(found.group(1)))
            swallowed = [
                str(a.raw_value)
                for a in (ctx.positional_args if ctx is not None and name else [])
                if FLAG_LIKE.match(str(a.raw_value or ""))
            ]
            if swallowed and not token.startswith("-"):
                # `inv runs.show --jsn last`: Invoke took the misspelt flag as the positional,
                # then found `last` left over. The flag is what is wrong.
                token = swallowed[0]
            if token.startswith("-") and name:
                close = difflib.get_close_matches(token, flags, n=3)
                message = f"{name} has no flag {token}"
            elif token.startswith("-"):
                message = f"no flag {token} (`{self.binary} --help` lists the core flags)"
            else:
                names = [n for p, al in self.collection.task_names.items() for n in (p, *al)]
                close = difflib.get_close_matches(token, names, n=3)
                message = f"no task {token!r} (`{self.binary} --list` lists them)"
                where = ""
        elif needs and name:
            flag = "--" + needs.group(1).strip("_").replace("_", "-")
            message = f"{name}: {flag} needs a value"
        if code == 1:
            message = (
                f"bad input to {name} (exit 1: {name}'s exit 2 means changes pending): {message}"
            )
        hints = [f"did you mean {' or '.join(close)}?"] if close else []
        hints += [where] if where else []
        text = f"error: {message}" + (f"\n  hint: {' '.join(hints)}" if hints else "")
        return Exit(text, code=code)

    def print_task_help(self, name: str) -> None:
        """Invoke's task help, then the positionals by name: Invoke lists them only among the
        options (`-n STRING, --name=STRING`), so `inv l1.build NAME` would not show."""
        super().print_task_help(name)
        ctx = self.parser.contexts[name]
        task = self.collection[name]
        optional = set(getattr(task, "optional_positional", None) or [])
        shown = [
            f"[{a.name.upper()}]" if a.name in optional else a.name.upper()
            for a in ctx.positional_args
        ]
        if shown:
            print("Positional:")
            print(f"{self.leading_indent}{self.binary} {name} {' '.join(shown)}")
            print("")

    def print_version(self) -> None:
        # Looked up only when asked: importlib.metadata costs ~20 ms on every start otherwise.
        self.version = version()
        super().print_version()

    def no_tasks_given(self) -> None:
        self.list_tasks()
        print(f"\nrun '{self.binary} TASK --help' for a task's flags")
        raise Exit

    # -- shell completion that works when the venv's bin/ is not on PATH -----------------------

    def executable(self) -> str:
        me = sys.argv[0]
        if os.path.basename(me) not in self.binary_names:
            me = os.path.join(sys.prefix, "bin", self.binary_names[0])
        return os.path.abspath(me)

    def core_args(self):
        """Invoke's core flags, `--dry` described as it works here: every task's dry run."""
        args = super().core_args()
        for arg in args:
            if "dry" in arg.names:
                arg.help = (
                    "Dry run: reads still run, every change is withheld (a task's --dry-run)."
                )
        return args

    def parse_core_args(self) -> None:
        super().parse_core_args()
        shell = self.args["print-completion-script"].value
        if shell in ("bash", "zsh"):
            import shlex

            script = BASH if shell == "bash" else ZSH
            names = " ".join(self.binary_names)
            print(script.format(exe=shlex.quote(self.executable()), names=names))
            raise Exit

    def parse_cleanup(self) -> None:
        if self.args.complete.value:  # Invoke strips only a literal `inv ` from the command line
            first, _, rest = self.core.remainder.partition(" ")
            if os.path.basename(first) in self.binary_names:
                self.core.remainder = f"{self.binary_names[0]} {rest}"
        with _interrupt_as_exit():
            super().parse_cleanup()


BASH = """\
# homelab runner: bash completion for inv (calls {exe}, so the venv need not be on PATH)
_complete_homelab_inv() {{
    local candidates
    candidates=$({exe} --complete -- ${{COMP_WORDS[*]}})
    COMPREPLY=( $(compgen -W "${{candidates}}" -- "$2") )
}}
complete -F _complete_homelab_inv -o default {names}"""

ZSH = """\
# homelab runner: zsh completion for inv (calls {exe}, so the venv need not be on PATH)
_complete_homelab_inv() {{
    collection_arg=''
    if [[ "${{words}}" =~ "(-c|--collection) [^ ]+" ]]; then
        collection_arg=$MATCH
    fi
    reply=( $({exe} ${{=collection_arg}} --complete -- ${{words}}) )
}}
compctl -K _complete_homelab_inv + -f {names}"""


def version() -> str:
    try:
        from importlib.metadata import version as installed

        return installed("homelab-runner")
    except Exception:
        return "unknown"


def main() -> None:
    global ACTIVE
    ACTIVE = True
    if os.environ.get("INVOKE_DEBUG"):
        hold_debug_log()
    HomelabProgram(name="homelab runner", binary="inv", binary_names=["inv", "invoke"]).run()


if __name__ == "__main__":
    main()
