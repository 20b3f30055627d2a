"""The README's API section states every limit a request or a batch file can run into, with the value the code
uses and where it is set: each named constant and setting, and each bound of the decoding parameters."""

from __future__ import annotations

import re

import pytest
from conftest import ROOT

from handlers import api
from newsgen import completions, generation, schemas, watermark
from newsgen.batch import inputs, layout
from newsgen.settings import Settings

SOURCES = {
    "schemas": schemas,
    "completions": completions,
    "generation": generation,
    "watermark": watermark,
    "inputs": inputs,
    "layout": layout,
    "api": api,
}
# The settings that limit a request or a batch job (the rest configure the deployment).
LIMIT_SETTINGS = (
    "max_body_bytes",
    "time_margin_ms",
    "default_time_budget_ms",
    "batch_chunk_lines",
    "batch_chunk_tokens",
)
OTHER_LIMITS = {
    "generation": ["MAX_HEALED_TOKENS"],
    "watermark": ["MIN_TOKENS"],
    "layout": ["MAX_KEY_BYTES"],
    "api": ["GATEWAY_TIMEOUT_S"],
}


def limits_table() -> dict[str, str]:
    """`set in` cell → value cell, for each row of the table in README's `## API` section."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("\n## API\n") :]
    section = section[: section.index("\n## ", 1)]
    rows = re.findall(r"^\| (.+?) \| (.+?) \| (.+?) \|$", section, re.MULTILINE)
    table = {where: value for _, value, where in rows if "`" in where}
    assert table, "README's API section has no limits table"
    return table


def spelled(value: float) -> list[str]:
    """How the README may write a number: 1,024 · 0.01 · 16 KiB · 256 MiB · 25,000 ms · 29 s."""
    forms = [f"{value:,}" if isinstance(value, int) else f"{value:g}"]
    if isinstance(value, int) and value >= 1024 and value % 1024 == 0:
        forms += [f"{value // 1024:,} KiB", f"{value // 1024**2:,} MiB"]
    return forms


def named_limits() -> list[tuple[str, float]]:
    """(`module.NAME` or `settings.field`, value) for every limit the code names."""
    found = []
    for module in ("schemas", "completions", "inputs"):
        for name, value in vars(SOURCES[module]).items():
            defined_here = module == "schemas" or name not in vars(schemas)  # not one imported from schemas
            if re.fullmatch(r"M(AX|IN)_[A-Z_]+", name) and isinstance(value, (int, float)) and defined_here:
                found.append((f"{module}.{name}", value))
    found += [(f"{m}.{name}", getattr(SOURCES[m], name)) for m, names in OTHER_LIMITS.items() for name in names]
    defaults = Settings()
    found += [(f"settings.{name}", getattr(defaults, name)) for name in LIMIT_SETTINGS]
    return found


@pytest.mark.parametrize("source, value", named_limits(), ids=lambda v: str(v))
def test_the_readme_states_each_limit_with_its_value(source, value):
    rows = {where: cell for where, cell in limits_table().items() if f"`{source}`" in where}
    assert rows, f"README's API limits table has no row set in `{source}`"
    ((where, cell),) = rows.items()
    names = re.findall(r"`([^`]+)`", where)
    position = names.index(source)
    assert any(form in cell for form in spelled(value)), f"{source} = {value}: the row says {cell!r}"
    if len(names) > 1:  # a row of several: the values in the order of their sources
        numbers = re.findall(r"\d[\d,.]*", cell)
        assert any(form.split()[0] == numbers[position] for form in spelled(value)), (source, cell)


def test_the_readme_states_each_bound_of_the_decoding_parameters():
    cell = limits_table()["`schemas.GenerationParameters`"]
    for name, field in schemas.GenerationParameters.model_json_schema()["properties"].items():
        bounds = next((option for option in field.get("anyOf", [field]) if "maximum" in option), None)
        if bounds is None:
            continue
        low = bounds.get("minimum", bounds.get("exclusiveMinimum"))
        stated = f"`{name}` {spelled(low)[0]}–{spelled(bounds['maximum'])[0]}"
        assert stated in cell, f"{name}: {stated!r} not in the README's row"
        if "exclusiveMinimum" in bounds:
            assert f"{stated} (not {spelled(low)[0]})" in cell, name
