"""synth-tissue-ihc: the synth-tissue classes in immunohistochemistry stain, a source domain.

The commonest real domain shift in histopathology is the stain. Here the same eight tissue classes are
rendered as a cytokeratin IHC slide: hematoxylin counterstain (blue nuclei) and DAB (brown) where
synth-tissue has eosin (pink), with the Ruifrok & Johnston (2001) H-DAB optical-density vectors.
Cytokeratin marks epithelium, so DAB is strong in tumour, complex and mucosa tiles and faint elsewhere.
The tissue is other tissue (other generator seeds): a model pretrained here never saw a target image.
"""
from __future__ import annotations

import numpy as np

from bench.datasets import synth_tissue
from bench.datasets.base import DataConfig, PreparedData

H_IHC = np.array([0.650, 0.704, 0.286])     # Ruifrok & Johnston: hematoxylin in H-DAB
DAB = np.array([0.268, 0.570, 0.776])       # 3,3'-diaminobenzidine (brown)
# DAB strength per class (CLASS_NAMES order): epithelial classes stain, the rest barely
DAB_STRENGTH = {"tumor": 1.4, "stroma": 0.35, "complex": 1.0, "lympho": 0.2, "debris": 0.5, "mucosa": 1.2,
                "adipose": 0.25, "empty": 0.2}
SEED_OFFSET = 1_000_003    # other tissue than synth-tissue's splits (whose seeds are 3 * split_seed + 0..2)


def stains(class_index: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A class's stain OD vectors and DAB strength, for synth_tissue.generate."""
    return H_IHC, DAB, DAB_STRENGTH[synth_tissue.CLASS_NAMES[class_index]]


def load(cfg: DataConfig) -> PreparedData:
    return synth_tissue.load(cfg, "synth-tissue-ihc", stains, SEED_OFFSET)
