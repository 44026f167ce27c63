import pytest
import torch

from modseg_ros.core.types import MODALITIES, all_subsets
from modseg_ros.model.architectures import ARCHITECTURES, build
from modseg_ros.model.cmtb import CrossModalBlock
from modseg_ros.model.fusion import MeanFusion, ModalityAgnosticFusion
from modseg_ros.model.segmenter import FrameModel, ModalBatch
from modseg_ros.model.sidecar import SegmenterConfig

SIZE = (32, 64)


@pytest.fixture(scope="module", params=list(ARCHITECTURES))
def model(request):
    torch.manual_seed(0)
    model = build(SegmenterConfig(arch=request.param, input_size=SIZE))
    with torch.no_grad():  # leave the symmetric initialisation (unit LayerNorms make MFF's 2-way ties exact)
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_every_subset_gives_logits_weights_and_gradients(model):
    frame = FrameModel(model.train())
    images = torch.randn(len(MODALITIES), 3, *SIZE)
    for subset in all_subsets():
        idx = torch.tensor([MODALITIES.index(m) for m in subset])
        model.zero_grad()
        logits, weights, consistency = frame(images[idx], idx, torch.ones(len(subset), dtype=torch.bool))
        assert logits.shape == (1, 25, SIZE[0] // 4, SIZE[1] // 4)
        assert weights.shape == (len(subset),) and float(weights.detach().sum()) == pytest.approx(1.0, abs=1e-5)
        assert consistency.shape == (len(subset),)
        if model.late_fusion and len(subset) >= 3:
            assert ((consistency > 0) & (consistency <= 1 + 1e-6)).all()
        else:  # two sensors cannot say which one is wrong; early-fusion models have no per-modality decode
            assert torch.isnan(consistency).all()
        logits.square().mean().backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert any(float(g.abs().sum()) > 0 for g in grads)


def test_a_masked_batch_equals_each_sample_run_alone(model):
    """Training masks absent modalities in a batch; inference stacks only the present ones."""
    if model.config.arch == "cmnext":
        pytest.skip("the CMNeXt-style baseline zero-fills by design")
    model.eval()
    images = torch.randn(4, 3, 3, *SIZE)
    present = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 1, 0], [0, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        batched = model(ModalBatch(images, torch.arange(4), present))
        for b in range(3):
            slots = present[:, b].nonzero().squeeze(1)
            alone = model(ModalBatch(images[slots, b : b + 1], slots))
            assert torch.allclose(batched.logits[b], alone.logits[0], atol=1e-4)
            assert torch.allclose(batched.modality_weights[slots, b], alone.modality_weights[:, 0], atol=1e-5)
            assert float(batched.modality_weights[~present[:, b], b].abs().sum()) == 0.0


def test_an_excluded_modality_is_left_out_of_the_fusion_but_still_scored(model):
    model.eval()
    frame = FrameModel(model)
    images = torch.randn(4, 3, *SIZE)
    index = torch.arange(4)
    fused = torch.tensor([True, True, False, True])
    with torch.no_grad():
        logits, weights, consistency = frame(images, index, fused)
        without, _, _ = frame(images[fused], index[fused], torch.ones(3, dtype=torch.bool))
        _, _, all_fused = frame(images, index, torch.ones(4, dtype=torch.bool))
    assert torch.allclose(logits, without, atol=1e-4) and float(weights[2]) == 0.0
    if model.late_fusion:  # the score depends on the inputs, not on what is fused
        assert torch.isfinite(consistency).all() and torch.allclose(consistency, all_fused)


def test_mff_weights_the_consensus_modality_highest_and_selects_the_most_consistent():
    torch.manual_seed(1)
    common = torch.randn(1, 8, 4, 4)
    features = torch.stack([common + 0.8 * torch.randn_like(common), common + 0.8 * torch.randn_like(common), common])
    features[2] = features[:2].mean(dim=0)  # modality 2 is exactly the consensus of the three
    fused = ModalityAgnosticFusion(temperature=0.1)(features, None)
    assert (fused.weights.argmax(dim=0) == 2).all()
    assert torch.allclose(fused.weights.sum(dim=0), torch.ones(1, 4, 4))
    # f_ma = f_mb + f_ms and the selected one is the modality closest to f_mb: modality 2 here
    blended = (fused.weights[:, :, None] * features).sum(dim=0)
    assert torch.allclose(fused.feature, blended + features[2], atol=1e-5)


def test_mff_with_one_modality_and_mean_fusion_ignore_absent_slots():
    x = torch.randn(3, 2, 4, 2, 2)
    present = torch.tensor([[True, False], [True, True], [False, False]])
    mff = ModalityAgnosticFusion()(x, present)
    assert torch.allclose(mff.feature[1], 2 * x[1, 1], atol=1e-5)  # alone: f_mb = f_ms = F
    assert torch.allclose(mff.weights[:, 1], torch.tensor([0.0, 1.0, 0.0])[:, None, None].expand(3, 2, 2))
    mean = MeanFusion()(x, present)
    assert torch.allclose(mean.feature[0], (x[0, 0] + x[1, 0]) / 2)


def test_cmtb_primary_attends_only_to_present_auxiliaries_and_selection_follows_its_score():
    torch.manual_seed(2)
    block = CrossModalBlock(dim=8, heads=2, sr_ratio=1)
    torch.nn.init.normal_(block.attn.proj.weight)  # leave the identity start
    x = torch.randn(3, 1, 8, 4, 4)
    changed = x.clone()
    changed[2] += 5.0  # an absent slot's content must not matter
    present = torch.tensor([[True], [True], [False]])
    a, fa = block(x, present)
    b, fb = block(changed, present)
    assert torch.allclose(a[:2], b[:2], atol=1e-5) and torch.allclose(fa.feature, fb.feature, atol=1e-5)
    assert not torch.allclose(a[0], x[0])  # primary 0 received its auxiliary's information
    alone, _ = block(x[:1], None)
    assert torch.equal(alone, x[:1])  # no auxiliary: nothing to attend to
    with torch.no_grad():
        block.score.weight.zero_()
        block.score.bias.zero_()
        block.score.weight[0, 0] = 10.0  # score = 10 × channel 0
    y = torch.zeros(2, 1, 8, 1, 1)
    y[1, 0, 0] = 1.0
    _, fused = block(y, None)
    assert fused.weights[1].item() > 0.99  # the selection picks the higher-scored modality
