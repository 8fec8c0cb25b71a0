import pytest
import torch

from fmnist.errors import DataError
from fmnist.training import data
from fmnist.training.data import EpochBatches, Split, split_train_val, to_float


def _split(n):
    return Split(torch.arange(n, dtype=torch.uint8).view(n, 1, 1).expand(n, 28, 28).contiguous(), torch.arange(n) % 10)


def test_seeded_hold_out_is_disjoint_and_repeatable():
    full = _split(200)
    train, val = split_train_val(full, 0.1, seed=3, limit=None)
    assert len(train) == 180 and len(val) == 20
    seen = set(train.images[:, 0, 0].tolist()) | set(val.images[:, 0, 0].tolist())
    assert len(seen) == 200
    again, _ = split_train_val(full, 0.1, seed=3, limit=None)
    assert torch.equal(train.images, again.images)
    other, _ = split_train_val(full, 0.1, seed=4, limit=None)
    assert not torch.equal(train.images, other.images)


def test_limit_train_takes_the_first_images_after_the_shuffle():
    full = _split(200)
    train, _ = split_train_val(full, 0.1, seed=3, limit=None)
    limited, _ = split_train_val(full, 0.1, seed=3, limit=50)
    assert torch.equal(limited.images, train.images[:50])


def test_epoch_batches_depend_on_seed_and_epoch_only():
    s = EpochBatches(100, 30, seed=1, shuffle=True)
    first = [b.tolist() for b in s]
    assert [len(b) for b in first] == [30, 30, 30, 10] and len(s) == 4
    assert sorted(sum(first, [])) == list(range(100))
    s.set_epoch(1)
    assert [b.tolist() for b in s] != first
    s.set_epoch(0)
    assert [b.tolist() for b in s] == first


def test_ranks_take_disjoint_batches():
    ranks = [EpochBatches(100, 10, seed=1, shuffle=True, rank=r, world=2) for r in range(2)]
    a, b = ([i for batch in r for i in batch.tolist()] for r in ranks)
    assert not set(a) & set(b) and len(a) + len(b) == 100


def test_to_float_scales_to_unit_range():
    x = to_float(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 1, 2) and x.dtype == torch.float32
    assert x.flatten().tolist() == [0.0, 1.0]


@pytest.mark.parametrize("error", [RuntimeError, OSError])
def test_a_failed_download_is_one_line(tmp_path, monkeypatch, error):
    import torchvision.datasets

    def no_network(*args, **kwargs):
        raise error("Error downloading train-images-idx3-ubyte.gz:\nTried mirror_1\nTried mirror_2\n")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", no_network)
    with pytest.raises(DataError) as caught:
        data.load_official(tmp_path, train=True, download=True)
    assert "\n" not in str(caught.value) and "Tried mirror_2" in str(caught.value)


@pytest.mark.parametrize(("n", "batch", "world"), [(2100, 300, 2), (100, 10, 3), (50, 100, 2), (0, 10, 2)])
def test_every_rank_takes_the_same_number_of_batches(n, batch, world):
    """An uneven batch count left one DDP rank a step more, waiting for ever in the all-reduce."""
    ranks = [EpochBatches(n, batch, seed=1, shuffle=True, rank=r, world=world) for r in range(world)]
    counts = [len(list(r)) for r in ranks]
    assert counts == [len(r) for r in ranks] and len(set(counts)) == 1
    seen = [i for r in ranks for b in r for i in b.tolist()]
    assert set(seen) == set(range(n))  # every image still taken, a few twice
