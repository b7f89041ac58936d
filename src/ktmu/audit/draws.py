"""The audit's own train images, drawn outside every image the unlearning method saw.

A method saw the proxy forget set (:func:`ktmu.engine.request.forget_set_indices`) and, with
``--neighbours K``, K train images of each neighbour concept
(:func:`ktmu.engine.neighbours.neighbour_indices`). A probe or an attack that reused those images
would measure how well the method fitted them, not what is left of the concept, so the audit
redraws both exactly as the run drew them (the run's seed, forget-set size, K and scope) and draws
its own images from the rest:

* the probes' train images (linear, MLP, kNN): ``probe_per_class`` seeded-random images of every
  fine class outside the seen images (:func:`probe_indices`). A class with fewer left gives all it
  has, and the audit records how many (``settings.probe_shrunk``) and says so: the budget shrinks
  with a note, never silently;
* the relearning attacks' images (:func:`ktmu.audit.relearn.relearn_indices`), outside the forget
  set and the neighbours; an attack that cannot get its images is skipped with the numbers.

With K = 0 every draw is the neighbour-free audit's, image for image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ktmu.audit.config import AuditError
from ktmu.audit.linear_probe import probe_train_indices
from ktmu.data import ConceptDataset
from ktmu.engine.neighbours import indices_sha256, neighbour_indices, neighbour_record
from ktmu.engine.request import UnlearningRequest, forget_set_indices


@dataclass(frozen=True)
class SeenImages:
    """The train images the unlearning method saw: its proxy forget set and its neighbour exemplars."""

    forget_set: np.ndarray
    neighbours: np.ndarray
    neighbour_k: int = 0
    neighbour_scope: str = "siblings"
    seed: int = 0

    @property
    def all(self) -> np.ndarray:
        """Every seen train index, sorted."""
        return np.union1d(self.forget_set, self.neighbours)

    def record(self) -> dict:
        """What the audit's settings say was excluded: counts, and the neighbours as results.json records them (with their sha256)."""
        return {"forget_set_images": int(len(self.forget_set)),
                "neighbours": neighbour_record(self.neighbour_k, self.neighbour_scope, self.seed, self.neighbours),
                "images": int(len(self.all))}


def seen_images(request: UnlearningRequest, train: ConceptDataset, max_per_concept: int, seed: int, neighbours: int = 0,
                scope: str = "siblings") -> SeenImages:
    """Redraw the images a run saw from its settings (``seed``, ``max_per_concept``, ``neighbours`` K and ``scope``)."""
    forget = forget_set_indices(request, train, max_per_concept, seed)
    near = neighbour_indices(request, train, neighbours, scope, seed, max_per_concept)
    return SeenImages(forget, near, neighbours, scope, seed)


def check_recorded_neighbours(seen: SeenImages, recorded: dict | None, where: str) -> None:
    """Refuse an audit whose redrawn neighbours are not the ones a run recorded (``recorded``: its ``neighbours`` entry)."""
    if not recorded or not int(recorded.get("k", 0) or 0):
        return
    mine = indices_sha256(seen.neighbours)
    if recorded.get("sha256") not in (None, mine):
        raise AuditError(
            f"the neighbour images redrawn with --neighbours {seen.neighbour_k} --neighbours-scope {seen.neighbour_scope} "
            f"--seed {seen.seed} ({len(seen.neighbours)} images, sha256 {mine[:12]}...) are not those {where} records "
            f"(k {recorded.get('k')}, scope {recorded.get('scope')}, seed {recorded.get('seed')}, {recorded.get('images')} images, "
            f"sha256 {str(recorded.get('sha256'))[:12]}...); pass the run's --seed, --max-per-concept, --neighbours and --neighbours-scope.")


def probe_indices(labels: np.ndarray, seen: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, dict[int, int]]:
    """The probes' train indices (``per_class`` of each class outside ``seen``) and ``{class: images}`` for each class that had fewer."""
    labels = np.asarray(labels)
    pool = np.setdiff1d(np.arange(len(labels)), seen)
    if not len(pool):
        return pool, {}
    idx = pool[probe_train_indices(labels[pool], per_class, seed)]
    counts = np.bincount(labels[pool], minlength=int(labels.max()) + 1)
    shrunk = {int(c): int(counts[c]) for c in np.unique(labels) if counts[c] < per_class}
    return idx, shrunk


def probe_source_indices(train: ConceptDataset, world, forget_fine: list[int], seen: np.ndarray, per_class: int,
                         seed: int) -> tuple[np.ndarray | None, str, dict[str, int]]:
    """The probes' train indices, or ``(None, reason, {})`` when they cannot learn the concept; ``{name: images}`` of classes that had fewer."""
    labels = np.asarray(train.fine_labels)
    idx, shrunk = probe_indices(labels, seen, per_class, seed)
    present = set(np.unique(labels[idx]).tolist())
    missing = [world.fine[c].name for c in forget_fine if c not in present]
    if missing:
        return None, (f"the train split has no image of {', '.join(map(repr, missing))} outside the images the method saw "
                      "(proxy forget set and neighbours), so a probe could not learn the concept from the auditor's own images"), {}
    if len(present) < 2:
        return None, "a linear probe needs train images of at least two fine classes", {}
    return idx, "", {world.fine[c].name: n for c, n in shrunk.items()}
