"""One batching rule for inference over images of any size: consecutive items of one shape."""
import pytest

from densechange.datasets.readers.batching import group_by_shape


def _lengths(items, batch_size, alone=None):
    return [[x for x in b] for b in group_by_shape(items, lambda x: x % 10, batch_size, alone)]


def test_full_batches_and_shape_changes_close_a_batch():
    assert _lengths([1, 1, 1, 2, 2, 1], 2) == [[1, 1], [1], [2, 2], [1]]


def test_items_that_come_alone_split_the_run():
    assert _lengths([1, 11, 99, 1, 1], 3, alone=lambda x: x > 50) == [[1, 11], [99], [1, 1]]


def test_lazy_and_bounded():
    seen = []

    def items():
        for i in range(100):
            seen.append(i)
            yield 1

    first = next(group_by_shape(items(), lambda x: x, 4))
    assert first == [1, 1, 1, 1] and len(seen) == 5  # one item read past the batch, never the whole input


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        list(group_by_shape([1], lambda x: x, 0))
