"""The streaming path's pieces: ordered chunks through a pool, the .npy writer, the limits."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from PIL import Image

from fmnist.cli.outputs import check_not_inputs
from fmnist.errors import InputError
from fmnist.runtime import stream
from fmnist.runtime.images import is_blank, load_image
from fmnist.runtime.limits import check_seed, parse_pixels, shown_pixels


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(40):
        a = np.zeros((28, 28), np.uint8)
        a[i % 28, :] = 200  # image i lights row i % 28
        paths.append(tmp_path / f"{i:02d}.png")
        Image.fromarray(a).save(paths[-1])
    return paths


@pytest.mark.parametrize("jobs", [1, 3])
def test_batches_come_in_input_order(files, monkeypatch, jobs):
    monkeypatch.setattr(stream, "CHUNK", 3)
    batches = list(stream.ImageStream(files, "no", None, jobs, batch=7))
    assert [len(paths) for paths, _ in batches] == [7, 7, 7, 7, 7, 5]
    paths = [p for ps, _ in batches for p in ps]
    images = np.concatenate([x for _, x in batches])
    assert paths == files
    assert images.argmax(1).max(1).tolist() == [i % 28 for i in range(40)]


def test_a_first_batch_may_be_smaller(files, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK", 3)
    batches = list(stream.ImageStream(files, "no", None, 2, batch=16, first=3))
    assert [len(paths) for paths, _ in batches] == [3, 16, 16, 5]
    assert [p for ps, _ in batches for p in ps] == files


def test_a_stream_entered_decodes_before_it_is_iterated(files, monkeypatch, tmp_path):
    import time

    monkeypatch.setattr(stream, "CHUNK", 3)
    real = stream.decode_chunk
    marks = tmp_path / "marks"
    marks.mkdir()

    def marked(paths, *options):  # runs in the workers: a file per chunk tells this process
        (marks / paths[0].name).touch()
        return real(paths, *options)

    monkeypatch.setattr(stream, "decode_chunk", marked)
    with stream.ImageStream(files, "no", None, 2, batch=7) as images:
        deadline = time.monotonic() + 10
        while not any(marks.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert any(marks.iterdir()), "nothing was decoded before the stream was iterated"
        assert images.model_threads() == max(1, min(stream.default_jobs() - 2, 4))
        assert [p for ps, _ in images for p in ps] == files
    assert stream.ImageStream(files[:3], "no", None, 2).model_threads() is None  # one chunk: no pool


def test_a_stream_iterated_twice_decodes_twice(files, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK", 3)
    images = stream.ImageStream(files, "no", None, 2, batch=7)
    assert [p for ps, _ in images for p in ps] == files
    assert [p for ps, _ in images for p in ps] == files


def _pool_watched(monkeypatch) -> list:
    """The workers of every pool made from now on, collected."""
    made = []
    real = stream._pool

    def pool(*args):
        with real(*args) as workers:
            made.extend(workers)
            yield workers

    monkeypatch.setattr(stream, "_pool", contextlib.contextmanager(pool))
    return made


@pytest.mark.parametrize("dies_on", [0, 1], ids=["first-chunk", "second-chunk"])
def test_a_decoding_process_that_dies_is_one_error_and_the_rest_are_ended(files, monkeypatch, dies_on):
    """On its second chunk: the parent reads its first result after it died, and then sends it
    the next range, into a pipe that no one reads any more."""
    import os
    import signal
    import time

    from fmnist.errors import FmnistError

    parent, real = os.getpid(), stream.decode_chunk
    done: list = []

    def dies(paths, *options):
        if os.getpid() != parent and paths[0] != files[0]:  # the first chunk is always decoded
            done.append(paths)
            if len(done) > dies_on:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(paths, *options)

    monkeypatch.setattr(stream, "CHUNK", 3)
    monkeypatch.setattr(stream, "decode_chunk", dies)
    made = _pool_watched(monkeypatch)
    ended = r"^a decoding process ended before its work was done \(killed by signal 9\); --jobs 1 decodes"
    with pytest.raises(FmnistError, match=ended), stream.ImageStream(files, "no", None, 2) as images:
        time.sleep(0.5)  # the worker dies before its first result is read
        list(images)
    assert len(made) == 2 and all(w.process is not None for w in made)
    assert all(w.results.closed and w.tasks.closed for w in made)  # and the processes reaped


# os.pipe calls: two for a worker's pipes, then two in multiprocessing's fork (whose own failure
# between them leaks one: not ours to test)
@pytest.mark.parametrize("pipes", [0, 1, 4, 5], ids=["first", "first-results", "second", "second-results"])
def test_a_pool_that_cannot_start_is_one_error_and_leaves_nothing_open(files, monkeypatch, pipes):
    import os

    from fmnist.errors import FmnistError

    monkeypatch.setattr(stream, "CHUNK", 3)
    real, calls = os.pipe, []

    def pipe():
        calls.append(1)
        if len(calls) > pipes:
            raise OSError(24, "Too many open files")
        return real()

    before = sorted(os.listdir("/proc/self/fd"))
    monkeypatch.setattr(os, "pipe", pipe)
    with pytest.raises(FmnistError, match=r"^cannot start 2 decoding processes \(Too many open files\); give a lower"):
        list(stream.ImageStream(files, "no", None, 2))
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_a_folder_that_cannot_be_listed_is_one_error(tmp_path, monkeypatch):
    import os

    from fmnist.runtime.images import expand_inputs

    def refused(path):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", refused)
    with pytest.raises(InputError, match=rf"^{tmp_path}: cannot list the folder \(Permission denied\)$"):
        expand_inputs([tmp_path])


def test_a_decoding_process_that_fails_raises_its_error(files, monkeypatch):
    def fails(paths, *options):
        raise MemoryError("no room")

    monkeypatch.setattr(stream, "CHUNK", 3)
    monkeypatch.setattr(stream, "decode_chunk", fails)
    with pytest.raises(RuntimeError, match="^a decoding process failed: MemoryError: no room$"):
        list(stream.ImageStream(files, "no", None, 2))


def test_signals_held_are_raised_after_the_block():
    import signal

    from fmnist.errors import Interrupted
    from fmnist.runtime import signals

    def stop(signum, frame):
        raise Interrupted(signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        with pytest.raises(Interrupted), signals.held():
            signal.raise_signal(signal.SIGTERM)
            reached = True  # not cut short by the signal
        assert reached and signal.getsignal(signal.SIGTERM) is stop
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_rows_to_npy_joins_blocks(tmp_path):
    out = tmp_path / "z.npy"
    blocks = [np.arange(6, dtype=np.float64).reshape(3, 2), np.ones((2, 2))]
    assert stream.rows_to_npy(out, iter(blocks)) == 5
    z = np.load(out)
    assert z.dtype == np.float32 and z.tolist() == [[0, 1], [2, 3], [4, 5], [1, 1], [1, 1]]


def test_rows_to_npy_leaves_nothing_when_the_rows_fail(tmp_path):
    def failing():
        yield np.ones((2, 2))
        raise InputError("no readable image")

    with pytest.raises(InputError):
        stream.rows_to_npy(tmp_path / "z.npy", failing())
    assert list(tmp_path.iterdir()) == []


def test_check_not_inputs_compares_files_not_spellings(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    check_not_inputs([b], [a])  # another file
    check_not_inputs([tmp_path / "new.png"], [a])  # not there yet: no input
    with pytest.raises(InputError, match="is also an input"):
        check_not_inputs([tmp_path / "." / "a.png"], [a])


@pytest.mark.parametrize("seed", [-1, 2**32, 2**76])
def test_seeds_outside_the_range_are_refused(seed):
    with pytest.raises(InputError, match=r"--seed must be a whole number from 0 to 4,294,967,295"):
        check_seed(seed)
    assert check_seed(0) == 0 and check_seed(2**32 - 1) == 2**32 - 1


def test_pixels_read_and_shown_as_width_x_height():
    assert parse_pixels("2048x2048") == parse_pixels("4194304") == 4194304
    assert shown_pixels(4194304) == "2048x2048" and shown_pixels(1000) == "1000"
    with pytest.raises(ValueError):
        parse_pixels("big")


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "image",
    [Image.new("L", (200, 300), 128), Image.new("L", (200, 300), 230), Image.new("RGB", (200, 300), (255, 0, 0))],
    ids=["grey-128", "grey-230", "red"],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_flat_images_of_any_colour_are_blank(image, fmt):
    assert is_blank(load_image(_encoded(image, fmt)))


def test_a_garment_on_a_flat_background_is_not_blank():
    a = np.full((300, 200), 230, np.uint8)
    a[60:240, 50:150] = 60
    assert not is_blank(load_image(_encoded(Image.fromarray(a), "JPEG")))
