"""The exit statuses of the ``mlpgen`` command, and the errors that map to them.

Every status has one meaning, whatever the command (docs/generated-files.md
lists them for users):

    0  OK                  done; crosstest: the three implementations agree
    1  FAILED              crosstest: they disagree; run, compile --plot: training failed
    2  BAD_INPUT           a bad spec or a bad command line, an output folder that
                           mlpgen did not write; nothing was written
    3  IMPL_FAILED         crosstest: an implementation failed to run (its error shown)
    4  MISSING_DEPENDENCY  the command needs an optional package that is not installed
    5  OUTPUT_ERROR        the output could not be written (not a folder, permission
                           denied, disk full); the previous output is left as it was
"""

from __future__ import annotations

OK = 0
FAILED = 1
BAD_INPUT = 2
IMPL_FAILED = 3
MISSING_DEPENDENCY = 4
OUTPUT_ERROR = 5

# What each optional package is, and the extra of mlpgen that installs it.
OPTIONAL = {
    "torch": ("PyTorch", "torch"),
    "matplotlib": ("matplotlib", "plot"),
    "tqdm": ("tqdm", "run"),
}


class MissingDependency(Exception):
    """A command needs a package that is not installed: the line names the extra."""

    def __init__(self, command: str, module: str):
        super().__init__(command, module)
        self.command = command
        self.module = module

    def __str__(self) -> str:
        return self.line()

    def line(self) -> str:
        what, extra = OPTIONAL.get(self.module, (self.module, ""))
        install = (
            f"pip install 'mlpgen[{extra}]'" if extra else f"pip install {self.module}"
        )
        return f"error: mlpgen {self.command} needs {what}: {install}"


def shown(path: object) -> str:
    """A path as an error line shows it: as it is, or quoted when it holds
    line breaks, control characters or other invisible ones."""
    text = str(path)
    return text if text.isprintable() else repr(text)


class OutputError(Exception):
    """The output cannot be written where the command line says (exit 5).

    ``source`` is the spec file the output belongs to (or ""), ``message``
    the rest of the one ``error:`` line.
    """

    status = OUTPUT_ERROR

    def __init__(self, source: str, message: str):
        super().__init__(source, message)
        self.source = source
        self.message = message

    def line(self) -> str:
        head = f"error: {shown(self.source)}: " if self.source else "error: "
        return head + self.message

    def __str__(self) -> str:
        return self.line()


class NotOurs(OutputError):
    """An output folder that mlpgen did not write, which it will not replace (exit 2)."""

    status = BAD_INPUT
