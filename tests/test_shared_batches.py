"""Batches from loader workers through shared memory (support/loading.py, SharedBatches): exactly the
items, as tensors of their own; items of another kind go through torch's collate; an overwritten slot is
an error, never a mixed batch; spawned workers share the ring too. And the pieces around it: clips stay
channels-last until the model, and a file is opened with the demuxer its extension names, or probed."""
import os
import pickle
import shutil

import numpy as np
import pytest
import torch
from torch._utils import ExceptionWrapper

import backbones
import data
from support import decode, loading, probe, synthetic
from support.system import stop_workers


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("shared") / "set")
    synthetic.write_synthetic(root, classes=2, videos_per_class=4, size=24, frames=10, seed=3)
    return root


def in_process(ds, order):
    items = [ds[i] for i in order]
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@pytest.mark.parametrize("train", [True, False])
def test_worker_batches_are_the_items_and_each_its_own_tensor(tiny, train):
    ds = data.build_dataset("synthetic", tiny, train=train, segments=2, frames=2, crop_size=16, clips=2, crops=3)
    order = [i % len(ds) for i in range(10)]        # 10 items in batches of 3: the last one holds 1
    loader = data.data_loader(ds, 3, order, 2, ds.item_shape)
    assert isinstance(loader.collate_fn, loading.SharedBatches)
    batches = list(loader)                          # all held at once: a view of a reused slot would change
    clips, labels = torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches])
    want_clips, want_labels = in_process(ds, order)
    assert [x.shape[0] for x, _ in batches] == [3, 3, 3, 1]
    assert clips.dtype == torch.uint8 and clips.shape[1:] == ds.item_shape
    assert torch.equal(clips, want_clips) and torch.equal(labels, want_labels)
    assert len({x.untyped_storage().data_ptr() for x, _ in batches}) == len(batches)


class FloatItems(torch.utils.data.Dataset):
    def __len__(self):
        return 5

    def __getitem__(self, i):
        return torch.full((2, 3, 4, 4), float(i)), i


class Triples(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((2, 3, 4, 4), i, dtype=torch.uint8), i, f"v{i}"


def test_items_of_another_kind_go_through_torch_collate():
    batches = list(data.data_loader(FloatItems(), 2, list(range(5)), 2, (2, 3, 4, 4)))
    assert [x.dtype for x, _ in batches] == [torch.float32] * 3
    assert torch.cat([y for _, y in batches]).tolist() == [0, 1, 2, 3, 4]
    assert [float(x[0, 0, 0, 0, 0]) for x, _ in batches] == [0.0, 2.0, 4.0]
    batches = list(data.data_loader(Triples(), 2, list(range(4)), 2, (2, 3, 4, 4)))   # a third field
    assert [list(names) for _, _, names in batches] == [["v0", "v1"], ["v2", "v3"]]
    assert torch.cat([x[:, 0, 0, 0, 0] for x, _, _ in batches]).tolist() == [0, 1, 2, 3]


def test_a_slot_written_again_before_it_is_read_is_an_error(monkeypatch):
    ring = loading.SharedBatches((2, 3, 4, 4), batch_size=2, workers=1)   # worker 0: slots 0, 1
    monkeypatch.setattr(torch.utils.data, "get_worker_info", lambda: type("Info", (), {"id": 0})())
    batch = [(torch.full((2, 3, 4, 4), k, dtype=torch.uint8), k) for k in (7, 9)]
    sent = pickle.dumps(ring(batch))                 # what a worker puts in its queue
    clips, labels = pickle.loads(sent)               # what the parent gets: the batch, copied out
    assert clips[:, 0, 0, 0, 0].tolist() == [7, 9] and labels.tolist() == [7, 9]
    for _ in range(2):                               # the worker comes round to slot 0 again
        ring(batch)
    late = pickle.loads(sent)                        # handed to the loop, which raises it in its own thread
    assert isinstance(late, ExceptionWrapper)
    with pytest.raises(RuntimeError, match="overwritten"):
        late.reraise()


def test_a_batch_that_cannot_be_received_raises_its_own_message_in_the_loop(tiny):
    ds = data.build_dataset("synthetic", tiny, segments=2, frames=2, crop_size=16)
    loader = data.data_loader(ds, 2, [0, 1, 2, 3], 1, ds.item_shape)
    del loading._RINGS[loader.collate_fn.key]        # the parent has lost its ring
    batches = iter(loader)
    try:
        with pytest.raises(RuntimeError, match="no ring for"):
            next(batches)
    finally:
        stop_workers(batches)


def test_float_probe_clips_take_no_ring(tiny):
    ds = data.build_dataset("synthetic", tiny, train=False, segments=2, frames=2, crop_size=16)
    assert probe.StaticProbeDataset(ds, "frozen").item_shape == ds.item_shape
    conflict = probe.StaticProbeDataset(ds, "conflict")
    assert conflict.item_shape is None
    assert not isinstance(data.data_loader(conflict, 2, [0, 1], 2, None).collate_fn, loading.SharedBatches)


def test_spawned_workers_fill_the_ring_too(tiny):
    ds = data.build_dataset("synthetic", tiny, segments=2, frames=2, crop_size=16)
    ring = loading.SharedBatches(ds.item_shape, 2, workers=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=[2, 1, 3], num_workers=1, collate_fn=ring,
                                         multiprocessing_context="spawn")
    clips, labels = zip(*loader)
    want_clips, want_labels = in_process(ds, [2, 1, 3])
    assert torch.equal(torch.cat(clips), want_clips) and torch.equal(torch.cat(labels), want_labels)


def test_clips_stay_channels_last_until_the_model_makes_them_contiguous():
    frames = np.random.default_rng(0).integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    for box in ((2, 3, 14, 17), (0, 0, 16, 16)):   # resized, and a bare crop of the right size
        x = data.crop_pixels(frames, box, 16, flip=True)
        assert x.shape == (4, 3, 16, 16) and x.is_contiguous(memory_format=torch.channels_last)
        ref = torch.from_numpy(np.ascontiguousarray(frames[:, box[0]:box[0] + 16, box[1]:box[1] + 16]))
        if box[2:] == (16, 16):
            assert torch.equal(x, ref.permute(0, 3, 1, 2).flip(-1))
    torch.manual_seed(0)
    model = backbones.build_model("tsm", 3, segments=2, frames=3, small=True, depth=18).eval()
    clip = torch.randint(0, 256, (2, 6, 3, 16, 16), dtype=torch.uint8)
    last = clip.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)   # same values, channels-last
    with torch.no_grad():
        assert torch.equal(model(clip).logits, model(last).logits)


def test_a_file_opens_with_the_demuxer_its_name_says_or_is_probed(tmp_path):
    src = str(tmp_path / "v.avi")
    synthetic.write_video(src, np.random.default_rng(1).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8))
    with decode._open(src) as c:
        assert c.format.name == "avi"
    liar = str(tmp_path / "v.mp4")                   # an AVI named .mp4: the mp4 demuxer refuses it
    shutil.copy(src, liar)
    with decode._open(liar) as c:
        assert c.format.name == "avi"
    assert np.array_equal(decode.read_frames(liar, [0, 3, 5]), decode.read_frames(src, [0, 3, 5]))
    assert os.path.getsize(liar) == os.path.getsize(src)
