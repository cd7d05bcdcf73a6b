"""More PyTorch-style programs run with torch and with distgraph (see test_programs.py): module
containers and buffers, BatchNorm/Dropout modes, param groups, schedulers, the torch.utils.data
toolbox, checkpoints and resuming, packed sequences with attention, and everyday tensor idioms.

Both runs must learn, to comparable results; what does not depend on random numbers (schedules,
shapes, dtypes, state-dict keys, deterministic tensor arithmetic, printing) must be torch's exactly.
distgraph's random streams differ from torch's (see distgraph/random.py), so anything drawn
(splits, samplers, initial weights) is compared only in distribution.
"""
import pytest

from test_programs import run_both

torch = pytest.importorskip("torch")


def test_tabular_bn_containers_param_groups_onecycle_early_stopping(tmp_path):
    t, d = run_both("tabular_bn.py", tmp_path)
    for m in (t, d):
        assert m["test_acc"] > 0.9 and m["test_loss"] < 0.5 * m["start_loss"], (t, d)
        assert m["buffer_kept"] and m["bn_var_positive"] and m["training_flag_after_eval"] is False
        assert m["max_clipped_norm_seen"] > 0 and m["n_steps"] == 13 * m["epochs_run"]
        # BatchNorm counted every training batch up to the best epoch (loaded back with its state)
        assert 0 < m["bn_tracked"] <= m["n_steps"] and m["bn_tracked"] % 13 == 0
    assert abs(t["test_acc"] - d["test_acc"]) < 0.06, (t, d)
    for key in ("state_keys", "buffer_names", "module_kinds", "n_params", "group_wd"):
        assert d[key] == t[key], key
    # OneCycleLR: the same lr, step by step, for both param groups (over the steps both ran)
    n = min(len(t["lrs"]), len(d["lrs"]))
    assert n >= 26
    for k in range(n):
        assert d["lrs"][k] == pytest.approx(t["lrs"][k], rel=1e-12, abs=1e-15), k


def test_data_pipeline_samplers_schedulers_checkpoint_resume(tmp_path):
    t, d = run_both("data_pipeline.py", tmp_path, "{tmp}/ckpt.pt")
    for m in (t, d):
        assert m["accuracy"] > 0.8 and m["start_acc"] < 0.3 and m["top3"] >= m["accuracy"], (t, d)
        assert m["losses"][-1] < 0.5 * m["losses"][0], (t, d)
        # the checkpoint gives back the very model and optimizer that were saved
        assert m["acc_loaded"] == m["acc_at_save"] and m["momentum_restored"] is True
        assert m["confusion_sum"] == 359 and m["confusion_shape"] == [10, 10]
        assert m["confusion_diag"] == round(m["accuracy"] * 359)
        # WeightedRandomSampler rebalances a set with ~16% odd digits to about half
        assert m["odd_share_kept"] < 0.2 and 0.4 < m["odd_share_sampled"] < 0.6, (t, d)
        # ReduceLROnPlateau(patience=0, threshold=0.05): halve after each epoch not 5% better than the best
        lrs, best = [m["lr_loaded"]] + m["plateau_lrs"], float("inf")
        for k, v in enumerate(m["val_losses"]):
            better = v < best * 0.95
            best = v if better else best
            assert lrs[k + 1] == pytest.approx(lrs[k] * (1.0 if better else 0.5), rel=1e-12), (k, m)
    assert abs(t["accuracy"] - d["accuracy"]) < 0.06, (t, d)
    for key in ("split_sizes", "lrs", "lr_loaded", "scheduler_keys", "confusion_shape"):
        assert d[key] == t[key], key
    assert d["lrs"][-1] == pytest.approx(t["lrs"][-1], rel=1e-12)     # SequentialLR(LambdaLR, warm restarts)


def test_text_packed_bigru_attention_with_padding(tmp_path):
    t, d = run_both("text_packed.py", tmp_path, timeout=300)
    for m in (t, d):
        assert m["accuracy"] > 0.65 and m["accuracy"] > m["start_acc"] + 0.2, (t, d)
        # padding: no attention on padded keys, the padding_idx row stays zero and gets no gradient
        assert m["pad_attention_weight"] == 0.0 and m["pad_row_zero"] and m["pad_grad_zero"] and m["pad_row_still_zero"]
        assert m["batch_sizes_sum"] == m["lengths_sum"]
    assert abs(t["accuracy"] - d["accuracy"]) < 0.1, (t, d)
    for key in ("n_lines", "vocab", "padded_shape", "batch_sizes_dtype"):
        assert d[key] == t[key], key


def test_tensor_idioms_around_a_regression(tmp_path):
    t, d = run_both("tensor_idioms_regression.py", tmp_path)
    for m in (t, d):
        assert m["mse"] < 0.7 and m["test_nll"] < m["first_loss"] - 0.08, (t, d)
        assert m["ref_nll"] == pytest.approx(m["test_nll"], rel=1e-5)   # by hand == F.gaussian_nll_loss
        assert m["reproducible"] is True                                  # torch.manual_seed(0) twice
    assert abs(t["mse"] - d["mse"]) < 0.15, (t, d)
    # no random numbers reach these: torch's values, exactly (floats to float32 rounding)
    for key in ("feat_shape", "feat_dtype", "w_dtype", "w_item_type", "bin_counts", "cum_counts", "bins_dtype",
                "repr_small", "str_int", "format", "tolist_nested", "repr_bool"):
        assert d[key] == t[key], (key, t[key], d[key])
    for key in ("bin_means", "per_sample_head", "curve", "nearest"):
        assert d[key] == pytest.approx(t[key], rel=1e-6, abs=1e-7), key
