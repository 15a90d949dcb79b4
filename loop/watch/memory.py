"""What the observing Watches keep between evaluations, per process (`observer.watch_memory`).

In memory: each observing Watch's SLIs (plan, baselines, the watch points read so far and the
sequential test's state), so an evaluation reads only the steps since the last one. In the store
(`watch_baselines`, written in the transition of the evaluation that read them complete): the
baselines and plan, so that after a restart a Watch reads its baselines back from there and only
its watch window (two queries a ratio SLI) from Prometheus, instead of every Watch asking for
everything at once. A Watch that leaves `observing` is forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from attribution.records import Deploy
from attribution.store import Store
from attribution.watch_rows import KeptBaselines
from loop.config import ServiceSettings
from observer.detect import DetectorSettings
from observer.observe import Windows, baselines_end
from observer.watch_memory import (
    SliMemory,
    baselines_from_json,
    baselines_json,
    plan_from_json,
    plan_json,
    remember,
)


@dataclass(slots=True)
class WatchMemory:
    """Each observing Watch's `SliMemory` by SLI name, by deploy id; one per app."""

    _watches: dict[str, dict[str, SliMemory]] = field(default_factory=dict)
    _deploys: dict[str, Deploy] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._watches)

    async def recall(
        self,
        store: Store,
        deploy_id: str,
        *,
        service: ServiceSettings,
        windows: Windows,
        settings: DetectorSettings,
        late: float,
        kept: bool = True,
    ) -> dict[str, SliMemory]:
        """The Watch's memory: kept in this process, else rebuilt from its kept baselines (a
        restart), else empty (its first evaluation reads everything). `kept=False`: the Watch
        has kept no evaluation, so no baselines either, and the store is not asked (at 1,000
        deploys at once, a read each on the writer thread while it is busiest)."""
        memory = self._watches.get(deploy_id)
        if memory is not None:
            return memory
        slis = {sli.name: sli for sli in service.slis}
        ends = baselines_end(windows)
        rows = await store.watches.kept_baselines(deploy_id) if kept else []
        memory = {}
        for row in rows:
            sli = slis.get(row.sli)
            if sli is None:  # an SLI no longer in the config: nothing to judge it by
                continue
            plan = plan_from_json(row.plan)
            if plan.configured_step != windows.step or set(row.spans) != set(ends):
                continue  # the config's step or baselines changed since: read them again
            sli_memory = remember(
                sli, plan, baselines_from_json(row.baselines), row.spans,
                final_at={label: end + late for label, end in ends.items()},
                read_at=row.read_at, horizon=windows.horizon, settings=settings,
            )  # fmt: skip
            sli_memory.saved = True
            memory[row.sli] = sli_memory
        self._watches[deploy_id] = memory
        return memory

    def unsaved(self, deploy_id: str) -> list[KeptBaselines]:
        """The rows of the Watch's baselines read complete and not yet in the store."""
        return [
            KeptBaselines(deploy_id, name, plan_json(m.plan), baselines_json(m.baselines),
                          m.spans, m.read_at)
            for name, m in self._watches.get(deploy_id, {}).items()
            if not m.saved and not m.stale() and m.baselines
        ]  # fmt: skip

    def saved(self, deploy_id: str, rows: list[KeptBaselines]) -> None:
        """Those rows were written with the Watch's transition."""
        kept = self._watches.get(deploy_id, {})
        for row in rows:
            if row.sli in kept:
                kept[row.sli].saved = True

    def deploy(self, deploy_id: str) -> Deploy | None:
        """The observing Watch's deploy, kept since its first evaluation (deploys never
        change), so an evaluation need not read it."""
        return self._deploys.get(deploy_id)

    def keep_deploy(self, deploy: Deploy) -> None:
        self._deploys[deploy.id] = deploy

    def forget(self, deploy_id: str) -> None:
        self._watches.pop(deploy_id, None)
        self._deploys.pop(deploy_id, None)
