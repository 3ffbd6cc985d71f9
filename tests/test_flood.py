from protocol.flood import TokenBucket


def test_burst_then_steady_rate() -> None:
    bucket = TokenBucket(rate=2.0, burst=3, now=0.0)
    assert [bucket.delay(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.delay(0.0) == 0.5
    # After waiting as told, the next line waits one interval more.
    assert bucket.delay(0.5) == 0.5


def test_refills_while_idle_up_to_the_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=2, now=0.0)
    bucket.delay(0.0)
    bucket.delay(0.0)
    assert bucket.delay(100.0) == 0.0
    assert bucket.delay(100.0) == 0.0
    assert bucket.delay(100.0) == 1.0


def test_rate_zero_is_off() -> None:
    bucket = TokenBucket(rate=0, burst=1, now=0.0)
    assert all(bucket.delay(0.0) == 0.0 for _ in range(1000))
