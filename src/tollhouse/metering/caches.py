"""Per-process caches of what the metered path reads on every request but rarely changes.

A metered request (`POST /api/data`, `/gw/{project}/…`) needs the end user's entitled
subscription plan, their tier's limit and, for `/gw`, the project's routes. Each is kept for
CALLER_CACHE_SECONDS (0 = off), like the caller caches in identity:

- another process's change (a replica, the CLI) is seen within that window;
- a change this process commits through any SQLAlchemy session — an ORM flush or a Core
  INSERT/UPDATE/DELETE on the watched table, whoever writes it (the Stripe webhook, the
  console) — empties the caches that depend on that table as soon as the transaction commits,
  so this process sees it on its next request, and is published to the other processes
  (`kit/invalidation.py`), which empty theirs as the message arrives.

Writes are rare (webhooks, console edits), so a write empties the whole cache of that table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import chain
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session, UOWTransaction

from tollhouse.kit.ttl_cache import TTLCache

# Table name → the caches to empty when a write to it commits.
_WATCHED: dict[str, list[TTLCache[Any, Any]]] = {}
_PENDING = "tollhouse.metering.caches.pending"
# Told which watched tables a commit wrote (to tell the other processes).
_COMMITTED: list[Callable[[list[str]], None]] = []


def cleared_on_commit(cache: TTLCache[Any, Any], *tables: str) -> None:
    """Empty `cache` whenever a transaction that wrote one of `tables` commits."""
    for table in tables:
        _WATCHED.setdefault(table, []).append(cache)


def clear_table(name: str | None) -> None:
    """Empty the caches that depend on table `name` (None: every watched cache)."""
    for table, caches in _WATCHED.items():
        if name is None or table == name:
            for cache in caches:
                cache.clear()


def on_tables_committed(listener: Callable[[list[str]], None]) -> Callable[[], None]:
    """Call `listener` with the watched tables each commit wrote; returns its remover."""
    _COMMITTED.append(listener)
    return lambda: _COMMITTED.remove(listener)


def use_clock(clock: Callable[[], float]) -> None:
    """Age every watched cache on `clock` (tests pass one they move by hand). Emptied too:
    what they hold expires on the old clock's scale."""
    for cache in {id(c): c for caches in _WATCHED.values() for c in caches}.values():
        cache.clock = clock
        cache.discard_where(lambda _value: True)


def _note(session: Session, tables: Iterable[str | None]) -> None:
    for name in tables:
        if name in _WATCHED:
            session.info.setdefault(_PENDING, set()).add(name)


@event.listens_for(Session, "do_orm_execute")
def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        _note(state.session, [getattr(table, "name", None)])


@event.listens_for(Session, "after_flush")
def _on_flush(session: Session, _flush: UOWTransaction) -> None:
    changed = chain(session.new, session.dirty, session.deleted)
    _note(session, {getattr(getattr(obj, "__table__", None), "name", None) for obj in changed})


@event.listens_for(Session, "after_commit")
def _on_commit(session: Session) -> None:
    written = sorted(session.info.pop(_PENDING, ()))
    for name in written:
        clear_table(name)
    if written:
        for listener in _COMMITTED:
            listener(written)


@event.listens_for(Session, "after_rollback")
def _on_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)
