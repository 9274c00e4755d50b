from __future__ import annotations

import pytest

from controller.planner.instances import instances_for_share


@pytest.mark.parametrize(("share", "cores", "expected"), [
    (0.0, 2, 1),     # no share: still one instance, so the camera's requests are answered
    (0.1, 2, 1),
    (0.25, 2, 1),    # a full share: one instance keeps up with every frame
    (0.26, 2, 2),
    (0.5, 8, 2),
    (1.0, 8, 4),     # max_instances
    (1.0, 2, 2),     # CPU instances beyond the cores only contend
    (1.0, None, 4),  # GPU instances: no core cap
])
def test_one_instance_per_full_share_within_the_caps(share, cores, expected) -> None:
    assert instances_for_share(share, full_share=0.25, max_instances=4, cores=cores) == expected
