import pytest
import torch

from fmnist.config import Config
from fmnist.training.augment import affine_matrices, augment, blur, gaussian_kernels

STILL = Config(
    aug_plain=0.0,
    aug_flip=0.0,
    aug_shift=0.0,
    aug_scale=(1.0, 1.0),
    aug_rotate=0.0,
    aug_contrast=0.0,
    aug_brightness=0.0,
    aug_blur=0.0,
)


def _square(n: int = 4) -> torch.Tensor:
    x = torch.zeros(n, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 0.8
    return x


def test_zero_strengths_leave_images_unchanged():
    x = torch.rand(6, 1, 28, 28)
    assert torch.allclose(augment(x, STILL), x, atol=1e-5)


def test_a_pure_shift_moves_the_garment_by_that_fraction_of_the_side():
    torch.manual_seed(0)
    theta = affine_matrices(1, 0.0, (1.0, 1.0), 0.0)
    theta[0, :, 2] = torch.tensor([-2 * 7 / 28, 0.0])  # read 7 pixels to the left: content moves right
    grid = torch.nn.functional.affine_grid(theta, [1, 1, 28, 28], align_corners=False)
    y = torch.nn.functional.grid_sample(_square(1), grid, align_corners=False)
    assert torch.allclose(y[0, 0, 10:18, 17:25], torch.full((8, 8), 0.8), atol=1e-5)
    assert y[0, 0, 10:18, 10:17].abs().max() < 1e-5


def test_zoom_below_one_shrinks_the_garment():
    torch.manual_seed(0)
    shrunk = augment(_square(), STILL.updated(aug_scale=(0.5, 0.5)))
    area = (shrunk > 0.4).float().sum((1, 2, 3))
    assert torch.allclose(area, torch.full((4,), 16.0), atol=4)  # an 8x8 square at half size: 4x4


def test_outputs_stay_in_range_and_differ_per_image():
    torch.manual_seed(1)
    x = _square(8)
    y = augment(x, Config(aug_plain=0.0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert len({round(float(v), 4) for v in y.sum((1, 2, 3))}) == 8


def test_plain_images_pass_unchanged_and_flips_mirror_exactly():
    x = torch.rand(6, 1, 28, 28)
    assert torch.equal(augment(x, Config(aug_plain=1.0, aug_flip=0.0)), x)
    assert torch.equal(augment(x, Config(aug_plain=1.0, aug_flip=1.0)), x.flip(-1))


def test_aug_plain_leaves_that_share_of_the_batch_untransformed():
    torch.manual_seed(2)
    x = torch.rand(4000, 1, 28, 28)
    y = augment(x, Config(aug_plain=0.3, aug_flip=0.0))
    plain = (y == x).flatten(1).all(1).float().mean()
    assert abs(float(plain) - 0.3) < 0.03


def test_the_same_seed_draws_the_same_augmentation():
    x = torch.rand(5, 1, 28, 28)
    torch.manual_seed(3)
    a = augment(x, Config())
    torch.manual_seed(3)
    assert torch.equal(a, augment(x, Config()))


def test_gaussian_kernels_are_normalised_and_blur_keeps_the_mean():
    k = gaussian_kernels(torch.tensor([0.5, 1.0]))
    assert torch.allclose(k.sum(1), torch.ones(2)) and k.shape == (2, 7)
    assert k[1, 3] < k[0, 3]  # wider sigma, lower peak
    x = torch.rand(2, 1, 28, 28)
    y = blur(x, torch.tensor([0.8, 1.2]))
    assert torch.allclose(y.mean((1, 2, 3)), x.mean((1, 2, 3)), atol=0.01)
    assert (y.diff(dim=3).abs().mean() < x.diff(dim=3).abs().mean()).item()


BAD = [("aug_scale", (1.2, 0.8)), ("aug_blur", 1.5), ("aug_shift", 0.6), ("aug_plain", -0.1), ("aug_flip", 2.0)]


@pytest.mark.parametrize("field, value", BAD)
def test_bad_strengths_are_config_errors(field, value):
    from fmnist.errors import ConfigError

    with pytest.raises(ConfigError, match="--" + field.replace("_", "-")):  # the flag that sets it
        Config().updated(**{field: value})
