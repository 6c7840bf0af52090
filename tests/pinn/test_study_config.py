"""Config keys of the study's speed paths: validated, recorded, and used by training."""
import pytest
import torch

from pinn.studies.pinn_compare import (DEFAULT_CONFIG, FULL_CONFIG, adam_optimizer,
                                       check_config)


@pytest.mark.parametrize("key, bad", [("h_forward", "dense"), ("h_forward", None),
                                      ("adam_fused", "yes"), ("adam_fused", 1)])
def test_bad_speed_keys_are_refused_by_name(key, bad):
    cfg = dict(DEFAULT_CONFIG, **{key: bad})
    with pytest.raises(ValueError, match=key):
        check_config(cfg)


def test_both_configs_use_the_fast_paths():
    for cfg in (DEFAULT_CONFIG, FULL_CONFIG):
        assert cfg["h_forward"] == "assembled" and cfg["adam_fused"] is True
        check_config(dict(cfg))


@pytest.mark.parametrize("fused", [True, False])
def test_adam_optimizer(fused):
    p = torch.nn.Parameter(torch.ones(3))
    opt = adam_optimizer(0.25, fused)([p])
    assert isinstance(opt, torch.optim.Adam)
    assert opt.param_groups[0]["lr"] == 0.25 and bool(opt.param_groups[0]["fused"]) is fused
