"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from tollhouse.db.base import Base
from tollhouse.identity import models as identity_models
from tollhouse.kit import idempotency
from tollhouse.ledger import models as ledger_models
from tollhouse.tenancy import models as tenancy_models

metadata = Base.metadata
__all__ = ["idempotency", "identity_models", "ledger_models", "metadata", "tenancy_models"]
