"""Imports every table of the exchange so Base.metadata holds them (Alembic and tests use it).

The scheduler's own tables, its lease and housekeeping's marks, are declared beside it in
`feeds` (feeds/lease.py, feeds/housekeeping.py), which the exchange may not import; the
migrations create them like every other table.
"""

from exchange.agreement import models as agreement_models  # noqa: F401
from exchange.audit import models as audit_models  # noqa: F401
from exchange.auth import models as auth_models  # noqa: F401
from exchange.database.core import Base
from exchange.disclosure import models as disclosure_models  # noqa: F401
from exchange.feed import models as feed_models  # noqa: F401
from exchange.intel import models as intel_models  # noqa: F401
from exchange.partner import models as partner_models  # noqa: F401
from exchange.peer import models as peer_models  # noqa: F401
from exchange.push import models as push_models  # noqa: F401
from exchange.sharing import models as sharing_models  # noqa: F401
from exchange.ui import models as ui_models  # noqa: F401

metadata = Base.metadata
