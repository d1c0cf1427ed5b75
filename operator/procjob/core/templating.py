"""`{{ ... }}` templates in stage commands, args, env values and built-in stage parameters.

Grammar (deliberately tiny, no code execution): `{{ job.name }}`, `{{ job.namespace }}`,
`{{ job.uid }}`, `{{ stages.NAME.outputs.KEY }}`, and in finally stages `{{ job.status }}` (Succeeded,
Failed or Cancelled: how the stages ended) and `{{ job.reason }}` (the reason they ended with), and
in fanned-out stages (forEach) `{{ item }}` and `{{ item.FIELD }}`.
`check_spec` finds every reference when a job starts, so a template naming an unknown stage, or one
that is not upstream (a finally stage's upstream includes every main stage), is an InvalidSpec
before any pod runs; `render` expands them when an attempt's pod is built, and a missing output key
is a TemplateError.

Rendering is bounded: outputs (up to 4 KiB each) referenced many times could otherwise expand a
small spec into a pod manifest of hundreds of megabytes. Every `render` of one pod draws from one
`Budget` (RENDER_BUDGET bytes of rendered text in all); past it the pod is refused with
`PodTooLarge`, before the large string is ever built. Walks over `with` are iterative and
depth-bounded, so no spec can exhaust the interpreter's recursion limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from procjob.core.dag import Graph
from procjob.models.spec import ProcessingJobSpec

TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
STAGE_REF = re.compile(r"^stages\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.outputs\.([A-Za-z0-9_-]+)$")
JOB_FIELDS = ("name", "namespace", "uid")
FINALLY_FIELDS = ("status", "reason")  # how the stages ended: only finally stages may ask
ITEM_REF = re.compile(r"^item(\.([A-Za-z0-9_-]+))?$")


RENDER_BUDGET = 256 * 1024  # bytes of rendered text one pod may hold (commands, args, env, params)
MAX_WALK_DEPTH = 16  # deeper values are not walked (the schema refuses them long before)


class TemplateError(ValueError):
    """A template that cannot be expanded; the message names the reference."""

    reason = "TemplateError"


class PodTooLarge(TemplateError):
    """The rendered pod would exceed RENDER_BUDGET: refused before it is built."""

    reason = "PodTooLarge"


class Budget:
    """Bytes of rendered text left for one pod (shared by every `render` of that pod)."""

    __slots__ = ("left",)

    def __init__(self, limit: int = RENDER_BUDGET) -> None:
        self.left = limit

    def spend(self, size: int, what: str) -> None:
        self.left -= size
        if self.left < 0:
            raise PodTooLarge(
                f"{what}: the rendered pod would exceed {RENDER_BUDGET // 1024} KiB of commands, args, env "
                "and parameters (templates expand stage outputs; reference fewer or smaller ones)"
            )


@dataclass(frozen=True, slots=True)
class Context:
    job_name: str
    job_namespace: str
    job_uid: str
    outputs: Mapping[str, Mapping[str, Any] | None]  # stage name -> its outputs (None: none written)
    budget: Budget = field(default_factory=Budget)
    ended: tuple[str, str] | None = None  # (job.status, job.reason) for a finally stage
    item: bool = False  # an item of a fanned-out stage: `value` is the item
    value: Any = None


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """Every string inside a JSON-like value with its path, depth-first, without recursion."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, str):
            yield where, item
        elif depth >= MAX_WALK_DEPTH:
            continue
        elif isinstance(item, Mapping):
            stack.extend((v, f"{where}.{k}", depth + 1) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]", depth + 1) for i, v in reversed(list(enumerate(item))))


def templated_strings(spec: ProcessingJobSpec, index: int) -> Iterator[tuple[str, str]]:
    """(field path, text) of every string of stage `index` (of spec.all_stages) that may hold templates."""
    stage = spec.all_stages[index]
    base = spec.stage_path(index)
    yield from _strings(stage.command or [], f"{base}.command")
    yield from _strings(stage.args or [], f"{base}.args")
    for i, env in enumerate(stage.env or []):
        if env.value is not None:
            yield f"{base}.env[{i}].value", env.value
    yield from _strings(stage.with_ or {}, f"{base}.with")
    if isinstance(stage.for_each, str):
        yield f"{base}.forEach", stage.for_each


def upstream(spec: ProcessingJobSpec, index: int) -> set[str]:
    """The stages whose outputs stage `index` (of spec.all_stages) may use: those it waits for; for a
    finally stage also every main stage."""
    main = len(spec.stages)
    if index < main:
        return Graph.of(spec.stages).ancestors(spec.stages[index].name)
    final = spec.finally_ or []
    return {s.name for s in spec.stages} | Graph.of(final).ancestors(final[index - main].name)


