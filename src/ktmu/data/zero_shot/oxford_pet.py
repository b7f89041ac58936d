"""Oxford-IIIT Pet's test split (3,669 images of 37 breeds) read from ``oxford-iiit-pet/images`` and ``annotations/test.txt``."""
from __future__ import annotations

from pathlib import Path

from ktmu.data import DatasetError, FileDataset
from ktmu.data.domains import ZeroShotDomain
from ktmu.data.zero_shot.common import dataset_folder, name_index, templates, zero_shot_world

NAME = "oxford_pet"


def load_oxford_pet(root: Path | None) -> FileDataset:
    """Oxford-IIIT Pet's test split; an image's breed is its file name's prefix (``Egyptian_Mau_12`` -> "Egyptian Mau")."""
    base = dataset_folder(root, NAME, "oxford-iiit-pet", ("images", "annotations/test.txt"))
    world = zero_shot_world(NAME, "pet")
    index = name_index(world)
    listing = base / "annotations" / "test.txt"
    paths, labels = [], []
    for n, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        image_id = line.split()[0]  # "<Breed_Name>_<n> <class id> <species> <breed id>"
        breed = image_id.rsplit("_", 1)[0]
        label = index.get(breed.replace("_", " ").lower())
        if label is None:
            raise DatasetError(f"{NAME}: {listing}:{n}: breed {breed!r} is not one of the dataset's 37 breeds.")
        paths.append(base / "images" / f"{image_id}.jpg")
        labels.append(label)
    return FileDataset(world, "test", paths, labels)


DOMAIN = ZeroShotDomain(NAME, load_oxford_pet, templates(NAME))
