"""A project's upstream routes: `/gw/{project}/{path_prefix}…` → `{upstream_url}…`."""

from __future__ import annotations

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tollhouse.db.base import Base, CreatedAt
from tollhouse.kit.ids import new_id


class UpstreamRoute(CreatedAt, Base):
    __tablename__ = "upstream_routes"
    __table_args__ = (
        UniqueConstraint("project_id", "path_prefix"),
        CheckConstraint("units >= 1", name="units_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("upr"))
    project_id: Mapped[str] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # No leading or trailing slash; "" routes everything.
    path_prefix: Mapped[str] = mapped_column(String(200))
    upstream_url: Mapped[str] = mapped_column(String(2000))
    # Comma-separated, upper-case ("GET,POST").
    methods: Mapped[str] = mapped_column(String(100))
    units: Mapped[int] = mapped_column(default=1)
    # Upstream statuses that keep the units counted ("2xx", "2xx,304"): upstreams/charge_rule.py.
    charge_on: Mapped[str] = mapped_column(String(100), default="2xx", server_default="2xx")
