"""DeadLetterAcks: a dead-lettered record's ack waits until its dead letter is published."""

from __future__ import annotations

from streams.dead_letter import DeadLetter, DeadLetterAcks


class Token:
    def __init__(self) -> None:
        self.acked = 0

    def ack(self) -> None:
        self.acked += 1


def letter(token: Token, partition: int = 0) -> DeadLetter:
    return DeadLetter("binlake.shop.t", partition, 7, b"k", b"v", "bad", token=token)


def test_tokens_are_acked_in_order_and_none_is_skipped():
    acks, first, second = DeadLetterAcks(), Token(), Token()
    acks.ack([first, None, second])
    assert (first.acked, second.acked) == (1, 1)


def test_an_unpublished_dead_letter_is_acked_once_published():
    acks, token = DeadLetterAcks(), Token()
    dead = letter(token)
    acks.expect([dead])
    acks.ack([token])
    assert token.acked == 0 and acks.held
    acks.published(dead)
    assert token.acked == 1 and not acks.unpublished and not acks.held


def test_published_before_release_acks_at_release():
    acks, token = DeadLetterAcks(), Token()
    dead = letter(token)
    acks.expect([dead])
    acks.published(dead)
    assert token.acked == 0
    acks.ack([token])
    assert token.acked == 1


def test_forgotten_letters_and_revoked_partitions_are_never_acked():
    acks, kept, dropped, revoked = DeadLetterAcks(), Token(), Token(), Token()
    letters = [letter(kept, 0), letter(dropped, 0), letter(revoked, 1)]
    acks.expect(letters)
    acks.ack([kept, dropped, revoked])
    acks.forget(letters[1:2])
    acks.forget_partitions([("binlake.shop.t", 1)])
    assert list(acks.unpublished) == [id(kept)] and list(acks.held) == [id(kept)]
    acks.published(letters[0])
    assert (kept.acked, dropped.acked, revoked.acked) == (1, 0, 0)
