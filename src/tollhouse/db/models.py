"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from tollhouse.db.base import Base
from tollhouse.identity import models as identity_models
from tollhouse.tenancy import models as tenancy_models

metadata = Base.metadata
__all__ = ["identity_models", "metadata", "tenancy_models"]
