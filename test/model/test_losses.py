import torch

from modseg_ros.model.losses import lscd_loss, ohem_cross_entropy, random_teacher_split, sgm_loss
from modseg_ros.model.teacher import TextTeacher


def test_lscd_is_zero_when_every_modality_embeds_like_the_teacher_and_positive_otherwise():
    torch.manual_seed(0)
    teacher = torch.randn(6, 16)
    present = torch.ones(4, 6, dtype=torch.bool)
    present[3, :4] = False
    inter, intra = lscd_loss(teacher[None].repeat(4, 1, 1), present, teacher)
    assert float(inter) < 1e-6 and float(intra) < 1e-6
    student = torch.randn(4, 6, 16, requires_grad=True)
    inter, intra = lscd_loss(student, present, teacher)
    assert float(inter.detach()) > 1e-3 and float(intra.detach()) > 1e-3
    (inter + intra).backward()
    assert student.grad[3, :4].abs().sum() == 0  # absent slots get no gradient


def test_sgm_is_zero_when_students_equal_teachers_and_positive_otherwise():
    torch.manual_seed(0)
    labels = torch.randint(0, 5, (2, 16, 16))
    labels[0, :4] = 255
    present = torch.ones(3, 2, dtype=torch.bool)
    teachers = torch.tensor([[True, False], [False, True], [False, False]])
    same = torch.randn(1, 2, 8, 8, 8).repeat(3, 1, 1, 1, 1)
    assert float(sgm_loss([same], present, labels, 25, teachers)) < 1e-6
    different = torch.randn(3, 2, 8, 8, 8, requires_grad=True)
    loss = sgm_loss([different], present, labels, 25, teachers)
    assert float(loss) > 1e-3
    loss.backward()
    assert different.grad[0, 0].abs().sum() == 0  # teachers are detached
    assert different.grad[1, 0].abs().sum() > 0


def test_random_teacher_split_keeps_a_teacher_and_a_student_in_every_sample():
    present = torch.tensor([[1, 1, 0, 1], [1, 0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    for seed in range(20):
        teachers = random_teacher_split(present, torch.Generator().manual_seed(seed))
        assert not (teachers & ~present).any()
        n = present.sum(dim=0)
        t = teachers.sum(dim=0)
        assert ((t >= 1) & (t <= n - 1))[n >= 2].all() and (t[n < 2] == 0).all()


def test_ohem_keeps_the_hardest_sixteenth_at_least():
    logits = torch.zeros(1, 3, 4, 8)
    logits[0, 0] = 10.0  # confident class 0 everywhere
    labels = torch.zeros(1, 4, 8, dtype=torch.long)
    labels[0, 0, :2] = 1  # two wrong pixels: the only hard ones
    labels[0, 3] = 255
    loss = ohem_cross_entropy(logits, labels)
    assert torch.isclose(loss, torch.tensor(10.0), atol=1e-3)  # CE of the two wrong pixels
    easy = torch.zeros(1, 4, 8, dtype=torch.long)
    assert float(ohem_cross_entropy(logits, easy)) < 1e-3  # nothing hard: the top n/16, all easy


def test_text_teacher_scenes_follow_their_content():
    teacher = TextTeacher.load()
    road, sky = torch.full((1, 4, 4), 6), torch.full((1, 4, 4), 12)
    both = torch.cat([road, road, sky])
    emb = teacher.scene_embeddings(both, ["sun", "night", "sun"])
    assert emb.shape == (3, 384)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2])  # same content, other weather: closer
