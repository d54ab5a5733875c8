"""The executor `inv` uses (invoke.json): one Run per invocation, errors without tracebacks.

Invoke has no setting for a Context class; an Executor subclass whose calls are cloned into a
Call subclass with its own `make_context` is the supported way (fabric does the same). The first
call builds the Run from its task's flags and Invoke's `--dry`; every later call of the same
invocation shares it. When the last task returns (or fails), the Run writes its trace.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from typing import Any

from invoke import Call, Executor, Exit
from invoke.exceptions import ParseError, UnexpectedExit

from tasks.runtime.context import HomelabContext
from tasks.runtime.errors import ConfigError, HomelabError
from tasks.runtime.pipes import EXIT_BROKEN_PIPE, silence_stdout
from tasks.runtime.secrets import mask


class HomelabCall(Call):
    def __init__(self, *args: Any, executor: HomelabExecutor | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.executor = executor

    def clone_data(self) -> dict[str, Any]:
        return {**super().clone_data(), "executor": self.executor}

    def make_context(self, config):
        context = HomelabContext(config=config)
        if self.executor is not None:
            object.__setattr__(context, "homelab_run", self.executor.run_for(self, config))
        return context


def debug_enabled(core=None) -> bool:
    """`inv --debug` (from the parsed core flags) or INVOKE_DEBUG."""
    try:
        if core is not None and core[0].args.debug.value:
            return True
    except (AttributeError, IndexError, KeyError):
        pass
    return bool(os.environ.get("INVOKE_DEBUG")) or logging.getLogger().isEnabledFor(logging.DEBUG)


class HomelabExecutor(Executor):
    run: Any = None

    def expand_calls(self, calls):
        expanded = super().expand_calls(calls)
        return [
            c if isinstance(c, HomelabCall) else c.clone(into=HomelabCall, with_={"executor": self})
            for c in expanded
        ]

    def run_for(self, call: Call, config) -> Any:
        """The invocation's Run: built from the first call's flags, shared by the others."""
        from tasks.runtime.cli import RunnerTask
        from tasks.runtime.project import Project
        from tasks.runtime.run import EnvSelection, Run

        kwargs = call.kwargs
        name = call.called_as or call.task.name
        task = call.task if isinstance(call.task, RunnerTask) else None
        chain = task.env_chain(kwargs) if task else "cluster"
        doppler = (task.doppler if task else True) and not kwargs.get("no_doppler")
        selection = EnvSelection.from_flags(
            chain, profile=kwargs.get("profile"), host_env=kwargs.get("host_env"), doppler=doppler
        )
        dry = bool(config.run.dry) or bool(kwargs.get("dry_run"))
        area = task.lock_area(kwargs) if task else None
        if self.run is None:
            self.run = Run(
                Project.current(),
                task=name,
                dry_run=dry,
                selection=selection,
                check_settings=task.check_settings if task else True,
                traced=task.traced if task else True,
            )
            if area and not dry:
                self.run.lock(area)
            return self.run
        if dry != self.run.asked_dry_run:
            raise ConfigError(
                f"{name}: one run is either a dry run or not; give --dry-run to every task or none"
            )
        self.run.use_selection(selection, name)
        if area and not dry:
            self.run.lock(area)
        return self.run

    def execute(self, *tasks):
        outcome, code, message = "ok", 0, None
        try:
            return super().execute(*tasks)
        except HomelabError as exc:
            self._traceback()
            outcome = "refused" if exc.exit_code == 3 else "failed"
            code, message = exc.exit_code, mask(exc.render())
            raise Exit(message, code=code) from None
        except UnexpectedExit as exc:
            self._traceback()
            outcome, code = "failed", exc.result.exited or 1
            message = mask(f"error: {exc}".rstrip())
            raise Exit(message, code=code) from None
        except Exit as exc:
            code = exc.code
            outcome = "ok" if code == 0 else "failed"
            message = mask(exc.message) if exc.message else None
            raise Exit(message, code=code) from None
        except ParseError:
            raise
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (homelab_cli.Terminated)
            code = getattr(exc, "exit_code", 130)
            outcome, message = "interrupted", "interrupted"
            raise Exit("interrupted: the run stopped; its trace says where", code=code) from None
        except BrokenPipeError:
            # The reader went away (`inv ... | head`): stop quietly, as Unix tools do.
            silence_stdout()
            outcome, code = "failed", EXIT_BROKEN_PIPE
            raise Exit(code=EXIT_BROKEN_PIPE) from None
        except Exception as exc:
            self._traceback()
            detail = mask(str(exc)) or "(no message)"
            outcome, code = "failed", 1
            message = (
                f"error: unexpected {type(exc).__name__}: {detail}\n"
                "  hint: this is a bug in the runner; `inv --debug ...` shows the traceback"
            )
            raise Exit(message, code=1) from None
        finally:
            if self.run is not None:
                try:
                    self.run.finish(outcome, exit_code=code, error=message)
                except OSError as exc:  # a full disk must not hide the run's own outcome
                    print(mask(f"warning: the trace was not written: {exc}"), file=sys.stderr)

    def _traceback(self) -> None:
        if debug_enabled(self.core):
            print(mask(traceback.format_exc()), file=sys.stderr)
