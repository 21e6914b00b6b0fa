import numpy as np

from initbench.views.pictures import filters_to_uint8, tile


def test_tile_places_each_image_in_its_cell():
    images = np.stack([np.full((1, 2, 3), i * 10, dtype=np.uint8) for i in range(5)])
    grid = tile(images, columns=3, scale=2, gap=1)
    assert grid.shape == (2 * (4 + 1) + 1, 3 * (6 + 1) + 1)
    assert grid[1, 1] == 0 and grid[1, 1 + 7] == 10 and grid[1 + 5, 1 + 7] == 40
    assert grid[0, 0] == 128  # the gap colour
    assert grid[6, 15] == 128  # the empty sixth cell


def test_tile_keeps_rgb():
    images = np.zeros((2, 3, 2, 2), dtype=np.uint8)
    images[1, 0] = 255
    grid = tile(images, columns=2, gap=0)
    assert grid.shape == (2, 4, 3)
    assert grid[0, 2].tolist() == [255, 0, 0] and grid[0, 0].tolist() == [0, 0, 0]


def test_filters_are_stretched_each_on_its_own():
    weight = np.array([[[[-1.0, 1.0]]], [[[0.0, 0.001]]], [[[2.0, 2.0]]]])
    out = filters_to_uint8(weight)
    assert out.dtype == np.uint8 and out.shape == weight.shape
    assert out[0].ravel().tolist() == [0, 255]
    assert out[1].ravel().tolist() == [0, 255]
    assert out[2].ravel().tolist() == [0, 0]  # a flat filter does not divide by zero
