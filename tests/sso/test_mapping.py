"""Which sign-ins a provider's mapping lets through (``allowed_email_domains``,
``allowed_groups``), decided before any user is made or found."""

from __future__ import annotations

from relaygate.services.identities import Asserted, Mapping, refusal


def who(email: str | None, groups: set[str], verified: bool | None = True) -> Asserted:
    return Asserted("corp", "s-1", email, "n", frozenset(groups), verified)


def test_an_allowed_domain_passes_and_others_do_not() -> None:
    """The email's domain must be listed (case aside); a look-alike domain, a missing
    email or an unverified one is refused."""
    domains = Mapping(allowed_email_domains=("example.org",))
    assert refusal(who("ann@Example.ORG", set()), domains) is None
    assert refusal(who("ann@example.org.evil.test", set()), domains) is not None
    assert refusal(who("ann@evil-example.org", set()), domains) is not None
    assert refusal(who(None, set()), domains) is not None
    assert "not verified" in (refusal(who("ann@example.org", set(), False), domains) or "")


def test_allowed_groups_need_one_listed_group() -> None:
    """With allowed_groups a user must be in one of them; without, anyone passes."""
    staff = Mapping(allowed_groups=frozenset({"staff"}))
    assert refusal(who("a@x", {"staff", "other"}), staff) is None
    assert (
        refusal(who("a@x", {"other"}), staff) == "you are in none of the groups allowed to sign in"
    )
    assert refusal(who("a@x", set()), Mapping()) is None
