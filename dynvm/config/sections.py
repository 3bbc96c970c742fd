"""Reading INI text: configparser set up for the seed's files, problems with their
location, and one section's values with `${ENV}` expanded and typed getters."""

from __future__ import annotations

import configparser
import difflib
import re
from collections.abc import Mapping

from dynvm.config.digits import parse_float, parse_int
from dynvm.config.model import location

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Problems name the file, line, section and key, never what the file says there: a
# malformed line may be a password (`xen.pw hunter2`, a bare `hunter2`), and the
# reports reach the log, /health and `check-config`.
NOT_SHOWN = " (the line's text is not shown)"
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


class Problems:
    """Collects problems with their location so they can be reported together."""

    def __init__(self, source: str, lines: dict[tuple[str, str | None], int]) -> None:
        self.source = source
        self.lines = lines
        self._errors: list[tuple[int, int, str]] = []
        self._warnings: list[tuple[int, int, str]] = []

    @property
    def errors(self) -> list[str]:
        """In file order, so the report reads top to bottom like the file."""
        return [m for _, _, m in sorted(self._errors)]

    @property
    def warnings(self) -> list[str]:
        return [m for _, _, m in sorted(self._warnings)]

    def _where(self, section: str | None, key: str | None) -> tuple[int, str]:
        return location(self.source, self.lines, section, key)

    def error(self, section: str | None, key: str | None, what: str) -> None:
        line, where = self._where(section, key)
        self._errors.append((line, len(self._errors), where + what))

    def at_line(self, line: int, what: str) -> None:
        self._errors.append((line, len(self._errors), f"{self.source}:{line}: {what}"))

    def warn(self, section: str | None, key: str | None, what: str) -> None:
        line, where = self._where(section, key)
        self._warnings.append((line, len(self._warnings), where + what))

    def count(self) -> int:
        return len(self._errors)


def line_index(text: str) -> dict[tuple[str, str | None], int]:
    """Line numbers of section headers and keys, for messages (first wins)."""
    index: dict[tuple[str, str | None], int] = {}
    section: str | None = None
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and "]" in line:
            section = line[1 : line.rindex("]")]  # as configparser reads it
            index.setdefault((section, None), n)
        elif section is not None and not raw[:1].isspace():
            m = re.match(r"([^=:]+?)\s*[=:]", line)
            if m:
                index.setdefault((section, m.group(1)), n)
    return index


def _key_before_first_section(line: str) -> str:
    """The key of a `key=value` line found before any [section], for the report; a line
    with no `=` or `:` may be anything (a bare password), so it is not named at all."""
    m = re.match(r"\s*([A-Za-z0-9_.<>-]+)\s*[=:]", line)
    return f" ({m.group(1)[:60]} before any [section])" if m else ""


def suggest(word: str, candidates: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def split_list(value: str) -> frozenset[str]:
    return frozenset(p.strip() for p in value.split(",") if p.strip())


class Section:
    """One section's values with `${ENV}` expanded and typed getters that record problems."""

    def __init__(self, name: str, raw: Mapping[str, str], env: Mapping[str, str], p: Problems):
        self.name = name
        self.p = p
        self.raw = dict(raw)
        self.values: dict[str, str] = {}
        for key, value in self.raw.items():
            expanded = self._expand(key, value, env)
            if expanded is not None and not expanded.strip():
                # `host.vms.max.centos=` is a line cut short or a value forgotten, for
                # every key: a key left out takes its default, an empty one is refused.
                from_env = " (its ${...} is empty)" if value.strip() else ""
                self.p.error(self.name, key, f"must not be empty{from_env}")
            elif expanded is not None:
                self.values[key] = expanded

    def _expand(self, key: str, value: str, env: Mapping[str, str]) -> str | None:
        missing: list[str] = []

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                missing.append(m.group(1))
                return ""
            return env[m.group(1)]

        out = _ENV_REF.sub(sub, value)
        for name in missing:
            self.p.error(self.name, key, f"environment variable {name} is not set")
        if "${" in _ENV_REF.sub("", value):
            self.p.error(self.name, key, "malformed ${...} reference (write ${NAME})")
            return None
        return None if missing else out

    def get_str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if key not in self.values:
            if key not in self.raw and required:
                self.p.error(self.name, None, f"missing required key {key}")
            return default
        value = self.values[key].strip()
        if "\n" in value:  # an indented next line continues the value: never meant
            self.p.error(self.name, key, "must be one line (the next line is indented, so it "
                         "was read as part of this value; its text is not shown)")
            return default
        return value

    def get_int(self, key: str, default: int, minimum: int = 1, maximum: int | None = None) -> int:
        value = self.get_str(key)
        if value is None:
            return default
        try:
            n = parse_int(value)
        except ValueError:
            self.p.error(self.name, key, "must be a whole number")
            return default
        if n < minimum or (maximum is not None and n > maximum):
            bound = "a positive number" if minimum == 1 else f"at least {minimum}"
            if maximum is not None:
                bound = f"between {minimum} and {maximum}"
            self.p.error(self.name, key, f"must be {bound}")
            return default
        return n

    def get_float(self, key: str, default: float) -> float:
        value = self.get_str(key)
        if value is None:
            return default
        try:
            x = parse_float(value)
        except ValueError:
            self.p.error(self.name, key, "must be a number of seconds")
            return default
        if not x > 0 or x == float("inf"):
            self.p.error(self.name, key, "must be a positive number")
            return default
        return x

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.get_str(key)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        self.p.error(self.name, key, "must be true or false")
        return default

    def unknown(self, key: str, candidates: list[str] | tuple[str, ...]) -> None:
        self.p.error(self.name, key, "unknown key" + suggest(key, candidates))

    def only(self, known: list[str] | tuple[str, ...]) -> None:
        """Report every key of the section that is not one of `known`."""
        for key in self.raw:
            if key not in known:
                self.unknown(key, known)


def read_ini(text: str, p: Problems) -> configparser.ConfigParser | None:
    parser = configparser.ConfigParser(
        interpolation=None,
        inline_comment_prefixes=(";", "#"),
        comment_prefixes=(";", "#"),
        empty_lines_in_values=False,
        strict=True,
        default_section="\x00no-defaults",  # a literal [DEFAULT] is just an unknown section
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys as written
    try:
        parser.read_string(text, source=p.source)
    except configparser.DuplicateSectionError as e:
        p.at_line(e.lineno or 0, f"[{e.section}] section appears twice")
    except configparser.DuplicateOptionError as e:
        p.at_line(e.lineno or 0, f"[{e.section}] {e.option}: key appears twice in the section")
    except configparser.MissingSectionHeaderError as e:
        p.at_line(e.lineno or 0, "text before the first [section]"
                  + _key_before_first_section(e.line) + NOT_SHOWN)
    except configparser.ParsingError as e:
        for lineno, _ in e.errors:
            p.at_line(lineno, "not a key=value line" + NOT_SHOWN)
    except configparser.Error as e:
        p.error(None, None, f"does not parse ({type(e).__name__}){NOT_SHOWN}")
    else:
        return parser
    return None
