"""Identity-disjoint splits (sht.data.splits): every face of a person on the same side, shares by faces."""

from __future__ import annotations

import pytest
import torch

from sht.data.formats import DataError
from sht.data.splits import YTF_PERSON, identity_keys, identity_split


def test_identity_keys_from_names():
    names = ["Abdel_Aziz_Al-Hakim_00.jpg", "Abdel_Aziz_Al-Hakim_12.jpg", "Adam_Sandler_40.jpg", "100032540_1.jpg"]
    assert identity_keys(names, YTF_PERSON, "ytf/") == [
        "ytf/Abdel_Aziz_Al-Hakim",
        "ytf/Abdel_Aziz_Al-Hakim",
        "ytf/Adam_Sandler",
        "ytf/100032540",
    ]
    # no pattern: one identity per file (Helen)
    assert identity_keys(names[:2]) == ["Abdel_Aziz_Al-Hakim_00", "Abdel_Aziz_Al-Hakim_12"]
    assert identity_keys(["nomatch.png"], YTF_PERSON) == ["nomatch"]


def test_identity_split_keeps_people_whole_and_reaches_the_share():
    keys = [f"p{i // (1 + i % 7)}" for i in range(500)]
    for fraction in (0.1, 0.5, 0.9):
        mask = identity_split(keys, fraction, seed=3)
        assert mask.sum() >= round(fraction * len(keys))
        chosen = {k for k, m in zip(keys, mask.tolist(), strict=True) if m}
        assert not chosen & {k for k, m in zip(keys, mask.tolist(), strict=True) if not m}  # disjoint people
        biggest = max(keys.count(k) for k in set(keys))
        assert mask.sum() < round(fraction * len(keys)) + biggest
    assert torch.equal(identity_split(keys, 0.3, 1), identity_split(keys, 0.3, 1))
    assert not torch.equal(identity_split(keys, 0.3, 1), identity_split(keys, 0.3, 2))
    assert identity_split(keys, 1.0, 0).all() and not identity_split(keys, 0.0, 0).any()
    assert identity_split(["a", "b"], 0.01, 0).sum() == 1
    with pytest.raises(DataError, match="fraction"):
        identity_split(keys, 1.5, 0)
