"""Group commit: the rows of concurrent requests in one worker process share one INSERT and
one COMMIT.

A request hands its row to the process's ``GroupWriter`` and waits. If no write is in
progress it becomes the leader: it takes every row waiting (its own included), stores them
with one call of the store function in its own database connection, and hands the results
out. Rows that arrive meanwhile wait for the next leader, chosen among them when the write
finishes. Under load a write carries as many rows as arrived during the previous one; a lone
request writes alone, at once — no timer, no added latency.

Every request returns only after its row is committed: acknowledged means stored. If a
multi-row write fails for any reason other than the database being unreachable, each row is
retried on its own, so one bad row can fail only its own request.
"""

import threading

from django.db import InterfaceError, OperationalError


class _Slot:
    __slots__ = ("row", "done", "lead", "result", "error")

    def __init__(self, row):
        self.row = row
        # Released once to wake the request (as successor or when its write is over): a bare
        # lock is the cheapest one-shot signal.
        self.done = threading.Lock()
        self.done.acquire()
        self.lead = False
        self.result = None
        self.error = None


class GroupWriter:
    def __init__(self, store):
        """``store(rows) -> ids`` writes rows in one transaction and returns their ids in order."""
        self.store = store
        self.lock = threading.Lock()
        self.waiting: list[_Slot] = []
        self.busy = False

    def write(self, row):
        """Store ``row`` (with any rows waiting alongside it); its id once committed."""
        slot = _Slot(row)
        with self.lock:
            self.waiting.append(slot)
            lead = not self.busy
            self.busy = True
        if not lead:
            slot.done.acquire()
            lead = slot.lead  # woken to lead the next write, which includes this row
        if lead:
            self._lead()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def _lead(self):
        with self.lock:
            batch, self.waiting = self.waiting, []
        try:
            self._store(batch)
        finally:
            for slot in batch:  # the write was interrupted (a BaseException): nobody is acknowledged
                if slot.result is None and slot.error is None:
                    slot.error = RuntimeError("the group write was interrupted")
            with self.lock:
                successor = self.waiting[0] if self.waiting else None
                self.busy = successor is not None
            if successor is not None:
                successor.lead = True
            for slot in batch:
                slot.done.release()
            if successor is not None:
                successor.done.release()

    def _store(self, batch):
        try:
            ids = self.store([slot.row for slot in batch])
        except (OperationalError, InterfaceError) as exc:  # the database is unreachable: all fail
            for slot in batch:
                slot.error = exc
            return
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
                return
        else:
            # Committed: from here nothing may be retried (a slot left without an id gets an
            # error in ``_lead``, never a second row).
            for slot, event_id in zip(batch, ids, strict=False):
                slot.result = event_id
            return
        for slot in batch:  # one row may be at fault: each on its own
            try:
                (slot.result,) = self.store([slot.row])
            except Exception as exc:
                slot.error = exc
