"""A frame index means the n-th decodable frame of a video, whatever its time stamps: read_frames on
files with irregular time stamps (an AVI with empty chunks, whose header over-counts), variable frame
rate (mp4, mkv) and regular ones, compared with a full decode. Frame folders read in numeric order."""
from fractions import Fraction

import av
import numpy as np
import pytest

import data
from support import decode, synthetic

SIZE, BLOCK = 32, 8  # 4 x 4 blocks of 8 px: 16 bits of frame number per frame


def id_frame(i):
    """A frame whose 16 blocks spell the bits of i (dark 0, bright 1): survives any codec at this size."""
    bits = [(i >> b) & 1 for b in range(16)]
    img = np.array(bits, np.uint8).reshape(4, 4) * 190 + 30
    return np.repeat(np.repeat(img, BLOCK, 0), BLOCK, 1)[..., None].repeat(3, -1)


def frame_ids(frames):
    """The frame number spelled by each decoded frame (N, H, W, 3)."""
    blocks = frames.reshape(len(frames), 4, BLOCK, 4, BLOCK, 3).mean((2, 4, 5)) > 125  # (N, 4, 4)
    return [int(sum(int(b) << k for k, b in enumerate(bl.reshape(-1)))) for bl in blocks]


def write_timed(path, pts, codec="mpeg4", gop=12, rate=25):
    """Encode frame i (id_frame(i)) with presentation time pts[i] in the codec's time base (1/rate s; any
    rate, also one that write_video would rescale)."""
    with av.open(path, "w") as c:
        st = c.add_stream(codec, rate=rate)
        st.width = st.height = SIZE
        st.pix_fmt = "yuv420p"
        st.codec_context.gop_size = gop
        st.codec_context.time_base = 1 / Fraction(rate)
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(id_frame(i), format="rgb24")
            f.pts, f.time_base = int(p), 1 / Fraction(rate)
            for pkt in st.encode(f):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def full_decode(path):
    with av.open(path) as c:
        return frame_ids(np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)]))


N = 80
GAPS = np.random.default_rng(0).integers(1, 12, size=N)  # irregular: 1 to 11 ticks between frames
IRREGULAR = np.concatenate([[0], np.cumsum(GAPS)[:-1]])
VFR = np.concatenate([np.arange(30), 30 + 3 * np.arange(25), 105 + np.arange(25)])  # 1, 3, then 1 tick
CASES = {
    "avi-empty-chunks": ("avi", "mpeg4", IRREGULAR, 8),
    "mp4-irregular": ("mp4", "mpeg4", IRREGULAR, 8),
    "mp4-vfr-h264": ("mp4", "libx264", VFR, 10),
    "mkv-vfr": ("mkv", "mpeg4", VFR, 10),
    "avi-regular": ("avi", "mpeg4", np.arange(N), 8),
    "mp4-regular-h264": ("mp4", "libx264", np.arange(N), 10),
}
INDEX_SETS = [[0, 1, 2, 3], [33, 34, 35, 36], [40, 41, 50, 51, 70, 71], [5, 45, 79], [79, 0, 52, 52, 40],
              list(range(32, 80, 3)), [60, 61, 62, 63, 72, 73, 74, 75]]


@pytest.fixture(scope="module", params=sorted(CASES))
def timed(request, tmp_path_factory):
    ext, codec, pts, gop = CASES[request.param]
    path = write_timed(str(tmp_path_factory.mktemp("timed") / f"v.{ext}"), pts, codec, gop)
    assert full_decode(path) == list(range(N))  # every frame decodes, in order
    return request.param, path


def test_an_index_is_the_nth_decoded_frame_with_or_without_seeking(timed):
    name, path = timed
    for idx in INDEX_SETS:
        assert frame_ids(data.read_frames(path, idx, N)) == idx, (name, idx)
    # the same index gives the same frame whatever else a call asks for
    alone = [frame_ids(data.read_frames(path, [i], N))[0] for i in (40, 50, 64, 79)]
    assert alone == [40, 50, 64, 79], name
    assert data.decodable_frames(path) == N


def test_regular_files_seek_and_irregular_ones_count(timed):
    """Seeking is taken where the packets sit on a regular time grid (and then lands on the right frames);
    every irregular file has no grid and is read by counting."""
    name, path = timed
    with decode.open_video(path) as v:
        grid = v.grid()
        if name not in ("avi-regular", "mp4-regular-h264"):
            assert grid is None, name
            return
        assert grid.count == N and grid.k0 == 0 and len(grid.keys) > 2  # key frames to jump to
        got = v._jumping([40, 41, 60, 75])
    assert sorted(got) == [40, 41, 60, 75] and frame_ids(np.stack([got[i] for i in sorted(got)])) == sorted(got)


