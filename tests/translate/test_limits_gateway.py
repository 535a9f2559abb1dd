"""Rate limits and budgets hold through translation exactly as for requests sent as they
are: the tokens and cost come from the endpoint's own usage, and a caller past a limit
is refused before anything goes upstream, in the shape its SDK reads."""

from __future__ import annotations

import anthropic
import openai
import pytest

from tests.budgets.support import price_models, set_budget
from tests.support.gateway import Gateway
from tests.support.polling import eventually
from tests.support.scripted import ScriptedUpstream, Turn
from tests.translate.conftest import MODEL, posts, usage_records

ASK = [{"role": "user", "content": "Write a long answer please."}]


def test_tokens_per_minute_count_translated_answers(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """A key's tokens per minute are spent by the tokens a translated Messages answer
    used (as the endpoint reported them); once spent, the next request gets Anthropic's
    rate_limit_error and never reaches the endpoint."""
    scripted.script.otherwise = Turn.say("word " * 40)  # about 50 completion tokens
    gateway.add_endpoint("local", scripted.url, messages_api="translate")
    user = gateway.create_user("tight")
    key = gateway.create_key(user_id=user["id"], name="k", tokens_per_minute=60)["key"]
    client = gateway.anthropic(key)
    try:
        client.messages.create(model=MODEL, max_tokens=100, messages=ASK)  # type: ignore[arg-type]
        eventually(lambda: usage_records(gateway), bool)
        sent = len(posts(scripted))
        with pytest.raises(anthropic.RateLimitError):
            for _ in range(3):
                client.messages.create(model=MODEL, max_tokens=100, messages=ASK)  # type: ignore[arg-type]
        assert len(posts(scripted)) <= sent + 1
    finally:
        client.close()


def test_a_budget_is_charged_and_enforced_through_translation(
    gateway: Gateway, scripted: ScriptedUpstream
) -> None:
    """A translated Responses answer is charged to the user's budget at the model's
    prices for the tokens the endpoint reported; once the budget is spent the next one
    is refused 429 budget_exceeded before it goes upstream."""
    scripted.script.otherwise = Turn.say("word " * 40)
    gateway.add_endpoint("local", scripted.url, responses_api="translate")
    price_models(gateway)  # a token costs 0.001
    user = gateway.create_user("budgeted")
    set_budget(gateway, "user", user["id"], 0.05)
    client = gateway.openai(gateway.create_key(user_id=user["id"], name="k")["key"])
    first = client.responses.create(model=MODEL, input="Go", max_output_tokens=20)
    assert first.usage is not None
    [record] = eventually(lambda: usage_records(gateway), bool)
    assert record["cost"] == pytest.approx(
        (first.usage.input_tokens + first.usage.output_tokens) * 0.001
    )
    sent = len(posts(scripted))
    with pytest.raises(openai.RateLimitError) as refused:
        for _ in range(3):
            client.responses.create(model=MODEL, input="Go", max_output_tokens=20)
    assert refused.value.code == "budget_exceeded"
    assert len(posts(scripted)) == sent
