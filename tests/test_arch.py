import json

import numpy as np
import pytest

from anas.errors import ArchError
from anas.space.arch import Arch, ArchBatch, arch_from_dict, largest_arch, parse_arch, sample_archs, smallest_arch

A0 = {
    "resolution": 192,
    "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
    "depth": [1, 3, 3, 3, 3, 3, 1],
    "kernel_size": [3, 3, 3, 3, 3, 3, 3],
    "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
}


def test_named_models_and_extremes(attentive):
    assert parse_arch(attentive, "a0").to_dict() == A0
    assert parse_arch(attentive, "A0") == smallest_arch(attentive)  # A0 is the smallest subnet
    assert parse_arch(attentive, "min") == smallest_arch(attentive)
    big = parse_arch(attentive, "max")
    assert big == largest_arch(attentive)
    assert big.resolution == 288 and big.depth == (2, 5, 6, 6, 8, 8, 2)


def test_json_string_and_file(attentive, tmp_path):
    assert parse_arch(attentive, json.dumps(A0)).to_dict() == A0
    path = tmp_path / "arch.json"
    path.write_text(json.dumps({**A0, "mflops": 203.4, "note": "extra keys are ignored"}))
    assert parse_arch(attentive, str(path)).to_dict() == A0


def test_random_is_seeded_and_on_the_space(tiny):
    a = parse_arch(tiny, "random", seed=3)
    assert a == parse_arch(tiny, "random", seed=3)
    assert arch_from_dict(tiny, a.to_dict()) == a


@pytest.mark.parametrize(
    "field, index, value, fragments",
    [
        ("kernel_size", 3, 7, ["kernel_size[3] = 7", "mb4", "allowed: 3, 5"]),
        ("width", 8, 1000, ["width[8] = 1000", "head", "allowed: 1792, 1984"]),
        ("depth", 4, 9, ["depth[4] = 9", "mb5", "allowed: 3, 4, 5, 6, 7, 8"]),
        ("expand_ratio", 0, 4, ["expand_ratio[0] = 4", "mb1", "allowed: 1"]),
        ("width", 0, "16", ["width[0] = '16'"]),
    ],
)
def test_off_space_value_names_field_index_and_choices(attentive, field, index, value, fragments):
    data = json.loads(json.dumps(A0))
    data[field][index] = value
    with pytest.raises(ArchError) as info:
        arch_from_dict(attentive, data)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_structural_errors(attentive):
    with pytest.raises(ArchError, match="resolution = 200"):
        arch_from_dict(attentive, {**A0, "resolution": 200})
    with pytest.raises(ArchError, match="list of 7 values"):
        arch_from_dict(attentive, {**A0, "depth": [1, 3]})
    with pytest.raises(ArchError, match="missing the field"):
        arch_from_dict(attentive, {"resolution": 192})
    with pytest.raises(ArchError, match="JSON object"):
        arch_from_dict(attentive, [1, 2])
    with pytest.raises(ArchError, match="not valid JSON"):
        parse_arch(attentive, '{"resolution": 192')
    with pytest.raises(ArchError, match="neither"):
        parse_arch(attentive, "a9")


def test_sampling_is_uniform_over_choices(attentive):
    batch = sample_archs(attentive, 4000, np.random.default_rng(0))
    assert len(batch) == 4000
    assert set(np.unique(batch.resolution)) == {192, 224, 256, 288}
    assert set(np.unique(batch.depth[:, 5])) == {3, 4, 5, 6, 7, 8}
    counts = np.unique(batch.kernel_size[:, 2], return_counts=True)[1]
    assert abs(counts[0] - counts[1]) < 300
    for arch in list(batch)[:50]:
        assert arch_from_dict(attentive, arch.to_dict()) == arch
    again = sample_archs(attentive, 4000, np.random.default_rng(0))
    assert np.array_equal(again.width, batch.width)


def test_batch_round_trip(tiny):
    archs = [smallest_arch(tiny), largest_arch(tiny)]
    batch = ArchBatch.from_archs(archs)
    assert list(batch) == archs
    assert isinstance(batch[0], Arch)
