"""The one exception hierarchy of mlpipeline.

Every error raised on purpose by the package derives from :class:`MlpipelineError`
and carries a stable ``code`` (``MLP-…``) so that callers that cannot parse
prose (the CLI's exit codes, the HTTP API's status codes, the IRIS bridge's
``%Status``) can act on it. Messages say what is wrong and how to fix it.

::

    MlpipelineError                      MLP-000  (exit 1)
    ├── ConfigError                      MLP-100  settings or feature-set definition invalid (exit 2)
    │   ├── DefinitionError              MLP-101  a feature-set TOML file is invalid
    │   │   └── ExpressionError          MLP-102  a derived-feature expression is invalid
    │   ├── SchemaChangeError            MLP-103  a stored table does not match its changed definition
    │   └── TuningError                  MLP-104  a tuning study found no working configuration
    ├── DataValidationError              MLP-200  a batch or request failed validation (exit 3)
    │   └── EmptyBatchError              MLP-201  a batch holds no rows
    ├── StoreError                       MLP-300  the feature store failed (exit 4)
    │   └── StoreUnavailableError        MLP-301  the database cannot be reached or is locked
    ├── NotFoundError                    MLP-400  a named thing (feature set, file) does not exist (exit 2)
    ├── TrackingError                    MLP-500  MLflow failed or refused a request (exit 5)
    ├── ModelIntegrityError              MLP-600  a model's files do not match the registry's digest (exit 6)
    ├── PromotionError                   MLP-700  a promotion, approval or rollback is not possible (exit 2)
    ├── UnsupportedError                 MLP-800  the model cannot do what was asked (e.g. explain) (exit 2)
    ├── BusyError                        MLP-900  another process is training this feature set (exit 75)
    └── EngineError                      MLP-950  Spark or Dask did not start, or its job failed (exit 7)

The HTTP API adds codes of its own for what goes wrong before the library is reached (see
:mod:`mlpipeline.serving.api`): MLP-210 an unreadable body, MLP-211 an unsupported media type,
MLP-212 a body too large, MLP-213 a request of the wrong shape, MLP-401 no valid API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "BusyError",
    "ConfigError",
    "DataValidationError",
    "DefinitionError",
    "EmptyBatchError",
    "EngineError",
    "ExpressionError",
    "MlpipelineError",
    "ModelIntegrityError",
    "NotFoundError",
    "Problem",
    "PromotionError",
    "SchemaChangeError",
    "StoreError",
    "StoreUnavailableError",
    "TrackingError",
    "TuningError",
    "UnsupportedError",
]


class MlpipelineError(Exception):
    """Base of every deliberate mlpipeline error; ``code`` is stable across releases."""

    code = "MLP-000"
    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(MlpipelineError):
    """Settings or a definition are invalid: the user must change configuration."""

    code = "MLP-100"
    exit_code = 2


class DefinitionError(ConfigError):
    """A feature-set definition file is invalid; the message names the key and the fix."""

    code = "MLP-101"


class ExpressionError(DefinitionError):
    """A derived-feature expression uses something other than arithmetic on known names."""

    code = "MLP-102"


class SchemaChangeError(ConfigError):
    """A feature-set table no longer matches its definition.

    Either the change is additive and ``mlpipeline init`` has not applied it yet, or it is one
    the store cannot make by itself (a type, a removed or renamed column, a new key); the
    message names the columns and the manual path.
    """

    code = "MLP-103"


class TuningError(ConfigError):
    """Every trial of a tuning study failed: the search space gives no model that trains."""

    code = "MLP-104"


class NotFoundError(MlpipelineError):
    """A feature set, file or other named object does not exist."""

    code = "MLP-400"
    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One broken rule in a batch: which column, which rule, which rows (first few)."""

    column: str
    rule: str
    detail: str
    rows: Sequence[int] = field(default_factory=tuple)
    count: int = 0

    def describe(self) -> str:
        where = ""
        if self.rows:
            shown = ", ".join(str(r) for r in self.rows)
            more = f" (+{self.count - len(self.rows)} more)" if self.count > len(self.rows) else ""
            where = f" at rows {shown}{more}"
        return f"column '{self.column}': {self.rule}: {self.detail}{where}"


class DataValidationError(MlpipelineError):
    """A batch of rows broke the feature set's rules; ``problems`` lists every broken rule.

    Row numbers are 1-based positions in the batch (for a CSV file, data line N is
    file line N + 1 because of the header).
    """

    code = "MLP-200"
    exit_code = 3

    def __init__(
        self, problems: Sequence[Problem], *, source: str = "batch", outcome: str = "nothing written"
    ) -> None:
        self.problems = tuple(problems)
        self.source = source
        lines = "; ".join(p.describe() for p in self.problems)
        super().__init__(f"{source} rejected, {outcome}: {lines}")


class EmptyBatchError(DataValidationError):
    """A batch with no data rows: almost always a wrong file or a failed export."""

    code = "MLP-201"

    def __init__(self, source: str = "batch") -> None:
        super().__init__(
            [Problem("*", "non-empty", "the batch holds no data rows; check the file or export")],
            source=source,
        )


class StoreError(MlpipelineError):
    """The feature store failed in a way that is not the data's fault."""

    code = "MLP-300"
    exit_code = 4


class StoreUnavailableError(StoreError):
    """The database cannot be reached, or stayed locked longer than the busy timeout."""

    code = "MLP-301"


class TrackingError(MlpipelineError):
    """MLflow (tracking server or local store) failed or refused a request."""

    code = "MLP-500"
    exit_code = 5


class ModelIntegrityError(MlpipelineError):
    """A model's files do not match the digest recorded in the registry: never loaded."""

    code = "MLP-600"
    exit_code = 6


class PromotionError(MlpipelineError):
    """A promotion, approval, rejection or rollback cannot be done as asked."""

    code = "MLP-700"
    exit_code = 2


class UnsupportedError(MlpipelineError):
    """The served model cannot do what was asked, e.g. explain a non-tree estimator."""

    code = "MLP-800"
    exit_code = 2


class EngineError(MlpipelineError):
    """An engine mlpipeline hands work to (Spark, Dask) failed: not started, or a job died."""

    code = "MLP-950"
    exit_code = 7


class BusyError(MlpipelineError):
    """Another process is doing the same work (one training per feature set at a time)."""

    code = "MLP-900"
    exit_code = 75  # EX_TEMPFAIL: try again later
