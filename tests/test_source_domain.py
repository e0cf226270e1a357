"""synth-tissue-ihc: the synth-tissue classes in IHC stain (hematoxylin + DAB), a source of its own."""
import numpy as np
from skimage.color import rgb2hed

from bench.datasets import DataConfig, load_prepared

EOSIN, DAB = 1, 2   # rgb2hed channels (Ruifrok & Johnston colour deconvolution)


def stain_means(name: str) -> tuple[tuple[str, ...], np.ndarray, dict]:
    data = load_prepared(DataConfig(name=name, image_size=16, train_per_class=4, val_per_class=1, test_per_class=1))
    hed = rgb2hed(data.train_x)
    return data.class_names, np.stack([hed[data.train_y == c].mean((0, 1, 2)) for c in range(data.num_classes)]), data.meta


def test_ihc_is_brown_where_synth_tissue_is_pink_with_the_same_classes():
    he_classes, he, _ = stain_means("synth-tissue")
    ihc_classes, ihc, meta = stain_means("synth-tissue-ihc")
    assert ihc_classes == he_classes and meta["augment"] == "dihedral"
    pink = [he_classes.index(name) for name in ("tumor", "stroma", "complex", "debris", "mucosa")]
    assert (he[pink, EOSIN] > 0.01).all() and (ihc[pink, EOSIN] < 0.005).all()  # no eosin
    epithelial = [he_classes.index(name) for name in ("tumor", "complex", "mucosa")]
    assert (ihc[epithelial, DAB] > he[epithelial, DAB]).all()  # DAB (cytokeratin) in epithelium
