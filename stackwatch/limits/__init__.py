"""The limit catalogue: which emission limits apply to a monitored point on a given day.

Data lives in `catalogue.yaml` (source rows, docs/limits.md#catalogue-rows, with programs,
validity dates and evidence status); `load_catalogue()` validates it into frozen `LimitRule`s and
`LimitCatalogue` answers "what applies here, today" for the evaluators and the CLI.
"""

from stackwatch.limits.catalogue import (
    DEFAULT_CATALOGUE_PATH,
    PERMIT_PROGRAM,
    CatalogueError,
    LimitCatalogue,
    OverrideError,
    ReferenceO2ConflictError,
    UnknownPointError,
    UnknownProgramError,
    default_catalogue,
    jurisdiction_covers,
    jurisdiction_for,
    load_catalogue,
    parse_catalogue,
)
from stackwatch.limits.models import (
    DEFAULT_WARNING_FRACTION,
    FACTORS,
    O2_FACTOR,
    Averaging,
    LimitKind,
    LimitRule,
    O2Basis,
    PointType,
    Status,
)

__all__ = [
    "DEFAULT_CATALOGUE_PATH",
    "DEFAULT_WARNING_FRACTION",
    "FACTORS",
    "O2_FACTOR",
    "PERMIT_PROGRAM",
    "Averaging",
    "CatalogueError",
    "LimitCatalogue",
    "LimitKind",
    "LimitRule",
    "O2Basis",
    "OverrideError",
    "PointType",
    "ReferenceO2ConflictError",
    "Status",
    "UnknownPointError",
    "UnknownProgramError",
    "default_catalogue",
    "jurisdiction_covers",
    "jurisdiction_for",
    "load_catalogue",
    "parse_catalogue",
]
