"""What is wrong with binlake's settings, one line per problem, naming where it was set.

pydantic-settings ignores a `BINLAKE_*` variable that is no setting, so a typo such as
`BINLAKE_STORAG_URL` would leave the lake at its default place without a word;
`environment_problems` names it and the setting it was probably meant to be. A pydantic
ValidationError becomes `validation_problems`: `BINLAKE_MYSQL__PORT='abc': not an integer`.
Secrets show as `***` and URLs without their credentials.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

from pydantic import BaseModel, SecretStr, ValidationError

from binlake.errors import ConfigurationError

ENV_PREFIX = "BINLAKE_"
NESTED_DELIMITER = "__"
CONFIG_FILE_ENV = "BINLAKE_CONFIG"

# BINLAKE_* variables binlake reads besides its settings: the settings file, the failpoints
# (binlake.failpoints.ENV_VAR, not imported: that module parses the environment at import),
# docker-compose's key handed on as BINLAKE_SILVER__PII_KEY, and the test suite's knobs.
OTHER_VARIABLES = frozenset(
    {
        CONFIG_FILE_ENV,
        "BINLAKE_FAILPOINTS",
        "BINLAKE_PII_KEY",
        "BINLAKE_CRASH_SEED",
        "BINLAKE_TEST_RESYNC_ROWS",
    }
)


class InvalidSettings(ConfigurationError):
    """Settings that cannot be loaded; `problems` holds one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class SettingVariable:
    """One environment variable that sets a setting (a whole group is one too, as JSON)."""

    name: str  # BINLAKE_MYSQL__PORT
    path: tuple[str, ...]  # ("mysql", "port")
    secret: bool
    json_value: bool  # a list, dict or group: the variable holds JSON
    group: bool  # a settings group: its fields have variables of their own

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def setting_variables(model: type[BaseModel]) -> dict[str, SettingVariable]:
    """Every variable that sets a field of `model` (a Settings class), by upper-case name."""
    return {v.name: v for v in _variables(model, ())}


def _variables(model: type[BaseModel], parent: tuple[str, ...]) -> Iterator[SettingVariable]:
    for field_name, field in model.model_fields.items():
        path = (*parent, field_name)
        group = _model_in(field.annotation)
        yield SettingVariable(
            name=ENV_PREFIX + NESTED_DELIMITER.join(path).upper(),
            path=path,
            secret=_holds(field.annotation, SecretStr),
            json_value=group is not None or _is_container(field.annotation),
            group=group is not None,
        )
        if group is not None and not parent:  # groups nest one level: BINLAKE_<GROUP>__<FIELD>
            yield from _variables(group, path)


def environment_problems(model: type[BaseModel], environ: Mapping[str, str]) -> list[str]:
    """What pydantic-settings would ignore or misreport in `environ`: a `BINLAKE_*` variable
    that is no setting (with the nearest setting's name), a JSON setting that is not JSON."""
    known = setting_variables(model)
    problems = []
    for raw_name, value in sorted(environ.items()):
        name = raw_name.upper()  # pydantic-settings matches names case-insensitively
        if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES:
            continue
        variable = known.get(name)
        if variable is None:
            if not _inside_json_setting(name, known):
                problems.append(_unknown(raw_name, [*known, *OTHER_VARIABLES]))
            continue
        if variable.json_value and value.strip():
            try:
                json.loads(value)
            except ValueError:
                shown = _shown(value, _holds_secret(variable, known))
                problems.append(f"{raw_name}={shown}: not JSON{_example(variable)}")
    return problems


def _inside_json_setting(name: str, known: dict[str, SettingVariable]) -> bool:
    """BINLAKE_CONNECT__COLUMN_TRUNCATE_TO_LENGTH_CHARS__<key> and the like: pydantic-settings
    reads a key of a dict setting from a variable of its own (a group's fields are settings of
    their own, known by name)."""
    return any(
        name.startswith(v.name + NESTED_DELIMITER)
        for v in known.values()
        if v.json_value and not v.group
    )


def _holds_secret(variable: SettingVariable, known: dict[str, SettingVariable]) -> bool:
    """The variable is a secret or a group holding one (BINLAKE_MYSQL='{"password": ...}')."""
    return any(v.secret for v in known.values() if v.path[: len(variable.path)] == variable.path)


def _unknown(name: str, candidates: list[str]) -> str:
    # Compared without the prefix every candidate shares, which would make any two look alike.
    closest = difflib.get_close_matches(
        name.upper().removeprefix(ENV_PREFIX),
        [candidate.removeprefix(ENV_PREFIX) for candidate in candidates],
        n=1,
        cutoff=0.6,
    )
    hint = f"; did you mean {ENV_PREFIX}{closest[0]}?" if closest else ""
    return f"{name} is not a binlake setting{hint}"


