"""A frame index means the n-th decodable frame of a video, whatever its time stamps: read_frames on
files with irregular time stamps (an AVI with empty chunks, whose header over-counts), variable frame
rate (mp4, mkv) and regular ones, compared with a full decode. Frame folders read in numeric order."""
import av
import numpy as np
import pytest

import data
from support import decode

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


def write_timed(path, pts, codec="mpeg4", gop=12):
    """Encode frame i (id_frame(i)) with presentation time pts[i] in the codec's time base (1/25 s)."""
    with av.open(path, "w") as c:
        st = c.add_stream(codec, rate=25)
        st.width = st.height = SIZE
        st.pix_fmt = "yuv420p"
        st.codec_context.gop_size = gop
        for i, p in enumerate(pts):
            f = av.VideoFrame.from_ndarray(id_frame(i), format="rgb24")
            f.pts = int(p)
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
    with av.open(path) as c:
        stream = c.streams.video[0]
        grid = decode._time_grid(c, stream)
        if name not in ("avi-regular", "mp4-regular-h264"):
            assert grid is None, name
            return
        assert grid[3] == N and len(grid[2]) > 2  # key frames to seek to
        got = decode._decode_seeking(c, stream, [40, 41, 60, 75], grid)
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
    raw = clip[0] * np.array(data.IMAGENET_STD).reshape(1, 3, 1, 1) + np.array(data.IMAGENET_MEAN).reshape(1, 3, 1, 1)
    ids = frame_ids((raw.permute(0, 2, 3, 1).numpy() * 255).round().clip(0, 255).astype(np.uint8))
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
