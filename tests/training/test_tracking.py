import json

from training.run.tracking import MetricsLogger, read_metrics


def test_metrics_rows_and_truncation_on_resume(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=True) as m:
        for step in range(1, 6):
            m.log(step, {"loss": 1.0 / step, "bad": float("nan")})
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["bad"] == "nan"  # JSON has no NaN: kept visible as a string
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    with MetricsLogger(tmp_path, tensorboard=False, resume_step=3) as m:  # resumed from checkpoint step-3
        m.log(4, {"loss": 0.1})
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    with MetricsLogger(tmp_path, tensorboard=False, resume_step=-1):  # starting over: no old history kept
        pass
    assert read_metrics(tmp_path) == []
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\nnot json\n')
    assert read_metrics(tmp_path) == [{"step": 1}]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0]) == {"step": 1}


def test_clip_and_step_skips_nonfinite():
    import torch

    from training.trainers.optim import clip_and_step

    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([p], lr=0.1)
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    norm, ok = clip_and_step([p], opt, 1.0, loss_value=1.0)
    assert ok and norm == 5.0 and p.grad is None
    torch.testing.assert_close(p.detach(), torch.tensor([1 - 0.06, 1 - 0.08, 1.0]))
    p.grad = torch.tensor([float("nan"), 0.0, 0.0])
    before = p.detach().clone()
    _, ok = clip_and_step([p], opt, 1.0, loss_value=1.0)
    assert not ok and torch.equal(p.detach(), before)
    p.grad = torch.tensor([1.0, 0.0, 0.0])
    _, ok = clip_and_step([p], opt, 0.0, loss_value=float("inf"))
    assert not ok and torch.equal(p.detach(), before)
