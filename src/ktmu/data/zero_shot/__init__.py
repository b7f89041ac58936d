"""The reference study's zero-shot suite: six public datasets, each read from a local folder in torchvision's layout.

Each module holds one reader and registers nothing itself: ``ktmu.data.domains`` names them lazily as
``DOMAINS`` entries (``--zero-shot food101=DIR``). DIR may be the folder that holds the dataset's
own folder (torchvision's ``root``) or that folder itself:

| domain | folder (inside DIR) | evaluation split |
|---|---|---|
| food101 | ``food-101/images/<class>/<id>.jpg`` + ``food-101/meta/test.json`` (or ``test.txt``) | test, 25,250 images |
| flowers102 | ``flowers-102/jpg/image_<n>.jpg`` + ``imagelabels.mat`` + ``setid.mat`` | test (``tstid``), 6,149 |
| caltech101 | ``caltech101/101_ObjectCategories/<class>/*.jpg`` | every image of all 102 folders, BACKGROUND_Google kept |
| oxford_pet | ``oxford-iiit-pet/images/<id>.jpg`` + ``annotations/test.txt`` | test, 3,669 |
| cifar100 | ``cifar-100-python/test`` (the pickled batch) | test, 10,000 |
| stanford_cars | ``stanford_cars/cars_test/<file>.jpg`` + ``stanford_cars/cars_test_annos_withlabels.mat`` | test, 8,041 |

Class names are CLIP's published ones (``classnames.yaml``), templates the study's (``templates.yaml``).
torchvision's own dataset classes are not used: several verify md5 sums of the archive files and all
raise a bare "Dataset not found", while these readers name the missing file.
"""
from __future__ import annotations

SUITE: tuple[str, ...] = ("food101", "flowers102", "caltech101", "oxford_pet", "cifar100", "stanford_cars")
