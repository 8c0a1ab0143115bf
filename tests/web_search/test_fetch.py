"""core.fetch against the stand-in internet (a local server, see internet.py): limits and the SSRF guard."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from ddx_omni.core.fetch import Fetcher, FetchError, FetchLimits, address_allowed

from . import internet as fake


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    f = Fetcher(FetchLimits(timeout_s=2, max_bytes=100_000, max_redirects=3, allow_private_networks=True))
    yield f
    await f.aclose()



def guarded(**limits: object) -> Fetcher:
    return Fetcher(FetchLimits(timeout_s=2, allowed_networks=("127.0.0.2/32",), **limits))  # type: ignore[arg-type]


@pytest.mark.parametrize(("address", "allowed"), [
    ("93.184.215.14", True), ("2606:4700::6810:84e5", True), ("127.0.0.1", False), ("10.1.2.3", False),
    ("172.16.0.1", False), ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False),
    ("0.0.0.0", False), ("::1", False), ("fe80::1%eth0", False), ("fd00::1", False), ("::ffff:127.0.0.1", False),
    ("224.0.0.1", False),
])
def test_address_policy(address: str, allowed: bool) -> None:
    assert address_allowed(address) is allowed


async def test_fetches_a_page_with_its_type_and_charset(fetcher: Fetcher, internet: fake.Internet) -> None:
    result = await fetcher.get(internet.url("/pages/mlx.html"))
    assert result.status == 200 and result.content_type == "text/html" and result.encoding == "utf-8"
    assert b"unified memory pool" in result.content and not result.truncated
    seen = internet.requests[-1]
    assert seen.headers["User-Agent"] == "ddx-omni/1.0"


async def test_body_is_cut_at_the_size_cap(fetcher: Fetcher, internet: fake.Internet) -> None:
    result = await fetcher.get(internet.url("/big"))
    assert result.truncated and len(result.content) == 100_000


async def test_a_page_that_never_answers_times_out(internet: fake.Internet) -> None:
    quick = Fetcher(FetchLimits(timeout_s=0.5, allow_private_networks=True))
    with pytest.raises(FetchError) as caught:
        await quick.get(internet.url("/hang"))
    await quick.aclose()
    assert caught.value.kind == "timeout" and "did not answer within 0.5 s" in caught.value.message


async def test_redirects_are_followed_and_bounded(fetcher: Fetcher, internet: fake.Internet) -> None:
    target = internet.url("/pages/asyncio.html")
    result = await fetcher.get(internet.url(f"/redirect?to={target}"))
    assert result.url == target and b"async/await" in result.content
    with pytest.raises(FetchError) as caught:
        await fetcher.get(internet.url("/loop"))
    assert caught.value.kind == "redirects"


async def test_http_errors_and_schemes(fetcher: Fetcher, internet: fake.Internet) -> None:
    with pytest.raises(FetchError) as caught:
        await fetcher.get(internet.url("/missing"))
    assert caught.value.kind == "http" and "404" in caught.value.message
    for url, kind in (("file:///etc/passwd", "refused"), ("http://", "invalid_url"),
                      (internet.url("/redirect?to=file:///etc/passwd"), "refused")):
        with pytest.raises(FetchError) as caught:
            await fetcher.get(url)
        assert caught.value.kind == kind, url


async def test_loopback_is_refused_after_dns_resolution(internet: fake.Internet) -> None:
    """The server is up on 127.0.0.1: only the guard stands between the fetch and it."""
    f = Fetcher(FetchLimits(timeout_s=2))
    for url in (internet.url("/secret"), internet.url("/secret", host="localhost")):
        with pytest.raises(FetchError) as caught:
            await f.get(url)
        assert caught.value.kind == "refused" and "non-public address" in caught.value.message
    await f.aclose()
    assert not any(r.path == "/secret" for r in internet.requests)


async def test_redirect_to_127_0_0_1_is_refused(public_internet: fake.Internet, internet: fake.Internet) -> None:
    f = guarded()
    page = await f.get(public_internet.url("/pages/mlx.html"))  # the 'public' host itself is reachable
    assert b"MLX" in page.content
    for target in (internet.url("/secret"), "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(FetchError) as caught:
            await f.get(public_internet.url(f"/redirect?to={target}"))
        assert caught.value.kind == "refused" and "non-public address" in caught.value.message
    await f.aclose()
    assert not any(r.path == "/secret" for r in internet.requests)


async def test_allow_url_vetoes_a_redirect_hop(fetcher: Fetcher, internet: fake.Internet) -> None:
    target = internet.url("/pages/asyncio.html", host="localhost")

    def only_127(url: httpx.URL) -> str | None:
        return None if url.host == "127.0.0.1" else f"{url.host} is not allowed"

    with pytest.raises(FetchError) as caught:
        await fetcher.get(internet.url(f"/redirect?to={target}"), allow_url=only_127)
    assert caught.value.kind == "refused" and caught.value.message == "localhost is not allowed"


async def test_no_cookies_are_kept_between_fetches(fetcher: Fetcher, internet: fake.Internet) -> None:
    await fetcher.get(internet.url("/setcookie"))
    await fetcher.get(internet.url("/pages/mlx.html"))
    assert internet.requests[-2].path == "/setcookie" and "Cookie" not in internet.requests[-1].headers