def check_spec(spec: ProcessingJobSpec) -> list[str]:
    """Every template problem of the spec, each naming its field."""
    problems: list[str] = []
    stages = spec.all_stages
    names = {s.name for s in stages}
    for index, stage in enumerate(stages):
        allowed = upstream(spec, index)
        final = index >= len(spec.stages)
        for path, text in templated_strings(spec, index):
            for expr in TEMPLATE.findall(text):
                problem = _check_expr(expr, names, allowed, stage.name, final)
                if problem is None and ITEM_REF.match(expr) and not stage.fanned:
                    problem = f"{{{{ {expr} }}}} is known only in stages with forEach"
                if problem:
                    problems.append(f"{path}: {problem}")
    return problems


def _check_expr(expr: str, names: set[str], allowed: set[str], stage: str, final: bool) -> str | None:
    if ITEM_REF.match(expr):
        return None
    if expr.startswith("job."):
        if expr[4:] in FINALLY_FIELDS and not final:
            return f"{{{{ {expr} }}}} is known only in spec.finally stages (after the stages have ended)"
        return None if expr[4:] in (*JOB_FIELDS, *FINALLY_FIELDS) else f"unknown template {{{{ {expr} }}}}"
    match = STAGE_REF.match(expr)
    if not match:
        return f"unknown template {{{{ {expr} }}}} (use job.name, job.namespace, job.uid or stages.NAME.outputs.KEY)"
    ref = match.group(1)
    if ref not in names:
        return f"{{{{ {expr} }}}} names stage {ref!r}, which does not exist"
    if ref not in allowed:
        return f"{{{{ {expr} }}}} names stage {ref!r}, which does not run before stage {stage!r}"
    return None


def _item(expr: str, ctx: Context) -> str:
    """`{{ item }}` (a string as it is, anything else as compact JSON) or `{{ item.FIELD }}`."""
    match = ITEM_REF.match(expr)
    assert match is not None
    field, value = match.group(2), ctx.value
    if field is not None:
        if not isinstance(value, Mapping):
            raise TemplateError(f"{{{{ {expr} }}}}: the item is not an object")
        if field not in value:
            raise TemplateError(f"{{{{ {expr} }}}}: the item has no field {field!r}")
        value = value[field]
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _lookup(expr: str, ctx: Context) -> str:
    if ctx.item and ITEM_REF.match(expr):
        return _item(expr, ctx)
    if expr.startswith("job."):
        field = expr[4:]
        if field == "name":
            return ctx.job_name
        if field == "namespace":
            return ctx.job_namespace
        if field == "uid":
            return ctx.job_uid
        if field in FINALLY_FIELDS and ctx.ended is not None:
            return ctx.ended[FINALLY_FIELDS.index(field)]
        raise TemplateError(f"unknown template {{{{ {expr} }}}}")
    match = STAGE_REF.match(expr)
    if not match:
        raise TemplateError(f"unknown template {{{{ {expr} }}}}")
    stage, key = match.group(1), match.group(3)
    outputs = ctx.outputs.get(stage)
    if outputs is None:
        raise TemplateError(f"{{{{ {expr} }}}}: stage {stage!r} wrote no outputs")
    if key not in outputs:
        raise TemplateError(f"{{{{ {expr} }}}}: stage {stage!r} has no output {key!r}")
    value = outputs[key]
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def render(text: str, ctx: Context, what: str = "template") -> str:
    """Expand the templates of `text`, charging the result to the pod's budget as it grows."""

    def expand(match: re.Match[str]) -> str:
        value = _lookup(match.group(1), ctx)
        ctx.budget.spend(len(value), what)
        return value

    ctx.budget.spend(len(text), what)
    return TEMPLATE.sub(expand, text)


def render_value(value: Any, ctx: Context, what: str = "with", depth: int = 0) -> Any:
    """Render every string inside a JSON-like value (depth-bounded like `_strings`)."""
    if isinstance(value, str):
        return render(value, ctx, what)
    if depth >= MAX_WALK_DEPTH:
        raise TemplateError(f"{what}: nested deeper than {MAX_WALK_DEPTH} levels")
    if isinstance(value, Mapping):
        return {k: render_value(v, ctx, f"{what}.{k}", depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, ctx, f"{what}[{i}]", depth + 1) for i, v in enumerate(value)]
    return value
