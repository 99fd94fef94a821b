"""craik eval's energy plot (matplotlib, axes with units), without a graph."""

from types import SimpleNamespace

import numpy as np
from PIL import Image

from craik_bringup.evaluation import save_energy_plot


def test_the_energy_plot_is_a_picture_with_one_line_per_episode(tmp_path):
    episodes = [SimpleNamespace(seed=1, success=True, energies=[0.4, 0.3, 0.1, 0.05]),
                SimpleNamespace(seed=2, success=False, energies=[0.5, 0.45, 0.5]),
                SimpleNamespace(seed=3, success=True, energies=[])]   # aborted: no line
    path = tmp_path / 'energy.png'
    save_energy_plot(path, episodes, 'world_model / push / nominal')
    picture = np.asarray(Image.open(path).convert('RGB'))
    assert picture.shape[0] >= 300 and picture.shape[1] >= 500
    # Something besides the white background and black text was drawn: the episodes' lines.
    coloured = (picture.max(axis=-1).astype(int) - picture.min(axis=-1)) > 60
    assert coloured.sum() > 200
    empty = tmp_path / 'empty.png'
    save_energy_plot(empty, [], 'nothing')
    assert empty.stat().st_size > 0
