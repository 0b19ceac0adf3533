"""Promotion, approval, rejection and rollback: the alias and the pointer move together.

Order of a promotion: (0) download and verify the version into the cache, (1) move the
``champion`` alias, (2) replace the production pointer and append the history in one
transaction, (3) clear the ``challenger`` alias and tag the version. If (2) fails, the alias
is put back at once. If the process dies anywhere, :meth:`Promoter.reconcile` (run at the
start of every train, promote, rollback, approve, check and watch iteration) rolls back what
came before (2) and finishes what came after it. The pointer is the truth: servers read only
the pointer, so what they serve never depends on a half-done promotion, and the production
model never changes because something failed.
"""

from __future__ import annotations

import getpass
import logging
from dataclasses import dataclass

from mlpipeline.errors import MlpipelineError, PromotionError
from mlpipeline.featurestore.sql import utcnow
from mlpipeline.registry.model_cache import ModelCache, ModelRef
from mlpipeline.registry.pointer import HistoryEntry, Pointer, PointerStore
from mlpipeline.registry.tracking import CHALLENGER, CHAMPION, Tracker
from mlpipeline.registry.version_tags import SHA_TAG, facts_of, facts_update, recorded_sha256

__all__ = ["Promoter", "PromotionError", "current_actor"]

log = logging.getLogger(__name__)


def current_actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