def _example(variable: SettingVariable) -> str:
    if variable.path[-1] in ("tables", "databases") or variable.dotted.endswith("_list"):
        return ' (a JSON list, e.g. ["a", "b"])'
    return " (a JSON list or object)"


def validation_problems(
    error: ValidationError,
    model: type[BaseModel],
    environ: Mapping[str, str],
    *,
    config_file: str | None = None,
    overrides: Mapping[str, object] | None = None,
) -> list[str]:
    """One line per error of `error`: where the value was set (the variable, the settings
    file or an argument), the value (secrets masked) and what is wrong with it."""
    known = setting_variables(model)
    by_upper = {name.upper(): value for name, value in environ.items()}
    lines = []
    for item in error.errors(include_url=False):
        loc = tuple(str(part) for part in item["loc"])
        reason = _reason(item, known)
        if not loc:  # a check across fields: its message names them
            lines.append(reason)
            continue
        lines.append(f"{_where(loc, item, known, by_upper, config_file, overrides)}: {reason}")
    return lines


def _where(
    loc: tuple[str, ...],
    item: Mapping[str, typing.Any],
    known: dict[str, SettingVariable],
    environ: Mapping[str, str],
    config_file: str | None,
    overrides: Mapping[str, object] | None,
) -> str:
    dotted = ".".join(loc)
    secret = any(v.secret for v in known.values() if loc[: len(v.path)] == v.path)
    if overrides and loc[0] in overrides:
        return f"{dotted}={_shown(item.get('input'), secret)}"
    # The longest variable naming this field or a group holding it (BINLAKE_MYSQL='{...}').
    for depth in range(min(len(loc), 2), 0, -1):
        variable = known.get(ENV_PREFIX + NESTED_DELIMITER.join(loc[:depth]).upper())
        if variable is not None and variable.name in environ:
            rest = loc[depth:]
            inner = "".join(f" (item {p})" if p.isdigit() else f" ({p})" for p in rest)
            shown = _shown(environ[variable.name], secret or _holds_secret(variable, known))
            return f"{variable.name}={shown}{inner}"
    value = _shown(item.get("input"), secret) if "input" in item else "?"
    if config_file:
        return f"{dotted}={value} in {config_file}"
    return f"{dotted}={value}"


_SHORT_REASONS = {
    "int_parsing": "not an integer",
    "int_type": "not an integer",
    "int_from_float": "not an integer",
    "float_parsing": "not a number",
    "float_type": "not a number",
    "bool_parsing": "not a boolean (true or false)",
    "bool_type": "not a boolean (true or false)",
    "string_type": "not a string",
    "list_type": 'not a list (JSON, e.g. ["a", "b"])',
    "dict_type": "not a mapping (a JSON object)",
    "json_invalid": "not valid JSON",
    "missing": "required",
}
_BOUNDS = {
    "greater_than_equal": ("ge", ">="),
    "greater_than": ("gt", ">"),
    "less_than_equal": ("le", "<="),
    "less_than": ("lt", "<"),
}


def _reason(item: Mapping[str, typing.Any], known: dict[str, SettingVariable]) -> str:
    kind = item["type"]
    ctx = item.get("ctx") or {}
    if kind in _SHORT_REASONS:
        return _SHORT_REASONS[kind]
    if kind in _BOUNDS:
        key, sign = _BOUNDS[kind]
        return f"must be {sign} {ctx.get(key)}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind == "extra_forbidden":
        dotted = ".".join(str(part) for part in item["loc"])
        closest = difflib.get_close_matches(
            dotted, [v.dotted for v in known.values()], n=1, cutoff=0.6
        )
        return "not a setting" + (f"; did you mean {closest[0]}?" if closest else "")
    message = str(item.get("msg", kind))
    return message.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _shown(value: object, secret: bool) -> str:
    """`value` as it may be printed: a secret as ***, a URL without its credentials."""
    if secret:
        return "'***'" if value not in (None, "") else "''"
    if isinstance(value, str):
        return repr(without_credentials(value))
    return repr(value)


def without_credentials(url: str) -> str:
    """`url` with any user:password@ part replaced by ***@, for messages."""
    parsed = urlparse(url)
    if "@" not in parsed.netloc:
        return url
    return parsed._replace(netloc="***@" + parsed.netloc.rsplit("@", 1)[1]).geturl()


def _model_in(annotation: object) -> type[BaseModel] | None:
    for candidate in _alternatives(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _holds(annotation: object, kind: type) -> bool:
    return any(candidate is kind for candidate in _alternatives(annotation))


def _is_container(annotation: object) -> bool:
    return any(
        typing.get_origin(candidate) in (list, dict, set, tuple) or candidate in (list, dict)
        for candidate in _alternatives(annotation)
    )


def _alternatives(annotation: object) -> list[object]:
    """The types an annotation allows: `int | None` -> [int, None]."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return list(typing.get_args(annotation))
    return [annotation]
