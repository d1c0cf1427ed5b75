"""Leader election over a Lease (client-go's timings: lease 15 s, renew deadline 10 s, retry 2 s).

Every replica watches and keeps its caches warm; only the leader reconciles and writes. A
candidate tries to take the Lease every `retry` seconds; the leader renews it as often. A leader
that has not renewed successfully for `renew_deadline` seconds calls `on_lost` — which stops the
process, as client-go does — so it stops writing before any other candidate may take the Lease
(`lease` > `renew_deadline`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import aiohttp

from procjob.adapters.kube import ApiError
from procjob.adapters.lease import Requester, get_lease, write_lease
from procjob.core.leadership import claimed, may_take

log = logging.getLogger("procjob.leader")

LEASE_NAME = "procjob-operator"


@dataclass(frozen=True, slots=True)
class Timings:
    lease: float = 15.0
    renew_deadline: float = 10.0
    retry: float = 2.0


class LeaderElector:
    def __init__(
        self,
        client: Requester,
        namespace: str,
        identity: str,
        *,
        on_started: Callable[[], Awaitable[None]],
        on_lost: Callable[[], None],
        timings: Timings = Timings(),
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        name: str = LEASE_NAME,
    ) -> None:
        self.client, self.namespace, self.identity, self.name = client, namespace, identity, name
        self.on_started, self.on_lost = on_started, on_lost
        self.timings, self.clock, self.monotonic, self.sleep = timings, clock, monotonic, sleep
        self.leading = False
        self._renewed_at = 0.0

    async def run(self) -> None:
        """Forever: try to lead; once leading, renew; stop the process when renewals fail."""
        while True:
            ok = await self._try()
            now = self.monotonic()
            if ok:
                self._renewed_at = now
                if not self.leading:
                    self.leading = True
                    log.info("leader election: %s leads (lease %s/%s)", self.identity, self.namespace, self.name)
                    await self.on_started()
            elif self.leading and now - self._renewed_at >= self.timings.renew_deadline:
                log.error(
                    "leader election: %s could not renew within %.0fs; stopping", self.identity, now - self._renewed_at
                )
                self.leading = False
                self.on_lost()
                return
            await self.sleep(self.timings.retry)

    async def _try(self) -> bool:
        """One attempt to take or renew the Lease; False when someone else holds it or the API
        server did not answer (a 409 means another candidate wrote first)."""
        try:
            record = await get_lease(self.client, self.namespace, self.name)
            now = self.clock()
            if not may_take(record, self.identity, now):
                return False
            duration = int(timedelta(seconds=self.timings.lease).total_seconds())
            await write_lease(self.client, self.namespace, self.name, claimed(record, self.identity, now, duration))
        except (ApiError, OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.debug("leader election: %s", exc)
            return False
        return True
