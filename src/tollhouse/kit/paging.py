"""The one definition of paging parameters: every page, offset and limit is bounded here.

Unbounded, `page=2**63` overflows the database's 64-bit OFFSET (a 500 on both backends).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_PAGE = 1_000_000
MAX_OFFSET = 1_000_000_000
MAX_PAGE_SIZE = 100

Page = Annotated[int, Query(ge=1, le=MAX_PAGE)]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
Limit = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
