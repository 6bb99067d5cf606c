"""scripts/claptrainref.py, the PyTorch reference clap-train is checked
against, checked itself: its modules load the published state_dict layout
(clapref.random_state_dict) with every parameter accounted for; in eval mode
it computes what clapref.py (the reference clap-audio/clap-text are tested
against) computes; the four AdamW groups partition the parameters as
configure_optimizers does; the schedule is update_lr's (linear warm-up over
one epoch from 0, cosine from epoch 1 to 15, then 1e-7); a training step in
train mode updates BatchNorm's running statistics and moves every group."""
import math

import torch
import torch.nn.functional as F

from tap import check, done, note
import clapref
import claptrainref as R

torch.set_num_threads(1)
cfg = clapref.Config.tiny()
sd = clapref.random_state_dict(cfg, seed=1)
m = R.Clap(cfg)
m.load_published(sd)
names = set(m.state_dict())
skipped = sorted(k for k in sd if k not in names)
check("every module tensor comes from the published state_dict; only front end, temp, position_ids and "
      "num_batches_tracked are left", all(("audio_feats_extractor" in k or k == "temp" or "position_ids" in k
                                           or "num_batches_tracked" in k) for k in skipped), skipped)

g = torch.Generator().manual_seed(2)
B, T, L = 3, 70, 9
mel = torch.randn(B, T, cfg.n_mels, generator=g) * 10 - 40
ids = torch.randint(1000, cfg.vocab, (B, L), generator=g)
ids[:, 0] = 101
mask = torch.ones(B, L)
mask[1, 6:] = 0
mask[2, 4:] = 0
m.eval()
with torch.no_grad():
    ea = F.normalize(m.project_audio(mel), dim=-1)
    et = F.normalize(m.project_text(ids, mask), dim=-1)
ra = torch.cat([clapref.audio_forward(sd, mel[i]) for i in range(B)])
rt = torch.cat([clapref.text_forward(sd, cfg, ids[i:i + 1, :int(mask[i].sum())]) for i in range(B)])
da, dt = (ea - ra).abs().max().item(), (et - rt).abs().max().item()
check("eval mode = clapref.py's audio and text embeddings (padded batch vs one caption at a time) within 1e-5",
      da < 1e-5 and dt < 1e-5, "%.2e %.2e" % (da, dt))
note("eval-mode reference vs clapref: audio %.1e, text %.1e" % (da, dt))

opt = R.optimizer(m, lr=2e-5)
n_by_group = [len(gr["params"]) for gr in opt.param_groups]
total = sum(1 for _ in m.parameters())
check("four AdamW groups (audio encoder, text encoder, audio projection, text projection) cover every parameter "
      "once", sum(n_by_group) == total and all(n_by_group) and opt.defaults["betas"] == (0.9, 0.999)
      and opt.defaults["eps"] == 1e-8 and opt.defaults["weight_decay"] == 0.0, n_by_group)

lr = 2e-5
cases = [(0.0, 0.0), (0.5, lr / 2), (1.0, lr), (8.0, 1e-7 + (lr - 1e-7) * 0.5), (15.0, 1e-7), (19.9, 1e-7)]
bad = [(e, R.schedule(e, lr), v) for e, v in cases if abs(R.schedule(e, lr) - v) > 1e-12 * lr]
check("schedule = update_lr (linear warm-up, cosine 1..15, min 1e-7)", not bad, bad)

m.train()
bn = m.audio_encoder.audio_enc.conv_block2.bn1
rm0 = bn.running_mean.clone()
before = [p.detach().clone() for p in m.parameters()]
ls, ld, loss = R.train_step(m, opt, mel, ids, mask, torch.tensor([0, 0, 1]), step=3, steps_per_epoch=10)
moved = [not torch.equal(a, p.detach()) for a, p in zip(before, m.parameters())]
lrs = [gr["lr"] for gr in opt.param_groups]
check("a training step: finite loss, running statistics updated, every group moved, lr = 0.3 epoch of warm-up",
      math.isfinite(loss) and not torch.equal(rm0, bn.running_mean) and all(moved)
      and all(abs(x - 0.3 * lr) < 1e-15 for x in lrs), (loss, sum(moved), lrs))
done()
