"""Faust's aiokafka transport, with a cheaper per-message hand-off for the bronze worker.

Profiling the worker (benchmarks/README.md) put two thirds of its time in Faust's consumer, not
in the agent: for every message, `Consumer._drain_messages` runs the delivery through
`Service.wait_first(callback(message), suspend_flow.wait())`, i.e. four new asyncio tasks and an
`asyncio.wait`, only so that a delivery blocked on a full stream buffer is abandoned when a
rebalance suspends the flow. A do-nothing agent reads ~10k events/s that way and ~22k with the
hand-off below.

`BronzeConsumer._drain_messages` is Faust 0.15's loop with these changes: while the flow is not
suspended it awaits the delivery directly. A delivery still blocked when a rebalance starts is
not abandoned but completes once the flow resumes; Faust's stream then skips it, as it skips
every event of an older consumer generation, so no agent sees it and it is fetched again from
the committed offset by whoever owns the partition. A record that comes while the flow is
suspended is not delivered at all (Faust abandoned it but moved its read offset on), and after
such a batch, or one cut short by a new generation, the consumer goes back to the committed
offsets, so nothing fetched and undelivered stays behind its position.

`BronzeConsumer.subscribe` never asks aiokafka for an empty subscription (which it refuses with
an error that stops the worker): with Faust's leader topic off, the app's topics are only the
CDC topics found so far, and `BronzeApp.on_start` waits for the first one.

`_drain_messages` also records the offsets between two deliveries as a gap that counts as acked
(see the comment there): with transactions, every commit marker is such an offset.

`BronzeConsumer.partition_progress` reports, per assigned partition, what was delivered and what
the broker holds, for `streams.stall_watch` to notice records that wait and are never delivered.

`ReadCommittedConsumerThread` reads with `isolation.level=read_committed`: Kafka Connect writes
Debezium's records in transactions (exactly-once source, KIP-618), and a record of a transaction
aborted by a crashed worker must never reach bronze. Faust ties that isolation level to its own
exactly-once mode, which would also make the dead-letter producer transactional.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any, ClassVar

import aiokafka.consumer.consumer as aiokafka_consumer
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from binlake import failpoints
from streams.stall_watch import PartitionProgress

log = logging.getLogger(__name__)


# Yield to the event loop after this many messages of one fetch (Faust's own figure).
YIELD_EVERY_MESSAGES = 100


class ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka_consumer.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka hands the level to its fetcher when the consumer starts, after this.
        consumer._isolation_level = "read_committed"
        return consumer


class BronzeConsumer(faust_aiokafka.Consumer):
    # Set by `getmany` when it fetched a record it did not hand out (see there).
    fetched_undelivered = False

    def _new_consumer_thread(self) -> ReadCommittedConsumerThread:
        return ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def subscribe(self, topics: Iterable[str]) -> None:
        names = set(topics)
        if not names:
            log.info("no topic to subscribe to yet; waiting for the first CDC topic")
            return
        await super().subscribe(names)

    async def partition_progress(self) -> dict[TP, PartitionProgress]:  # pragma: no cover
        """Delivered, committed, position and last stable offset of each assigned partition;
        empty while a rebalance holds the flow (its seek moves them all)."""
        assigned = self.assignment()
        if not assigned or not self.flow_active:
            return {}
        # read_committed: the end offsets are the last stable offsets.
        last_stable = await self.highwaters(*assigned)
        progress: dict[TP, PartitionProgress] = {}
        for tp in assigned:
            if tp not in last_stable:
                continue
            seen = PartitionProgress(
                delivered=self._read_offset.get(tp),
                committed=self._committed_offset.get(tp),
                position=None,
                last_stable=last_stable[tp],
            )
            # The fetch position (a call into the consumer's thread) matters only where records
            # wait: idle partitions, often most of them, are not asked.
            if seen.waiting():
                seen = dataclasses.replace(seen, position=await self.position(tp))
            progress[tp] = seen
        return progress

    async def seek_back(self, tps: Iterable[TP]) -> None:  # pragma: no cover - needs a broker
        """Seek `tps` back to their committed offsets, or to their first offset if the group has
        committed none (Faust's `perform_seek` leaves those where they are)."""
        tps = list(tps)
        uncommitted = [tp for tp in tps if self._committed_offset.get(tp) is None]
        earliest = await self.earliest_offsets(*uncommitted) if uncommitted else {}
        for tp in tps:
            committed = self._committed_offset.get(tp)
            await self.seek(tp, committed if committed is not None else earliest[tp])

    async def getmany(self, timeout: float) -> Any:  # pragma: no cover - needs a broker
        """Faust 0.15's `Consumer.getmany`, except that a record it does not yield is noted.

        Faust drops, without a word, a fetched record of a partition that is not active while
        the batch is handed out (Recovery pauses every partition during a rebalance, and the
        active set is changed in place under the running loop), and stops at a new generation
        or a suspended flow. The consumer's position is past those records: `fetched_undelivered`
        tells `_drain_messages` to seek back, or the partition stalls until the next rebalance
        (seen in CI: a new topic's third record waited seven minutes).
        """
        records, active_partitions = await self._wait_next_records(timeout)
        generation_id = self.app.consumer_generation_id
        if records is None or self.should_stop:
            return
        if not self.flow_active:
            self.fetched_undelivered = True  # Faust seeks back here too
            return
        to_message = self._to_message
        # A partition with a record held back yields none after it in this batch: the drain
        # loop would take the offsets between as a gap (transaction markers) and commit them.
        held_back: set[TP] = set()
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                self.fetched_undelivered = True
                break
            active = (
                active_partitions is None
                or tp in active_partitions
                or tp in self._buffered_partitions
            )
            if active and tp not in held_back:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)
            else:
                held_back.add(tp)
                self.fetched_undelivered = True

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover - needs a broker
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        flow_suspended = self.suspend_flow.is_set
        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        sleep = asyncio.sleep
        since_yield = 0
        lose_a_batch = failpoints.armed(failpoints.LOSE_FETCHED)
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(CONSUMER_FETCHING)
                generation = self.app.consumer_generation_id
                undelivered = False
                self.fetched_undelivered = False
                batch = getmany(timeout=1.0)
                await self.sleep(0)
                if lose_a_batch and not self.should_stop:
                    lost = [message async for _, message in batch]
                    if lost and failpoints.fault(failpoints.LOSE_FETCHED):
                        lose_a_batch = False
                        continue
                    batch = _replay(lost)
                if not self.should_stop:
                    async for tp, message in batch:
                        since_yield += 1
                        if since_yield > YIELD_EVERY_MESSAGES:
                            await sleep(0)
                            since_yield = 0
                        offset = message.offset
                        read_offset = get_read_offset(tp)
                        if read_offset is not None and offset < read_offset:
                            continue  # already delivered (a re-fetch after a seek)
                        # Offsets skipped between two deliveries (transaction markers, aborted
                        # records) count as acked, so commits move past them. Faust's own loop
                        # puts the delivered offset itself into the gap too: acked twice, it
                        # splits the run of consecutive acks, and each commit then advanced by
                        # one transaction only (the group fell minutes behind bronze).
                        gap = read_offset is not None and offset - read_offset > 1
                        if gap and acks_enabled_for(message.topic):
                            await self._add_gap(tp, read_offset + 1, offset - 1)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        if flow_suspended():
                            # A rebalance is under way: not delivered now, fetched again below.
                            undelivered = True
                            continue
                        await callback(message)
                        set_read_offset(tp, offset)
                    # Records fetched but not delivered (the flow was suspended, or Faust's
                    # getmany stopped yielding at a new generation) lie behind the consumer's
                    # position: unless it is moved back they are never delivered, and the
                    # partition stalls (seen: a new topic's rebalance left five of its first
                    # six records undelivered for good). Back to the committed offsets; what
                    # is delivered twice, the bronze writers release as already handled.
                    undelivered = undelivered or self.fetched_undelivered
                    if undelivered or generation != self.app.consumer_generation_id:
                        try:
                            await self.perform_seek()
                        except Exception as exc:  # noqa: BLE001 - as Faust's own getmany
                            self.log.warning("seek back to committed offsets failed: %r", exc)
                unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception:
            self.log.exception("Drain messages raised")
            raise
        finally:
            unset_flag(CONSUMER_FETCHING)


async def _replay(messages: list[Any]) -> Any:
    """The (tp, message) pairs of a batch already read, for the fault injection above."""
    for message in messages:
        yield message.tp, message


class BronzeTransport(faust_aiokafka.Transport):
    Consumer: ClassVar[type] = BronzeConsumer
