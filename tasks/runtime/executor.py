"""The executor `inv` uses (invoke.json): HomelabContext for every task, errors without tracebacks."""

from __future__ import annotations

import logging
import os
import sys
import traceback

from invoke import Call, Executor, Exit
from invoke.exceptions import ParseError, UnexpectedExit

from tasks.runtime.context import HomelabContext
from tasks.runtime.errors import HomelabError
from tasks.runtime.pipes import EXIT_BROKEN_PIPE, silence_stdout
from tasks.runtime.secrets import mask


class HomelabCall(Call):
    def make_context(self, config):
        return HomelabContext(config=config)


def debug_enabled(core=None) -> bool:
    """`inv --debug` (from the parsed core flags) or INVOKE_DEBUG."""
    try:
        if core is not None and core[0].args.debug.value:
            return True
    except (AttributeError, IndexError, KeyError):
        pass
    return bool(os.environ.get("INVOKE_DEBUG")) or logging.getLogger().isEnabledFor(logging.DEBUG)


class HomelabExecutor(Executor):
    def expand_calls(self, calls):
        expanded = super().expand_calls(calls)
        return [c if isinstance(c, HomelabCall) else c.clone(into=HomelabCall) for c in expanded]

    def execute(self, *tasks):
        try:
            return super().execute(*tasks)
        except HomelabError as exc:
            self._traceback()
            raise Exit(mask(exc.render()), code=exc.exit_code) from None
        except UnexpectedExit as exc:
            self._traceback()
            raise Exit(mask(f"error: {exc}".rstrip()), code=exc.result.exited or 1) from None
        except Exit as exc:
            raise Exit(mask(exc.message) if exc.message else None, code=exc.code) from None
        except (ParseError, KeyboardInterrupt):
            raise
        except BrokenPipeError:
            # The reader went away (`inv ... | head`): stop quietly, as Unix tools do.
            silence_stdout()
            raise Exit(code=EXIT_BROKEN_PIPE) from None
        except Exception as exc:
            self._traceback()
            detail = mask(str(exc)) or "(no message)"
            raise Exit(
                f"error: unexpected {type(exc).__name__}: {detail}\n"
                "  hint: this is a bug in the runner; `inv --debug ...` shows the traceback",
                code=1,
            ) from None

    def _traceback(self) -> None:
        if debug_enabled(self.core):
            print(mask(traceback.format_exc()), file=sys.stderr)
