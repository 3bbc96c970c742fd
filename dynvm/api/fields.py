"""What one query parameter of the legacy routes may be, and what a bad one is told.

Each type here parses and checks a single value (a count, a name, a list of
labels) and raises ValueError with a message naming what is allowed and
echoing what was given; `dynvm.api.validation` puts them together into one
model per route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator

from dynvm.api.formatting import echo
from dynvm.config.digits import parse_int

MAX_COUNT = 100
MAX_NAME_LEN = 64
MAX_CPUS = 256
MIN_MEM_BYTES = 128 * 2**20
MAX_MEM_BYTES = 4 * 2**40
MAX_MINUTES = 525_600  # one year; the service caps leases further (vm.expiry.minutes)
MAX_LABELS = 32

NAME_RE = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{MAX_NAME_LEN - 1}}}")
LABEL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
STATE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:()#-]{0,127}")

TRUE_WORDS = frozenset({"true", "1", "yes"})
FALSE_WORDS = frozenset({"false", "0", "no"})


def shown(value: Any) -> str:
    """The offending value, quoted, escaped and shortened, for the error message."""
    return "'" + echo(str(value), 40) + "'"


def int_parser(low: int, high: int, unit: str = "") -> Callable[[Any], int]:
    what = f"an integer from {low} to {high}{unit}"

    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"must be {what}")
        if isinstance(value, int):
            number = value
        else:
            try:  # ASCII digits only: int() would take '١' or '1_0'
                number = parse_int(str(value))
            except ValueError:
                raise ValueError(f"must be {what} (got {shown(value)})") from None
        if not low <= number <= high:
            raise ValueError(f"must be {what} (got {number})")
        return number

    return parse


def parse_bool(value: Any) -> bool:
    """The words Jenkins jobs use for flags; anything else is refused, not guessed."""
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"must be one of true, false, 1, 0, yes, no (got {shown(value)})")


def check_name(value: Any) -> str:
    text = str(value)
    if ".." in text or not NAME_RE.fullmatch(text):
        raise ValueError(
            f"a VM name must be 1 to {MAX_NAME_LEN} characters of letters, digits, '_', '.' "
            f"or '-', start with a letter or digit and not contain '..' (got {shown(text)})"
        )
    return text


def parse_labels(value: Any) -> frozenset[str]:
    if isinstance(value, frozenset):
        return value
    parts = [p.strip() for p in str(value).split(",")]
    labels = frozenset(p for p in parts if p)
    if len(labels) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} labels are allowed")
    for label in labels:
        if not LABEL_RE.fullmatch(label):
            raise ValueError(
                "must be a comma-separated list of labels made of letters, digits, '_', '.' "
                f"or '-' (got {shown(label)})"
            )
    return labels


def check_network(value: Any) -> str:
    text = str(value).strip()
    if not NETWORK_RE.fullmatch(text):
        raise ValueError(
            "must be a network device or name of letters, digits, spaces and _.:()#- "
            f"(got {shown(value)})"
        )
    return text


def lower_choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        word = str(value).strip().lower()
        if word not in choices:
            raise ValueError(f"must be one of {', '.join(choices)} (got {shown(value)})")
        return word

    return parse


Count = Annotated[int, BeforeValidator(int_parser(1, MAX_COUNT))]
Cpus = Annotated[int, BeforeValidator(int_parser(1, MAX_CPUS))]
MemBytes = Annotated[int, BeforeValidator(int_parser(MIN_MEM_BYTES, MAX_MEM_BYTES, " bytes"))]
Minutes = Annotated[int, BeforeValidator(int_parser(1, MAX_MINUTES, " minutes"))]
MinutesOrZero = Annotated[int, BeforeValidator(int_parser(0, MAX_MINUTES, " minutes"))]
Seconds = Annotated[int, BeforeValidator(int_parser(0, MAX_MINUTES * 60, " seconds"))]
HostRef = Annotated[int, BeforeValidator(int_parser(0, 10**6))]
Flag = Annotated[bool, BeforeValidator(parse_bool)]
Name = Annotated[str, BeforeValidator(check_name)]
Labels = Annotated[frozenset[str], BeforeValidator(parse_labels)]
NetworkId = Annotated[str, BeforeValidator(check_network)]
FORMATS = ("servermanager", "short", "detailed")  # short: the seed's name for the IP list
Format = Annotated[
    Literal["servermanager", "short", "detailed"],
    BeforeValidator(lower_choice(FORMATS)),
]
ExpiryBase = Annotated[Literal["created", "now"], BeforeValidator(lower_choice(("created", "now")))]


def parse_static_pools(value: Any) -> tuple[str, ...]:
    """pools=a,b: the static server pools new VMs join, in the order given, no repeats."""
    if isinstance(value, tuple):
        return value
    names: list[str] = []
    for part in (p.strip() for p in str(value).split(",")):
        if not part or part in names:
            continue
        if not LABEL_RE.fullmatch(part):
            raise ValueError("must be a comma-separated list of pool names made of letters, "
                             f"digits, '_', '.' or '-' (got {shown(part)})")
        names.append(part)
    if len(names) > MAX_LABELS:
        raise ValueError(f"at most {MAX_LABELS} pools are allowed")
    return tuple(names)


StaticPoolNames = Annotated[tuple[str, ...], BeforeValidator(parse_static_pools)]


def check_state(value: Any) -> str:
    text = str(value)
    if not STATE_RE.fullmatch(text):
        raise ValueError(
            f"must be 1 to 32 letters, digits, '_' or '-' (got {shown(text)})"
        )
    return text


State = Annotated[str, BeforeValidator(check_state)]
