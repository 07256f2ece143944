"""Class-balanced sampling in the view overlap, and exact cross-view correspondence."""
import pytest
import torch
import torch.nn.functional as F

from densechange.pretrain.sadl.point_read import point_features
from densechange.pretrain.sadl.sampling import sample_class_points
from densechange.pretrain.sadl.views import ViewAugment, draw_geometry, overlap_mask, warp


def read_points(features: torch.Tensor, points: torch.Tensor, image_size: tuple[int, int],
                mode: str = "bilinear") -> torch.Tensor:
    """Plain reference: features of a dense map ``(B, D, h, w)`` covering an ``image_size = (H, W)`` image, read at
    image pixel coordinates ``points (B, N, 2)`` as ``(x, y)``; returns ``(B, N, D)``.

    ``bilinear``: ``grid_sample`` (``align_corners=False``, border padding). ``nearest``: the SaDL reference rule,
    truncate to the pixel, then integer-divide by the stride. The task reads its points without building the
    map (:func:`~densechange.pretrain.sadl.point_read.point_features`); these tests hold it, and the views' geometry, against this reading.
    """
    b, d, fh, fw = features.shape
    H, W = image_size
    if mode == "bilinear":
        grid = torch.stack([points[..., 0] / W * 2 - 1, points[..., 1] / H * 2 - 1], -1)
        out = F.grid_sample(features, grid[:, None].to(features.dtype), mode="bilinear", padding_mode="border",
                            align_corners=False)
        return out[:, :, 0].transpose(1, 2)
    assert mode == "nearest", mode
    ix = (points[..., 0].floor().long() * fw // W).clamp(0, fw - 1)
    iy = (points[..., 1].floor().long() * fh // H).clamp(0, fh - 1)
    flat = features.flatten(2)  # (B, D, h*w)
    return flat.gather(2, (iy * fw + ix)[:, None].expand(b, d, -1)).transpose(1, 2)


def two_views(b=6, h=96, w=80, size=64, seed=0, scale=(0.3, 1.0)):
    g = torch.Generator().manual_seed(seed)
    dev = torch.device("cpu")
    aug = ViewAugment(size=size, scale=scale, ratio=(0.75, 4 / 3), hflip=0.5, vflip=0.5)
    g1 = draw_geometry(b, h, w, aug, g, dev)
    g2 = draw_geometry(b, h, w, aug, g, dev)
    return g1, g2, g


def stripes(b, h, w, k):
    """Class ids in vertical bands, so every class is present."""
    return (torch.arange(w) * k // w).view(1, 1, w).expand(b, h, w).clone()


def test_points_in_overlap_and_on_their_class():
    b, h, w, k, n = 6, 96, 80, 3, 32
    g1, g2, g = two_views(b, h, w)
    mask = stripes(b, h, w, k)
    region = overlap_mask(g1, g2)
    points, valid = sample_class_points(mask, region, k, n, g)
    assert points.shape == (b, k, n, 2)
    ix, iy = points[..., 0].floor().long(), points[..., 1].floor().long()
    bidx = torch.arange(b).view(b, 1, 1).expand_as(ix)
    cls = torch.arange(k).view(1, k, 1).expand_as(ix)
    ok = valid[:, :, None].expand_as(ix)
    assert region[bidx, iy, ix][ok].all()
    assert torch.equal(mask[bidx, iy, ix][ok], cls[ok])
    # mapped into each view, the point lands inside the view and on its class (nearest mask),
    # except possibly within one source pixel of a class border
    for geo in (g1, g2):
        vimg, vmask = warp(torch.zeros(b, 1, h, w), mask, geo)
        pv = geo.to_view(points.flatten(1, 2))
        assert (pv >= 0).all() and (pv < geo.size).all()
        ui, vi = pv[..., 0].floor().long(), pv[..., 1].floor().long()
        seen = vmask[torch.arange(b)[:, None], vi, ui].view(b, k, n)
        band = w / k
        near_border = ((points[..., 0] % band) < 1.5) | ((points[..., 0] % band) > band - 1.5)
        assert torch.equal(seen[ok & ~near_border], cls[ok & ~near_border])


def test_absent_class_is_invalid():
    b, h, w = 2, 32, 32
    mask = torch.zeros(b, h, w, dtype=torch.long)
    mask[0, :8, :8] = 1  # class 1 only in image 0
    mask[:, -1, -1] = -1  # ignore never sampled
    region = torch.ones(b, h, w, dtype=torch.bool)
    points, valid = sample_class_points(mask, region, 3, 50, torch.Generator().manual_seed(1))
    assert valid.tolist() == [[True, True, False], [True, False, False]]
    p = points[0, 1]
    assert (p[:, 0] < 8).all() and (p[:, 1] < 8).all()
    bg = points[:, 0]
    assert not ((bg[..., 0] == w - 0.5) & (bg[..., 1] == h - 0.5)).any()


def test_region_outside_class_makes_it_absent():
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[0, :, 8:] = 1
    region = torch.zeros(1, 16, 16, dtype=torch.bool)
    region[0, :, :8] = True  # overlap only covers class 0
    _, valid = sample_class_points(mask, region, 2, 4, torch.Generator().manual_seed(0))
    assert valid.tolist() == [[True, False]]


def test_balanced_and_uniform_over_many_draws():
    # class 1 covers 4 pixels, class 0 the other 252: each class still gets n points per image,
    # and inside a class every pixel is equally likely
    h = w = 16
    mask = torch.zeros(1, h, w, dtype=torch.long)
    cells = [(2, 3), (7, 7), (12, 1), (15, 15)]
    for y, x in cells:
        mask[0, y, x] = 1
    region = torch.ones(1, h, w, dtype=torch.bool)
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(2)
    hits = torch.zeros(len(cells))
    draws = 400
    for _ in range(draws):
        points, valid = sample_class_points(mask, region, 2, 16, g)
        assert valid.all()
        counts += torch.tensor([16.0, 16.0])
        ix, iy = points[0, 1, :, 0].long(), points[0, 1, :, 1].long()
        for j, (y, x) in enumerate(cells):
            hits[j] += ((iy == y) & (ix == x)).sum()
        assert (mask[0, points[0, 0, :, 1].long(), points[0, 0, :, 0].long()] == 0).all()
    assert hits.sum() == draws * 16
    expected = draws * 16 / len(cells)  # 1600 each; binomial sd ~ 35
    assert ((hits - expected).abs() < 5 * (expected * 0.75) ** 0.5).all()


def coordinate_image(b, h, w):
    """Each pixel holds its own centre coordinates (x, y)."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    return torch.stack([xs, ys]).float().expand(b, 2, h, w).clone()


@pytest.mark.numeric
def test_correspondence_reads_the_same_original_pixel():
    b, h, w, size = 6, 96, 80, 64
    g1, g2, g = two_views(b, h, w, size)
    img = coordinate_image(b, h, w)
    mask = torch.zeros(b, h, w, dtype=torch.long)
    points, valid = sample_class_points(mask, overlap_mask(g1, g2), 1, 64, g)
    flat = points.flatten(1, 2)
    for geo in (g1, g2):
        view, _ = warp(img, mask, geo)
        pv = geo.to_view(flat)
        interior = ((pv > 1.0) & (pv < size - 1.0)).all(-1)
        # stride 1: the view itself; stride 4: a 4x4-average-pooled map, as an encoder's P2
        at1 = read_points(view, pv, (size, size), "bilinear")
        at4 = read_points(F.avg_pool2d(view, 4), pv, (size, size), "bilinear")
        inner4 = ((pv > 4.0) & (pv < size - 4.0)).all(-1)
        assert torch.allclose(at1[interior], flat[interior], atol=1e-3)
        assert torch.allclose(at4[inner4], flat[inner4], atol=1e-3)
        assert (at1 - flat).abs().max() < (max(h, w) / size) + 1e-3


def test_nearest_mode_is_the_reference_rule():
    """The reference reading and the task's own (an FPN of one level whose lateral is the identity) follow the rule."""
    from densechange.models.fpn import FPN

    feats = torch.arange(2 * 4 * 16 * 16, dtype=torch.float32).view(2, 4, 16, 16)
    pts = torch.tensor([[[0.5, 0.5], [7.9, 3.2], [63.5, 63.5]], [[12.0, 40.7], [4.0, 4.0], [33.3, 0.1]]])
    identity = FPN([4], 4)
    with torch.no_grad():
        identity.lateral[0].weight.copy_(torch.eye(4).view(4, 4, 1, 1))
        identity.lateral[0].bias.zero_()
        task = point_features(identity, [feats], pts, (64, 64), "nearest")
    out = read_points(feats, pts, (64, 64), "nearest")
    for bi in range(2):
        for j in range(3):
            x, y = int(pts[bi, j, 0]) // 4, int(pts[bi, j, 1]) // 4
            assert torch.equal(out[bi, j], feats[bi, :, y, x])
            assert torch.equal(task[bi, j], feats[bi, :, y, x])


@pytest.mark.numeric
def test_fpn_point_reading_equals_dense_map():
    from densechange.models.fpn import FPN

    torch.manual_seed(0)
    for h, w in [(64, 64), (75, 61)]:  # odd sizes exercise the non-x2 nearest upsampling
        neck = FPN([8, 16, 32, 64], 32)
        sizes = [((h + 3) // 4, (w + 3) // 4)]
        for _ in range(3):
            sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
        feats = [torch.randn(2, c, fh, fw) for c, (fh, fw) in zip([8, 16, 32, 64], sizes)]
        pts = torch.rand(2, 50, 2) * torch.tensor([w, h])
        pts[0, :4] = torch.tensor([[0.0, 0.0], [w - 1e-3, h - 1e-3], [0.2, h / 2], [w / 2, 0.1]])  # borders
        for mode in ("bilinear", "nearest"):
            sparse = point_features(neck, feats, pts, (h, w), mode)
            dense = read_points(neck(feats)[0], pts, (h, w), mode)
            assert torch.allclose(sparse, dense, atol=1e-5), (h, w, mode)
