"""The graph of a job's stages: who waits for whom, in which order a pass looks at them, what a cycle is.

Pure and small: a `Graph` is built from the spec's stages (models.flow says what `dependsOn` means:
unset is the stage listed before, so a job without dependsOn is a chain) and answers the questions
the stage machine, templates and validation ask. Main stages and finally stages are two graphs;
finally stages run after the whole main graph has ended.

The order is topological and stable: among the stages ready at a point, the one listed first comes
first. For a chain that is the spec order, so a pass that sees a stage succeed starts the next one
in the same pass, as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from procjob.models.flow import Named


def upstream_of(stages: Sequence[Named]) -> dict[str, tuple[str, ...]]:
    """Each stage's direct upstream: its dependsOn, or the stage listed before it when unset."""
    deps: dict[str, tuple[str, ...]] = {}
    for index, stage in enumerate(stages):
        if stage.depends_on is not None:
            deps[stage.name] = tuple(dict.fromkeys(stage.depends_on))
        else:
            deps[stage.name] = (stages[index - 1].name,) if index else ()
    return deps


@dataclass(frozen=True, slots=True)
class Graph:
    """Stages (names, in spec order) and their direct upstream stages."""

    names: tuple[str, ...]
    deps: Mapping[str, tuple[str, ...]]

    @classmethod
    def of(cls, stages: Sequence[Named]) -> Graph:
        return cls(tuple(s.name for s in stages), upstream_of(stages))

    def order(self) -> list[str]:
        """Topological order, ties broken by spec order; stages on a cycle (refused by validation) last."""
        position = {name: i for i, name in enumerate(self.names)}
        waiting = {name: {d for d in self.deps.get(name, ()) if d in position} for name in self.names}
        done: list[str] = []
        placed: set[str] = set()
        while len(done) < len(self.names):
            ready = [n for n in self.names if n not in placed and waiting[n] <= placed]
            if not ready:
                return done + [n for n in self.names if n not in placed]
            first = min(ready, key=position.__getitem__)
            done.append(first)
            placed.add(first)
        return done

    def ancestors(self, name: str) -> set[str]:
        """Every stage `name` waits for, directly or not."""
        seen: set[str] = set()
        stack = list(self.deps.get(name, ()))
        while stack:
            item = stack.pop()
            if item not in seen:
                seen.add(item)
                stack.extend(self.deps.get(item, ()))
        return seen

    def cycles(self) -> list[list[str]]:
        """Each cycle once, as the stages on it (first the one listed first), found without recursion."""
        position = {name: i for i, name in enumerate(self.names)}
        state: dict[str, int] = {}  # 1: on the current path, 2: done
        found: list[list[str]] = []
        for root in self.names:
            if root in state:
                continue
            path: list[str] = []
            stack: list[tuple[str, Iterable[str]]] = [(root, iter(self.deps.get(root, ())))]
            state[root] = 1
            path.append(root)
            while stack:
                node, children = stack[-1]
                child = next((c for c in children if c in position), None)
                if child is None:
                    stack.pop()
                    path.pop()
                    state[node] = 2
                elif state.get(child) == 1:
                    loop = path[path.index(child) :]
                    start = min(range(len(loop)), key=lambda i: position[loop[i]])
                    found.append(loop[start:] + loop[:start])
                elif child not in state:
                    state[child] = 1
                    path.append(child)
                    stack.append((child, iter(self.deps.get(child, ()))))
        return found


def cycle_problems(stages: Sequence[Named], field: str) -> list[str]:
    """One problem per cycle among `spec.<field>`, naming its stages (the schema cannot see cycles)."""
    index = {s.name: i for i, s in enumerate(stages)}
    problems = []
    for loop in Graph.of(stages).cycles():
        first = loop[0]
        chain = " waits for ".join([*loop, first])
        problems.append(
            f"spec.{field}[{index[first]}].dependsOn: stage {first!r} is on a dependency cycle ({chain}), "
            "so it could never start"
        )
    return problems