@dataclass
class Promoter:
    """Moves the production model; with a ``cache``, a version is downloaded and verified first,
    so a model that cannot be loaded is never promoted and servers swap to it without waiting."""

    tracker: Tracker
    pointers: PointerStore
    cache: ModelCache | None = None

    def reconcile(self, featureset: str) -> str | None:
        """Finish or roll back a promotion a crash left half done; returns what was repaired.

        The pointer is the truth. A crash between the alias and the pointer (alias moved,
        pointer not) is rolled back: the alias follows the pointer again. A crash after the
        pointer moved (the promotion took effect) is finished: the ``challenger`` alias is
        cleared from the champion and the version's promotion tags are written.
        """
        pointer = self.pointers.get(featureset)
        alias = self.tracker.alias_version(featureset, CHAMPION)
        want = pointer.version if pointer else None
        notes: list[str] = []
        if alias != want:
            if want is None:
                self.tracker.delete_alias(featureset, CHAMPION)
            else:
                self.tracker.set_alias(featureset, CHAMPION, want)
            notes.append(
                f"alias '{CHAMPION}' pointed at {alias}, the production pointer at {want}; "
                f"alias moved to {want}"
            )
        if pointer is not None:
            notes.extend(self._finish(pointer))
        if not notes:
            return None
        note = "; ".join(notes)
        log.warning(
            "reconciled the registry with the production pointer",
            extra={"featureset": featureset, "detail": note},
        )
        return note

    def _finish(self, pointer: Pointer) -> list[str]:
        """The steps of a promotion that follow the pointer, if a crash skipped them."""
        notes: list[str] = []
        featureset, version = pointer.featureset, pointer.version
        if self.tracker.alias_version(featureset, CHALLENGER) == version:
            self.tracker.delete_alias(featureset, CHALLENGER)
            notes.append(f"alias '{CHALLENGER}' cleared from champion version {version}")
        promotion = facts_of(self.tracker.version(featureset, version).tags).get("promotion") or {}
        if promotion.get("at") != _moment(pointer):
            self._record_promotion(pointer)
            notes.append(f"promotion recorded on version {version}")
        return notes

    def _record_promotion(self, pointer: Pointer) -> None:
        """Who promoted the version, when and why, in its facts tag (see version_tags).

        The tags are read just before they are written: the JSON tag is rewritten whole, so a
        copy read before a long download could undo another process's update.
        """
        info = self.tracker.version(pointer.featureset, pointer.version)
        promotion = {"at": _moment(pointer), "by": pointer.promoted_by, "reason": pointer.reason[:1000]}
        self.tracker.set_version_tags(
            pointer.featureset, pointer.version, facts_update(info.tags, promotion=promotion)
        )

    def promote(
        self,
        featureset: str,
        version: str,
        *,
        reason: str,
        action: str = "promote",
        actor: str | None = None,
    ) -> Pointer:
        """Make ``version`` the production model (alias first, then pointer; see module doc)."""
        actor = actor or current_actor()
        info = self.tracker.version(featureset, version)
        sha = recorded_sha256(info.tags)
        if not sha:
            raise PromotionError(
                f"version {version} has no recorded digest ({SHA_TAG}); it cannot be promoted"
            )
        current = self.pointers.get(featureset)
        if current is not None and current.version == version:
            raise PromotionError(f"version {version} is already the champion of '{featureset}'")
        local_path = None
        if self.cache is not None:
            local_path = str(self.cache.ensure(ModelRef.of_version(featureset, info)))
        metrics = {str(k): float(v) for k, v in (facts_of(info.tags).get("metrics") or {}).items()}
        pointer = Pointer(
            featureset=featureset,
            model_name=info.name,
            version=version,
            run_id=info.run_id,
            model_uri=f"models:/{info.name}/{version}",
            sha256=sha,
            local_path=local_path,
            metrics=metrics,
            promoted_by=actor,
            reason=reason,
        )
        self.tracker.set_alias(featureset, CHAMPION, version)
        try:
            stored = self.pointers.set(
                pointer, action=action, from_version=current.version if current else None
            )
        except BaseException:
            self._restore_alias(featureset, current)
            raise
        if self.tracker.alias_version(featureset, CHALLENGER) == version:
            self.tracker.delete_alias(featureset, CHALLENGER)
        self._record_promotion(stored)
        log.info(
            "model promoted",
            extra={
                "featureset": featureset,
                "model_version": version,
                "action": action,
                "from_version": current.version if current else None,
            },
        )
        return stored

    def _restore_alias(self, featureset: str, current: Pointer | None) -> None:
        try:
            if current is None:
                self.tracker.delete_alias(featureset, CHAMPION)
            else:
                self.tracker.set_alias(featureset, CHAMPION, current.version)
        except MlpipelineError:
            log.exception("could not restore the champion alias; the next run reconciles it")

    def rollback(self, featureset: str, *, reason: str, actor: str | None = None) -> Pointer:
        """Back to the champion that preceded the current one."""
        current = self.pointers.get(featureset)
        if current is None:
            raise PromotionError(f"'{featureset}' has no champion to roll back from")
        # Walk back the chain of promotions; a rollback never undoes a rollback.
        previous = next(
            (
                e.from_version
                for e in self.pointers.history(featureset, limit=500)
                if e.to_version == current.version
                and e.from_version
                and e.action not in ("reject", "rollback")
            ),
            None,
        )
        if previous is None:
            raise PromotionError(
                f"version {current.version} is the first champion of '{featureset}'; nothing to roll back to"
            )
        return self.promote(featureset, previous, reason=reason, action="rollback", actor=actor)

    def approve(self, featureset: str, version: str, *, reason: str, actor: str | None = None) -> Pointer:
        waiting = self.tracker.alias_version(featureset, CHALLENGER)
        if waiting != version:
            hint = f"the challenger is version {waiting}" if waiting else "no version awaits approval"
            raise PromotionError(f"version {version} is not awaiting approval ({hint})")
        return self.promote(featureset, version, reason=reason, action="approve", actor=actor)

    def reject(self, featureset: str, version: str, *, reason: str, actor: str | None = None) -> None:
        actor = actor or current_actor()
        waiting = self.tracker.alias_version(featureset, CHALLENGER)
        if waiting != version:
            hint = f"the challenger is version {waiting}" if waiting else "no version awaits approval"
            raise PromotionError(f"version {version} is not awaiting approval ({hint})")
        self.tracker.delete_alias(featureset, CHALLENGER)
        info = self.tracker.version(featureset, version)
        self.tracker.set_version_tags(
            featureset,
            version,
            facts_update(info.tags, gate="rejected", rejection={"by": actor, "reason": reason[:1000]}),
        )
        current = self.pointers.get(featureset)
        self.pointers.record(
            HistoryEntry(
                featureset,
                "reject",
                info.name,
                current.version if current else None,
                version,
                info.run_id,
                utcnow(),
                actor,
                reason,
                {},
            )
        )


def _moment(pointer: Pointer) -> str:
    return pointer.promoted_at.isoformat() if pointer.promoted_at else ""
