"""Every domain's tables, imported in one place so Alembic sees the whole schema."""

from tollhouse.assets import models as asset_models
from tollhouse.billing import models as billing_models
from tollhouse.billing.apple import models as apple_models
from tollhouse.catalog import models as catalog_models
from tollhouse.db.base import Base
from tollhouse.generation import models as generation_models
from tollhouse.identity import models as identity_models
from tollhouse.interactions import models as interaction_models
from tollhouse.kit import idempotency, mail, tasks
from tollhouse.ledger import models as ledger_models
from tollhouse.metering import models as metering_models
from tollhouse.tenancy import models as tenancy_models
from tollhouse.upstreams import models as upstream_models

metadata = Base.metadata
__all__ = [
    "apple_models",
    "asset_models",
    "billing_models",
    "catalog_models",
    "generation_models",
    "idempotency",
    "identity_models",
    "interaction_models",
    "ledger_models",
    "mail",
    "metadata",
    "metering_models",
    "tasks",
    "tenancy_models",
    "upstream_models",
]