def test_past_the_decodable_end_is_short_not_a_wrong_frame(timed):
    """Without a count, read_frames trusts the header; the AVI's header counts its empty chunks too
    (as in real UCF101 files), so an index past the 80 frames that decode is a ShortVideo."""
    name, path = timed
    header = data.count_frames(path)
    assert frame_ids(data.read_frames(path, [10, 44, 78])) == [10, 44, 78], name
    if header > N:
        with pytest.raises(data.ShortVideo) as e:
            data.read_frames(path, [40, N + 5])
        assert e.value.decoded == N and e.value.expected == header
    assert frame_ids(data.read_frames(path, [N + 5], N)) == [N - 1]  # at or past the count: the last frame


def test_test_clip_of_an_irregular_video_follows_the_decode_order(tmp_path):
    """The dataset on the AVI with empty chunks: S*T frames in true decode order, no segment one frame
    repeated (what seeking by time stamp gave)."""
    path = write_timed(str(tmp_path / "v.avi"), IRREGULAR, "mpeg4", 8)
    ds = data.VideoDataset([(path, 0)], ["a"], train=False, segments=4, frames=4, crop_size=SIZE)
    with pytest.warns(data.ShortVideoWarning):
        clip, _ = ds[0]
    ids = frame_ids(clip[0].permute(0, 2, 3, 1).numpy())  # uint8 pixels (N, H, W, 3)
    assert ids == data.sparse_indices(N, 4, 4, False).tolist()


def test_frame_folders_are_read_in_numeric_order(tmp_path):
    from PIL import Image
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(40):  # 1.png ... 40.png: alphabetical order would put 10.png after 1.png
        Image.fromarray(id_frame(i)).save(str(folder / f"{i + 1}.png"))
    idx = list(range(0, 40, 4))
    assert frame_ids(data.read_frames(str(folder), idx)) == idx
    assert data.count_frames(str(folder)) == 40
    # zero-padded and prefixed names (img_00001.jpg) keep their order too
    other = tmp_path / "padded"
    other.mkdir()
    for i in range(12):
        Image.fromarray(id_frame(i)).save(str(other / f"img_{i + 1:05d}.png"))
    assert frame_ids(data.read_frames(str(other), [0, 5, 11])) == [0, 5, 11]


def cut_mid_gop(src, dst, skip):
    """Stream-copy `src` from its packet `skip` on (no re-encoding): a cut that starts mid-GOP, whose
    leading packets reference frames it no longer holds and decode to nothing; the header still counts
    them."""
    with av.open(src) as i, av.open(dst, "w") as o:
        s = i.streams.video[0]
        t = o.add_stream_from_template(s)
        for k, p in enumerate(x for x in i.demux(s) if x.size):
            if k >= skip:
                p.stream = t
                o.mux(p)
    return dst


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_a_cut_that_starts_mid_gop_gives_one_frame_per_index(tmp_path, monkeypatch, ext):
    """H.264, key frames every 20 frames, cut at packet 5: 75 packets in the header, frames 20..79 (60)
    decode. Index n is the n-th of those whatever else a call asks for, by jumping or by counting; an
    index past them is a ShortVideo with the decodable count; the dataset learns it and samples from it."""
    full = synthetic.write_video(str(tmp_path / f"full.{ext}"), np.stack([id_frame(i) for i in range(N)]),
                                 codec="libx264", gop=20, options={"bf": "0", "sc_threshold": "0"}) and \
        str(tmp_path / f"full.{ext}")
    path = cut_mid_gop(full, str(tmp_path / f"cut.{ext}"), 5)
    ids = full_decode(path)
    n = len(ids)
    assert data.count_frames(path) == N - 5 and ids == list(range(20, N)) and data.decodable_frames(path) == n
    with decode.open_video(path) as v:
        assert v.grid().k0 == 15  # the first frame that decodes sits in packet slot 15
    for idx in [[40], [3, 40], [0, 1, 2, 3], [33, 34, 35, 36], [5, 45, 59], [59, 0, 52, 52, 40], [*range(16, 60, 3)]]:
        assert frame_ids(data.read_frames(path, idx)) == [ids[i] for i in idx], idx
    assert [frame_ids(data.read_frames(path, [i]))[0] for i in (17, 40, 50, 59)] == [ids[i] for i in (17, 40, 50, 59)]
    for idx in ([70], [3, 70], [40, 41, 62]):  # past the decodable frames: short, from either path
        with pytest.raises(data.ShortVideo) as e:
            data.read_frames(path, idx, N - 5)  # (an mkv header has no count: count_frames counts packets)
        assert (e.value.decoded, e.value.expected) == (n, N - 5)
    ds = data.VideoDataset([(path, 0)], ["a"], train=False, segments=4, frames=4, crop_size=SIZE)
    with pytest.warns(data.ShortVideoWarning):
        clip, _ = ds[0]
    got = frame_ids(clip[0].permute(0, 2, 3, 1).numpy())  # uint8 pixels (N, H, W, 3)
    assert ds.num_frames(0) == n and got == [ids[i] for i in data.sparse_indices(n, 4, 4, False)]
    # with the count learned, the frames come from jumping to key frames alone
    monkeypatch.setattr(decode.Video, "_counting", lambda v, w: pytest.fail("counted from the start"))
    assert frame_ids(data.read_frames(path, [2, 40, 41, 59], n)) == [ids[i] for i in (2, 40, 41, 59)]
